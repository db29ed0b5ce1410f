#!/usr/bin/env bash
# Provide real IaC engine binaries for iac-driver-runner, built from Go modules
# (the only download channel that works on machines without release downloads).
#
# Usage: tools/install-engines.sh [--tools-dir DIR] [tofu|providers|pulumi|all]    (default: all)
#
#   --tools-dir DIR  link the engines, the provider mirror and the tfrc into DIR
#                    (DIR/bin, DIR/providers, DIR/tofu.tfrc) instead of <repo>/.tools;
#                    image/install-engines.sh uses it to lay out the image's engines
#
#   tofu       OpenTofu CLI                       -> .tools/bin/tofu
#   providers  hashicorp/random (+ any provider under $EXTRA_PROVIDER_MIRROR, e.g.
#              /opt/tf-plugins aws) as a filesystem mirror -> .tools/providers,
#              plus the CLI config .tools/tofu.tfrc (use with TF_CLI_CONFIG_FILE)
#   pulumi     pulumi CLI, pulumi-language-python (+ its pulumi-language-python-exec)
#              and the dynamic-provider shim pulumi-resource-pulumi-python -> .tools/bin/
#
# Built binaries are cached per user and version in
#   ${XDG_CACHE_HOME:-~/.cache}/iac-driver-runner/tools/<name>-<version>/
# and only linked into <repo>/.tools; a second run (or a fresh clone) only relinks.
#
# Environment:
#   IAC_RUNNER_FORCE_BUILD=1   build even if a suitable tofu/pulumi is on PATH
#   IAC_RUNNER_REBUILD=1       ignore the cache, rebuild and replace the cached build
#   IAC_RUNNER_TOOLS_CACHE     cache folder (default above)
#   IAC_RUNNER_GO_PARALLEL     go build -p (default 2)
#   GO                         go binary to use (default: go on PATH, then /usr/local/go/bin/go)
#   <any key of tools/versions.env> overrides the pin, e.g. OPENTOFU_VERSION=1.10.10
set -euo pipefail
set -o errtrace
shopt -s inherit_errexit

TOOLS_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_DIR=$(dirname -- "$TOOLS_DIR")
DOT_TOOLS=$REPO_DIR/.tools
BIN_DIR=$DOT_TOOLS/bin
MIRROR_DIR=$DOT_TOOLS/providers
TFRC=$DOT_TOOLS/tofu.tfrc
CUSTOM_TOOLS_DIR=0
CACHE_ROOT=${IAC_RUNNER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iac-driver-runner/tools}
GO_PARALLEL=${IAC_RUNNER_GO_PARALLEL:-2}
FORCE_BUILD=${IAC_RUNNER_FORCE_BUILD:-0}
REBUILD=${IAC_RUNNER_REBUILD:-0}
WRAPPER_PREFIX=iac-driver-runner.invalid/engine-build

# --------------------------------------------------------------------------
# output helpers

log() { printf '[engines] %s\n' "$*"; }
warn() { printf '[engines] WARNING: %s\n' "$*" >&2; }

now() { local t=${EPOCHREALTIME:-}; [[ -n $t ]] || t=$(date +%s.%N); printf '%s' "${t/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { d = b - a; if (d < 60) printf "%.1fs", d; else printf "%dm%04.1fs", d / 60, d - int(d / 60) * 60 }'; }

# The step being run and the advice printed if it fails (see on_error).
STEP=""
STEP_T0=""
HINT=""
LOG_FILE=""

step() { # step "what" "how to fix if it fails"
    STEP=$1
    HINT=${2:-}
    STEP_T0=$(now)
    log "$STEP ..."
}
step_done() { log "$STEP: done in $(since "$STEP_T0")"; STEP=""; HINT=""; }

# A failure inside $(...) also fails its caller: report only the first one.
ERR_FLAG=""
already_reported() { [[ -n $ERR_FLAG && -s $ERR_FLAG ]]; }
mark_reported() { [[ -z $ERR_FLAG ]] || printf 1 >"$ERR_FLAG"; }

die() { # die "one-paragraph message"
    already_reported || printf '\n[engines] FAILED: %s\n\n' "$*" >&2
    mark_reported
    exit 1
}

on_error() {
    local rc=$1 line=$2
    trap - ERR
    already_reported && exit "$rc"
    mark_reported
    {
        printf '\n[engines] FAILED'
        [[ -n $STEP ]] && printf ' while: %s (after %s)' "$STEP" "$(since "${STEP_T0:-$(now)}")"
        printf ' [exit %s, %s line %s].\n' "$rc" "${BASH_SOURCE[1]##*/}" "$line"
        if [[ -n $LOG_FILE && -s $LOG_FILE ]]; then
            printf '  Last lines of %s:\n' "$LOG_FILE"
            tail -n 25 "$LOG_FILE" | sed 's/^/    | /'
            if grep -q -e '403 Forbidden' -e 'not available' -e '404 Not Found' -e '410 Gone' "$LOG_FILE"; then
                printf '  The Go module proxy (%s) refused a module or version shown above, so it cannot\n' \
                    "$(go_env GOPROXY 2>/dev/null || echo "GOPROXY")"
                printf '  be built from source on this machine.\n'
            fi
        fi
        [[ -n $HINT ]] && printf '  How to fix: %s\n' "$HINT"
        printf '  Nothing half-built was left in the cache (%s).\n\n' "$CACHE_ROOT"
    } >&2
    exit "$rc"
}
trap 'on_error $? $LINENO' ERR

# run_logged cmd...: run with output appended to $LOG_FILE (shown on failure)
run_logged() {
    printf '\n$ %s\n' "$*" >>"$LOG_FILE"
    "$@" >>"$LOG_FILE" 2>&1
}

# --------------------------------------------------------------------------
# versions

load_versions() {
    local file=$TOOLS_DIR/versions.env key value
    [[ -r $file ]] || die "Pin file $file is missing: restore tools/versions.env from git."
    while IFS= read -r line || [[ -n $line ]]; do
        [[ $line =~ ^[[:space:]]*([A-Z_][A-Z0-9_]*)=(.*)$ ]] || continue
        key=${BASH_REMATCH[1]}
        value=${BASH_REMATCH[2]}
        # the environment wins over the file
        if [[ -z ${!key+set} ]]; then
            printf -v "$key" '%s' "$value"
        fi
    done <"$file"
}

version_ge() { # version_ge A B: A >= B (dotted numeric, sort -V)
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" == "$2" ]]
}

# --------------------------------------------------------------------------
# Go toolchain

GO_BIN=""
find_go() {
    [[ -n $GO_BIN ]] && return 0
    local cand
    for cand in "${GO:-}" "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go "$HOME/go/bin/go" /usr/lib/go/bin/go; do
        if [[ -n $cand && -x $cand ]]; then
            GO_BIN=$cand
            return 0
        fi
    done
    return 1
}

go_env() { "$GO_BIN" env "$@"; }

# require_go WHAT REQUIRED_VERSION ALTERNATIVE
require_go() {
    local what=$1 need=$2 alt=$3 have
    find_go || die "Go toolchain not found (looked for \$GO, go on PATH, /usr/local/go/bin/go): cannot build $what. Install Go >= $need (https://go.dev/dl or a distro package) and re-run, or $alt."
    have=$(go_env GOVERSION)
    have=${have#go}
    if ! version_ge "$have" "$need"; then
        if [[ $(go_env GOTOOLCHAIN) == local* ]]; then
            die "$what needs Go >= $need but $GO_BIN is Go $have (and GOTOOLCHAIN=local forbids fetching a newer toolchain). Install Go >= $need (or set GO=/path/to/newer/go), or $alt."
        fi
        warn "$GO_BIN is Go $have; the go command will fetch toolchain go$need from the module proxy"
    fi
}

# go_module_dir MODULE VERSION -> prints the module's directory in GOMODCACHE
go_module_dir() {
    local json=$BUILD_TMP/download.json dir
    if ! (cd "$BUILD_TMP" && GOWORK=off "$GO_BIN" mod download -json "$1@$2") >"$json" 2>>"$LOG_FILE"; then
        cat "$json" >>"$LOG_FILE"
        return 1
    fi
    cat "$json" >>"$LOG_FILE"
    dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$json" | head -n 1)
    [[ -n $dir && -f $dir/go.mod ]] || {
        printf 'go mod download %s@%s gave no module directory\n' "$1" "$2" >>"$LOG_FILE"
        return 1
    }
    printf '%s\n' "$dir"
}

# upstream_directives GO.MOD: prints upstream's replace/godebug/exclude directives
# one per line ("replace a v => b v"), dropping replacements by a local path
# (e.g. pulumi's "sdk/v3 => ../sdk"): only the main module's directives count,
# so a wrapper module must repeat them.
upstream_directives() {
    awk '
        function emit(kind, s) {
            sub(/[ \t]*\/\/.*$/, "", s); gsub(/^[ \t]+|[ \t]+$/, "", s)
            if (s != "") print kind " " s
        }
        ($1 == "replace" || $1 == "godebug" || $1 == "exclude") && $2 == "(" { block = $1; next }
        block != "" && $1 == ")" { block = ""; next }
        block != "" { emit(block, $0); next }
        $1 == "replace" || $1 == "godebug" || $1 == "exclude" { k = $1; sub(/^[ \t]*[a-z]+[ \t]+/, ""); emit(k, $0) }
    ' "$1" | while IFS= read -r directive; do
        if [[ $directive == replace* ]]; then
            local target=${directive#*=>}
            target=${target#"${target%%[![:space:]]*}"}
            if [[ $target == .* || $target == /* ]]; then
                printf '  (dropped local replace: %s)\n' "$directive" >>"$LOG_FILE"
                continue
            fi
        fi
        printf '%s\n' "$directive"
    done
}

go_directive() { sed -n 's/^go[[:space:]]\{1,\}\([0-9][0-9.]*\).*/\1/p' "$1" | head -n 1; }

# write_wrapper DIR NAME GO_VERSION DIRECTIVES_FILE MODULE@VERSION...
write_wrapper() {
    local dir=$1 name=$2 gover=$3 directives=$4
    shift 4
    mkdir -p "$dir"
    {
        printf '// Generated by tools/install-engines.sh: builds upstream binaries with\n'
        printf '// upstream'"'"'s replace directives (they only apply in the main module).\n'
        printf 'module %s/%s\n\ngo %s\n\n' "$WRAPPER_PREFIX" "$name" "$gover"
        local mv
        for mv in "$@"; do
            printf 'require %s %s\n' "${mv%@*}" "${mv#*@}"
        done
        printf '\n'
        sort -u "$directives"
    } >"$dir/go.mod"
}

# go_build_in DIR OUT PKG LDFLAGS: resolve PKG's dependencies in the wrapper module and build it
go_resolve_in() { # go_resolve_in DIR PKG@VERSION...
    local dir=$1
    shift
    (cd "$dir" && GOWORK=off run_logged "$GO_BIN" get "$@")
}
go_build_in() {
    local dir=$1 out=$2 pkg=$3 ldflags=$4
    (cd "$dir" && GOWORK=off CGO_ENABLED=0 run_logged "$GO_BIN" build -p "$GO_PARALLEL" -trimpath \
        -ldflags "$ldflags" -o "$out" "$pkg")
}

# --------------------------------------------------------------------------
# cache, locking, linking

BUILD_TMP=""
LOCK_FD=""
cleanup() {
    if [[ -n $BUILD_TMP && -d $BUILD_TMP ]]; then
        chmod -R u+w "$BUILD_TMP" 2>/dev/null || true
        rm -rf "$BUILD_TMP"
    fi
}

# cache_ok DIR STAMP FILE...: the cached build exists, matches STAMP and has FILEs
cache_ok() {
    local dir=$1 stamp=$2 f
    shift 2
    [[ -d $dir && -f $dir/.stamp ]] || return 1
    [[ "$(cat "$dir/.stamp")" == "$stamp" ]] || return 1
    for f in "$@"; do [[ -x $dir/$f ]] || return 1; done
}

# begin_build NAME-VERSION: lock, temp dir on the cache filesystem, log file
begin_build() {
    local key=$1
    mkdir -p "$CACHE_ROOT/.locks" "$CACHE_ROOT/logs"
    if command -v flock >/dev/null 2>&1; then
        exec {LOCK_FD}>"$CACHE_ROOT/.locks/$key.lock"
        if ! flock -n "$LOCK_FD"; then
            log "another install-engines.sh is building $key; waiting for it ..."
            flock "$LOCK_FD"
        fi
    fi
    BUILD_TMP=$(mktemp -d "$CACHE_ROOT/.build-$key.XXXXXX")
    trap cleanup EXIT
    LOG_FILE=$CACHE_ROOT/logs/$key.log
    : >"$LOG_FILE"
    log "build log: $LOG_FILE"
}

# commit_build SRC DEST: move the finished build into place (rename = atomic)
commit_build() {
    local src=$1 dest=$2
    if [[ -e $dest ]]; then
        mv -T "$dest" "$BUILD_TMP/previous"
    fi
    mv -T "$src" "$dest"
}

# link TARGET LINK: atomically (re)point symlink LINK at TARGET
link() {
    local target=$1 lnk=$2
    mkdir -p "$(dirname -- "$lnk")"
    if [[ -L $lnk && "$(readlink -- "$lnk")" == "$target" ]]; then
        return 0
    fi
    ln -s -- "$target" "$lnk.tmp.$$"
    mv -T -- "$lnk.tmp.$$" "$lnk"
}

# find_on_path NAME: first NAME on PATH that is not our own .tools/bin link
find_on_path() {
    local name=$1 d real bin_real cache_real dirs=()
    bin_real=$(realpath -m -- "$BIN_DIR")
    cache_real=$(realpath -m -- "$CACHE_ROOT")
    IFS=: read -r -a dirs <<<"$PATH"
    for d in "${dirs[@]}"; do
        [[ -n $d ]] || d=.
        [[ $(realpath -m -- "$d") == "$bin_real" ]] && continue
        if [[ -x $d/$name && ! -d $d/$name ]]; then
            real=$(realpath -- "$d/$name")
            [[ $real == "$cache_real"/* ]] && continue
            printf '%s\n' "$d/$name"
            return 0
        fi
    done
    return 1
}

SUMMARY_FILE=""
summary() { printf '%s\n' "$*" >>"$SUMMARY_FILE"; }

# --------------------------------------------------------------------------
# tofu

tofu_version_of() { # prints e.g. 1.12.6 (no "v") or nothing
    # (any line: a warning about a missing CLI config file may come first)
    TF_CLI_CONFIG_FILE=/dev/null timeout 30 "$1" version 2>/dev/null |
        sed -n 's/^OpenTofu v\([0-9][^ ]*\).*/\1/p' | head -n 1 || true
}

install_tofu() {
    local ver=$OPENTOFU_VERSION name="tofu-$OPENTOFU_VERSION"
    local dest=$CACHE_ROOT/$name mod=github.com/opentofu/opentofu
    local stamp="$mod@v$ver cmd/tofu -X version.dev=no"
    [[ -n $ver ]] || die "OPENTOFU_VERSION is empty in tools/versions.env."

    if [[ $FORCE_BUILD != 1 ]]; then
        local own have
        if own=$(find_on_path tofu); then
            have=$(tofu_version_of "$own")
            if [[ -n $have ]] && version_ge "$have" "$OPENTOFU_MIN_VERSION"; then
                log "tofu: using $own (OpenTofu v$have) as is; not building (IAC_RUNNER_FORCE_BUILD=1 builds anyway)"
                summary "tofu       $own  (OpenTofu v$have, from PATH)"
                return 0
            fi
            log "tofu: ignoring $own (version '${have:-unknown}' < $OPENTOFU_MIN_VERSION)"
        fi
    fi

    if [[ $REBUILD != 1 ]] && cache_ok "$dest" "$stamp" tofu; then
        log "tofu: cached build $dest"
    else
        build_tofu "$ver" "$dest" "$stamp" "$mod"
    fi
    link "$dest/tofu" "$BIN_DIR/tofu"
    summary "tofu       $BIN_DIR/tofu -> $dest/tofu  (OpenTofu v$(tofu_version_of "$BIN_DIR/tofu"))"
}

build_tofu() {
    local ver=$1 dest=$2 stamp=$3 mod=$4 t0 src gover
    local alt="put an OpenTofu >= $OPENTOFU_MIN_VERSION 'tofu' on PATH"
    t0=$(now)
    log "tofu: building OpenTofu v$ver from Go module $mod (cold: several minutes)"
    begin_build "tofu-$ver"
    if cache_ok "$dest" "$stamp" tofu && [[ $REBUILD != 1 ]]; then
        log "tofu: built meanwhile by another run"
        return 0
    fi
    require_go "OpenTofu" "1.22" "$alt"

    step "tofu: download $mod@v$ver" "check that the Go module proxy ($(go_env GOPROXY)) is reachable and serves $mod@v$ver (go list -m -versions $mod), or $alt."
    src=$(go_module_dir "$mod" "v$ver")
    step_done

    gover=$(go_directive "$src/go.mod")
    require_go "OpenTofu v$ver" "$gover" "$alt"

    step "tofu: resolve dependencies in wrapper module" "see the log; a dependency may be missing from the Go module proxy. Or $alt."
    local w=$BUILD_TMP/wrapper
    upstream_directives "$src/go.mod" >"$BUILD_TMP/directives"
    write_wrapper "$w" tofu "$gover" "$BUILD_TMP/directives" "$mod@v$ver"
    go_resolve_in "$w" "$mod/cmd/tofu@v$ver"
    step_done

    step "tofu: compile cmd/tofu (go build -p $GO_PARALLEL)" "see the log (a compiler error usually means a Go toolchain that is too old or too new for OpenTofu v$ver). Or $alt."
    mkdir -p "$BUILD_TMP/out"
    go_build_in "$w" "$BUILD_TMP/out/tofu" "$mod/cmd/tofu" "-s -w -X github.com/opentofu/opentofu/version.dev=no"
    step_done

    step "tofu: verify" "the built binary does not report v$ver; see the log."
    local got
    got=$(tofu_version_of "$BUILD_TMP/out/tofu")
    printf 'tofu version -> %s\n' "$got" >>"$LOG_FILE"
    [[ $got == "$ver" ]]
    finish_build "$w" "$stamp"
    commit_build "$BUILD_TMP/out" "$dest"
    step_done
    log "tofu: built in $(since "$t0")"
}

# finish_build WRAPPER STAMP: record provenance next to the binaries
finish_build() {
    local w=$1 stamp=$2 f
    cp "$w/go.mod" "$BUILD_TMP/out/build.go.mod"
    [[ -f $w/go.sum ]] && cp "$w/go.sum" "$BUILD_TMP/out/build.go.sum"
    {
        printf 'built: %s\nby: tools/install-engines.sh\ngo: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(go_env GOVERSION)"
        for f in "$BUILD_TMP"/out/*; do
            [[ -x $f && -f $f && ! -L $f ]] || continue
            "$GO_BIN" version -m "$f" 2>/dev/null | head -n 3 || true
        done
    } >"$BUILD_TMP/out/build-info.txt"
    printf '%s' "$stamp" >"$BUILD_TMP/out/.stamp"
}

# --------------------------------------------------------------------------
# providers

tf_platform() {
    local os arch
    case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os=$(uname -s | tr '[:upper:]' '[:lower:]') ;; esac
    case "$(uname -m)" in x86_64 | amd64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; i?86) arch=386 ;; *) arch=$(uname -m) ;; esac
    printf '%s_%s\n' "$os" "$arch"
}

# build_provider TYPE VERSION MODULE MODULE_VERSION -> prints cached binary path
install_provider_build() {
    local type=$1 ver=$2 mod=$3 modver=$4
    local name="terraform-provider-$type-$ver" exe="terraform-provider-${type}_v$ver"
    local dest=$CACHE_ROOT/$name stamp="$mod@$modver"
    if [[ $REBUILD != 1 ]] && cache_ok "$dest" "$stamp" "$exe"; then
        log "providers: $type $ver: cached build $dest" >&2
        printf '%s\n' "$dest/$exe"
        return 0
    fi
    (build_provider "$type" "$ver" "$mod" "$modver" "$dest" "$stamp" "$exe") >&2
    printf '%s\n' "$dest/$exe"
}

build_provider() {
    local type=$1 ver=$2 mod=$3 modver=$4 dest=$5 stamp=$6 exe=$7 t0 src gover
    local alt="drop ${type^^}_PROVIDER_VERSION from tools/versions.env (stacks then need another provider source)"
    t0=$(now)
    log "providers: building hashicorp/$type $ver from Go module $mod@$modver"
    begin_build "terraform-provider-$type-$ver"
    if [[ $REBUILD != 1 ]] && cache_ok "$dest" "$stamp" "$exe"; then
        log "providers: $type built meanwhile by another run"
        return 0
    fi
    require_go "terraform-provider-$type" "1.22" "$alt"

    step "providers: download $mod@$modver" "check that the Go module proxy ($(go_env GOPROXY)) serves $mod@$modver, or $alt."
    src=$(go_module_dir "$mod" "$modver")
    step_done
    gover=$(go_directive "$src/go.mod")
    require_go "terraform-provider-$type" "$gover" "$alt"

    step "providers: resolve dependencies of $type" "see the log, or $alt."
    local w=$BUILD_TMP/wrapper
    upstream_directives "$src/go.mod" >"$BUILD_TMP/directives"
    write_wrapper "$w" "terraform-provider-$type" "$gover" "$BUILD_TMP/directives" "$mod@$modver"
    go_resolve_in "$w" "$mod@$modver"
    step_done

    step "providers: compile terraform-provider-$type" "see the log, or $alt."
    mkdir -p "$BUILD_TMP/out"
    go_build_in "$w" "$BUILD_TMP/out/$exe" "$mod" "-s -w"
    step_done

    step "providers: verify $type" "the built provider does not start as a plugin; see the log."
    # A provider run by hand prints its "not meant to be executed directly" notice and exits 1.
    local out
    out=$("$BUILD_TMP/out/$exe" 2>&1 </dev/null || true)
    printf '%s -> %s\n' "$exe" "$out" >>"$LOG_FILE"
    [[ $out == *plugin* ]]
    finish_build "$w" "$stamp"
    commit_build "$BUILD_TMP/out" "$dest"
    step_done
    log "providers: $type built in $(since "$t0")"
}

install_providers() {
    local platform entries=() hosts=(registry.opentofu.org registry.terraform.io)
    platform=$(tf_platform)
    local new_mirror=$DOT_TOOLS/.providers.new.$$
    rm -rf "$new_mirror"
    mkdir -p "$new_mirror"

    # add_entry NAMESPACE TYPE VERSION EXECUTABLE_PATH
    add_entry() {
        local ns=$1 type=$2 ver=$3 bin=$4 host d
        for host in "${hosts[@]}"; do
            d=$new_mirror/$host/$ns/$type/$ver/$platform
            mkdir -p "$d"
            ln -s -- "$bin" "$d/terraform-provider-${type}_v$ver"
        done
        entries+=("$ns/$type")
        summary "provider   $ns/$type $ver  ($bin)"
    }

    local bin
    if [[ -n ${RANDOM_PROVIDER_VERSION:-} ]]; then
        bin=$(install_provider_build random "$RANDOM_PROVIDER_VERSION" "$RANDOM_PROVIDER_MODULE" "$RANDOM_PROVIDER_MODULE_VERSION")
        add_entry hashicorp random "$RANDOM_PROVIDER_VERSION" "$bin"
    fi
    if [[ -n ${NULL_PROVIDER_VERSION:-} ]]; then
        bin=$(install_provider_build null "$NULL_PROVIDER_VERSION" "$NULL_PROVIDER_MODULE" "$NULL_PROVIDER_MODULE_VERSION")
        add_entry hashicorp null "$NULL_PROVIDER_VERSION" "$bin"
    fi

    # Pre-installed providers, e.g. /opt/tf-plugins/registry.terraform.io/hashicorp/aws/5.100.0/linux_amd64/
    local extra=${EXTRA_PROVIDER_MIRROR:-} pdir ns type ver f
    if [[ -n $extra && -d $extra ]]; then
        step "providers: expose providers found in $extra" ""
        for pdir in "$extra"/*/*/*/*/"$platform"; do
            [[ -d $pdir ]] || continue
            ver=$(basename -- "$(dirname -- "$pdir")")
            type=$(basename -- "$(dirname -- "$(dirname -- "$pdir")")")
            ns=$(basename -- "$(dirname -- "$(dirname -- "$(dirname -- "$pdir")")")")
            [[ " ${entries[*]} " == *" $ns/$type "* ]] && continue
            for f in "$pdir"/terraform-provider-"$type"*; do
                [[ -f $f && -x $f ]] || continue
                add_entry "$ns" "$type" "$ver" "$f"
                break
            done
        done
        step_done
    fi

    # swap the new mirror in
    if [[ -e $MIRROR_DIR ]]; then
        mv -T "$MIRROR_DIR" "$DOT_TOOLS/.providers.old.$$"
    fi
    mv -T "$new_mirror" "$MIRROR_DIR"
    rm -rf "$DOT_TOOLS/.providers.old.$$"

    write_tfrc "${entries[@]}"
    summary "tfrc       $TFRC  (export TF_CLI_CONFIG_FILE=$TFRC)"
}

write_tfrc() { # write_tfrc NS/TYPE...
    local list="" e host path
    for e in "$@"; do
        for host in registry.opentofu.org registry.terraform.io; do
            list+="${list:+, }\"$host/$e\""
        done
    done
    path=${MIRROR_DIR//\\/\\\\}
    path=${path//\"/\\\"}
    {
        printf '# Generated by tools/install-engines.sh; do not edit (re-run the script).\n'
        printf '# Use with: TF_CLI_CONFIG_FILE=%s (tofu or terraform).\n' "$TFRC"
        printf '# Providers listed here come only from the local mirror; all others from their registry.\n'
        printf 'provider_installation {\n'
        if [[ -n $list ]]; then
            printf '  filesystem_mirror {\n    path    = "%s"\n    include = [%s]\n  }\n' "$path" "$list"
            printf '  direct {\n    exclude = [%s]\n  }\n' "$list"
        else
            printf '  direct {}\n'
        fi
        printf '}\n'
    } >"$TFRC.tmp.$$"
    mv -f -- "$TFRC.tmp.$$" "$TFRC"
}

# --------------------------------------------------------------------------
# pulumi

pulumi_version_of() { # prints e.g. 3.79.0 (no "v") or nothing
    PULUMI_SKIP_UPDATE_CHECK=1 timeout 30 "$1" version 2>/dev/null |
        sed -n 's/^v\([0-9][^ ]*\)$/\1/p' | head -n 1 || true
}

# langhost_starts BIN: the language host starts its gRPC server and prints the
# port (as it does for the CLI). Given an engine address nobody listens on, it
# would only give up after minutes, so it is stopped as soon as the port shows.
langhost_starts() {
    local bin=$1 out=$BUILD_TMP/langhost.out pid i
    "$bin" 127.0.0.1:1 >"$out" 2>>"$LOG_FILE" </dev/null &
    pid=$!
    for ((i = 0; i < 150; i++)); do
        grep -qE '^[0-9]+$' "$out" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf '%s 127.0.0.1:1 -> %s\n' "${bin##*/}" "$(head -c 200 "$out")" >>"$LOG_FILE"
    grep -qE '^[0-9]+$' "$out"
}

install_pulumi() {
    local ver=$PULUMI_VERSION lver=${PULUMI_LANGUAGE_PYTHON_VERSION:-$PULUMI_VERSION}
    local dest=$CACHE_ROOT/pulumi-$ver
    local stamp="github.com/pulumi/pulumi/pkg/v3@v$ver language-python@v$lver +exec"
    local files=(pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python)
    # PULUMI_LANGUAGE_PYTHON_VERSION=none: CLI + shim only (enough for inline programs)
    [[ $lver == none ]] && files=(pulumi pulumi-resource-pulumi-python)
    [[ -n $ver ]] || die "PULUMI_VERSION is empty in tools/versions.env."

    if [[ $FORCE_BUILD != 1 ]]; then
        local own have
        if own=$(find_on_path pulumi); then
            have=$(pulumi_version_of "$own")
            if [[ -n $have ]] && version_ge "$have" "$PULUMI_MIN_VERSION"; then
                log "pulumi: using $own (v$have) as is; not building (IAC_RUNNER_FORCE_BUILD=1 builds anyway)"
                summary "pulumi     $own  (v$have, from PATH)"
                return 0
            fi
            log "pulumi: ignoring $own (version '${have:-unknown}' < $PULUMI_MIN_VERSION)"
        fi
    fi

    if [[ $REBUILD != 1 ]] && cache_ok "$dest" "$stamp" "${files[@]}"; then
        log "pulumi: cached build $dest"
    else
        build_pulumi "$ver" "$lver" "$dest" "$stamp" "${files[@]}"
    fi
    local f
    for f in "${files[@]}"; do link "$dest/$f" "$BIN_DIR/$f"; done
    [[ $lver == none ]] && rm -f -- "$BIN_DIR/pulumi-language-python" "$BIN_DIR/pulumi-language-python-exec"
    summary "pulumi     $BIN_DIR/pulumi -> $dest/pulumi  (v$(pulumi_version_of "$BIN_DIR/pulumi"); with ${files[*]:1})"
}

# pulumi_ldflags VERSION: -s -w plus the version stamp, set the way upstream's
# release builds set it: the CLI of pulumi <= 3.8x prints pkg/v3/version.Version,
# later ones sdk/v3/go/common/version.Version (the linker ignores -X for a
# variable that does not exist, so both are set). Go >= 1.23 refuses old
# dependencies' //go:linkname into the runtime (pulumi 3.79 needs
# github.com/pgavlin/text, which links internal/bytealg); -checklinkname=0
# accepts them as Go <= 1.22 did.
pulumi_ldflags() {
    local v=$1 flags="-s -w"
    version_ge "$(go_env GOVERSION | sed 's/^go//')" 1.23 && flags+=" -checklinkname=0"
    printf '%s -X github.com/pulumi/pulumi/pkg/v3/version.Version=v%s -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v%s' \
        "$flags" "$v" "$v"
}

build_pulumi() {
    local ver=$1 lver=$2 dest=$3 stamp=$4 t0 pkgsrc sdksrc gover
    local lsdksrc langsrc langpkg langreqs=() # set by locate_pulumi_language_python
    shift 4 # the remaining arguments: the files the build must produce
    local pkg=github.com/pulumi/pulumi/pkg/v3 sdk=github.com/pulumi/pulumi/sdk/v3
    local alt="put a pulumi >= $PULUMI_MIN_VERSION CLI (with its language hosts) on PATH, e.g. from https://www.pulumi.com/docs/install/ where release downloads work"
    local proxy
    t0=$(now)
    log "pulumi: building pulumi v$ver from Go module $pkg (cold: several minutes)"
    begin_build "pulumi-$ver"
    if [[ $REBUILD != 1 ]] && cache_ok "$dest" "$stamp" "$@"; then
        log "pulumi: built meanwhile by another run"
        return 0
    fi
    require_go "pulumi" "1.22" "$alt"
    proxy=$(go_env GOPROXY)
    proxy=${proxy%%[,|]*}

    step "pulumi: download $sdk@v$ver" "check that the Go module proxy ($proxy) serves $sdk@v$ver, or $alt."
    sdksrc=$(go_module_dir "$sdk" "v$ver")
    step_done
    step "pulumi: download $pkg@v$ver" "the Go module proxy must serve $pkg@v$ver (check: curl -sI $proxy/$pkg/@v/v$ver.zip); use a PULUMI_VERSION or GOPROXY that does, or $alt."
    pkgsrc=$(go_module_dir "$pkg" "v$ver")
    step_done
    gover=$(go_directive "$pkgsrc/go.mod")
    require_go "pulumi v$ver" "$gover" "$alt"
    # fetch the language host's source too before minutes of compiling the CLI
    [[ $lver == none ]] || locate_pulumi_language_python "$lver" "$alt"

    step "pulumi: resolve dependencies of cmd/pulumi" "see the log, or $alt."
    local w=$BUILD_TMP/wrapper-pulumi
    upstream_directives "$pkgsrc/go.mod" >"$BUILD_TMP/directives-pulumi"
    write_wrapper "$w" pulumi "$gover" "$BUILD_TMP/directives-pulumi" "$pkg@v$ver" "$sdk@v$ver"
    go_resolve_in "$w" "$pkg/cmd/pulumi@v$ver" "$sdk@v$ver"
    step_done

    step "pulumi: compile cmd/pulumi (go build -p $GO_PARALLEL)" "see the log, or $alt."
    mkdir -p "$BUILD_TMP/out"
    go_build_in "$w" "$BUILD_TMP/out/pulumi" "$pkg/cmd/pulumi" "$(pulumi_ldflags "$ver")"
    step_done

    if [[ $lver == none ]]; then
        log "pulumi: PULUMI_LANGUAGE_PYTHON_VERSION=none: not building pulumi-language-python (only inline programs will run)"
    else
        build_pulumi_language_python "$lver" "$alt"
    fi

    step "pulumi: dynamic provider shim pulumi-resource-pulumi-python" ""
    # upstream ships it as sdk/python/dist/pulumi-resource-pulumi-python (in the sdk/v3 module)
    if [[ -f $sdksrc/python/dist/pulumi-resource-pulumi-python ]]; then
        cp "$sdksrc/python/dist/pulumi-resource-pulumi-python" "$BUILD_TMP/out/"
    else
        # shellcheck disable=SC2016 # the shim expands these, not this script
        printf '#!/bin/sh\nexec "${PULUMI_PYTHON_CMD:-python3}" -u -m pulumi.dynamic "$@"\n' \
            >"$BUILD_TMP/out/pulumi-resource-pulumi-python"
    fi
    chmod 0755 "$BUILD_TMP/out/pulumi-resource-pulumi-python"
    step_done

    step "pulumi: verify" "the built CLI does not report v$ver; see the log."
    local got
    got=$(pulumi_version_of "$BUILD_TMP/out/pulumi")
    printf 'pulumi version -> %s\n' "$got" >>"$LOG_FILE"
    [[ $got == "$ver" ]]
    finish_build "$w" "$stamp"
    commit_build "$BUILD_TMP/out" "$dest"
    step_done
    log "pulumi: built in $(since "$t0")"
}

# locate_pulumi_language_python VERSION ALT: download the source of
# pulumi-language-python and set lsdksrc, langsrc, langpkg and langreqs (locals
# of build_pulumi). Up to pulumi 3.79.0 the language host is a package of the
# sdk/v3 module (sdk/python/cmd/...); from 3.80.0 on it is a module of its own,
# github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3.
locate_pulumi_language_python() {
    local lver=$1 alt=$2
    local pkg=github.com/pulumi/pulumi/pkg/v3 sdk=github.com/pulumi/pulumi/sdk/v3
    local lang=github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
    step "pulumi: download $sdk@v$lver (language host)" "check that the Go module proxy serves $sdk@v$lver (set PULUMI_LANGUAGE_PYTHON_VERSION to a version it has), or $alt."
    lsdksrc=$(go_module_dir "$sdk" "v$lver")
    if [[ -f $lsdksrc/python/cmd/pulumi-language-python/main.go ]]; then
        langsrc=$lsdksrc
        langpkg=$sdk/python/cmd/pulumi-language-python
        langreqs=("$sdk@v$lver")
    else
        HINT="the Go module proxy must serve $lang@v$lver (from pulumi 3.80.0 on the language host is a module of its own). Pin PULUMI_VERSION and PULUMI_LANGUAGE_PYTHON_VERSION to 3.79.0, the newest release whose host is part of $sdk; or $alt."
        langsrc=$(go_module_dir "$lang" "v$lver")
        langpkg=$lang
        langreqs=("$lang@v$lver" "$pkg@v$lver" "$sdk@v$lver")
    fi
    step_done
    log "pulumi: language host package $langpkg@v$lver"
}

# build_pulumi_language_python VERSION ALT: pulumi-language-python and its
# pulumi-language-python-exec into $BUILD_TMP/out (after locate_pulumi_language_python)
build_pulumi_language_python() {
    local lver=$1 alt=$2 sdk=github.com/pulumi/pulumi/sdk/v3

    step "pulumi: resolve + compile pulumi-language-python" "see the log, or $alt."
    local lw=$BUILD_TMP/wrapper-lang gover
    gover=$(go_directive "$langsrc/go.mod")
    require_go "pulumi-language-python v$lver" "$gover" "$alt"
    upstream_directives "$langsrc/go.mod" >"$BUILD_TMP/directives-lang"
    write_wrapper "$lw" pulumi-language-python "$gover" "$BUILD_TMP/directives-lang" "${langreqs[@]}"
    go_resolve_in "$lw" "$langpkg@v$lver" "${langreqs[@]:1}"
    go_build_in "$lw" "$BUILD_TMP/out/pulumi-language-python" "$langpkg" "$(pulumi_ldflags "$lver")"
    cp "$lw/go.mod" "$BUILD_TMP/out/build-language-python.go.mod"
    [[ -f $lw/go.sum ]] && cp "$lw/go.sum" "$BUILD_TMP/out/build-language-python.go.sum"
    step_done

    # The host runs programs through this Python script, which it expects next
    # to its own executable (upstream's release archives ship it there).
    step "pulumi: language host executor pulumi-language-python-exec" "$sdk@v$lver has no python/cmd/pulumi-language-python-exec; set PULUMI_LANGUAGE_PYTHON_VERSION to another version, or $alt."
    cp "$lsdksrc/python/cmd/pulumi-language-python-exec" "$BUILD_TMP/out/"
    chmod 0755 "$BUILD_TMP/out/pulumi-language-python-exec"
    step_done

    step "pulumi: verify pulumi-language-python" "the built language host does not start its gRPC server; see the log."
    langhost_starts "$BUILD_TMP/out/pulumi-language-python"
    step_done
}

# --------------------------------------------------------------------------
# main

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# set_tools_dir DIR: --tools-dir (absolute, created if missing)
set_tools_dir() {
    [[ -n $1 ]] || { usage >&2; die "--tools-dir needs a folder."; }
    mkdir -p -- "$1"
    DOT_TOOLS=$(cd -- "$1" && pwd -P)
    BIN_DIR=$DOT_TOOLS/bin
    MIRROR_DIR=$DOT_TOOLS/providers
    TFRC=$DOT_TOOLS/tofu.tfrc
    CUSTOM_TOOLS_DIR=1
}

main() {
    case ${1:-} in
        --tools-dir) set_tools_dir "${2:-}"; shift 2 ;;
        --tools-dir=*) set_tools_dir "${1#--tools-dir=}"; shift ;;
    esac
    local target=${1:-all}
    case $target in
        -h | --help | help) usage; return 0 ;;
        tofu | providers | pulumi) set -- "$target" ;;
        all) set -- tofu providers pulumi ;;
        *) usage >&2; die "unknown target '$target' (expected tofu, providers, pulumi or all)." ;;
    esac
    load_versions
    mkdir -p "$CACHE_ROOT" "$BIN_DIR"
    # .tools/ holds only generated links and config: keep it out of git
    [[ $CUSTOM_TOOLS_DIR == 1 || -f $DOT_TOOLS/.gitignore ]] || printf '# generated by tools/install-engines.sh\n*\n' >"$DOT_TOOLS/.gitignore"
    SUMMARY_FILE=$(mktemp)
    ERR_FLAG=$(mktemp)
    local t0 failed=() engine rc
    t0=$(now)
    for engine in "$@"; do
        : >"$ERR_FLAG"
        # Each engine in a subshell, so one failing engine does not stop the
        # others. Not as an `if` condition: that would switch off set -e inside.
        set +e
        (
            set -e
            trap 'on_error $? $LINENO' ERR
            "install_$engine"
        )
        rc=$?
        set -e
        if ((rc != 0)); then
            failed+=("$engine")
            summary "${engine}$(printf '%*s' $((11 - ${#engine})) '')FAILED (see the message above)"
        fi
    done
    printf '\n[engines] summary (%s total):\n' "$(since "$t0")"
    sed 's/^/  /' "$SUMMARY_FILE"
    rm -f "$SUMMARY_FILE" "$ERR_FLAG"
    if ((${#failed[@]})); then
        printf '[engines] failed: %s\n' "${failed[*]}" >&2
        return 1
    fi
    printf '[engines] add %s to PATH; for tofu/terraform: export TF_CLI_CONFIG_FILE=%s\n' "$BIN_DIR" "$TFRC"
}

main "$@"
