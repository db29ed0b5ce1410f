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

go_resolve_in() { # go_resolve_in DIR PKG@VERSION...: resolve the dependencies in the wrapper module
    local dir=$1
    shift
    (cd "$dir" && GOWORK=off run_logged "$GO_BIN" get "$@")
}
go_build_in() { # go_build_in DIR OUT PKG LDFLAGS
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

# finish_build STAMP: record provenance next to the binaries (the wrappers' go.mod/go.sum are
# already there, see go_compile)
finish_build() {
    local stamp=$1 f
    {
        printf 'built: %s\nby: tools/install-engines.sh\ngo: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(go_env GOVERSION)"
        for f in "$BUILD_TMP"/out/*; do
            [[ -x $f && -f $f && ! -L $f ]] || continue
            "$GO_BIN" version -m "$f" 2>/dev/null | head -n 3 || true
        done
    } >"$BUILD_TMP/out/build-info.txt"
    printf '%s' "$stamp" >"$BUILD_TMP/out/.stamp"
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

# use_own NAME MIN_VERSION VERSION_OF PRODUCT: a NAME on PATH (not ours) reporting a version
# >= MIN_VERSION (VERSION_OF BINARY prints it) is used as is, unless IAC_RUNNER_FORCE_BUILD=1
use_own() {
    local name=$1 min=$2 version_of=$3 product=$4 own have
    [[ $FORCE_BUILD != 1 ]] || return 1
    own=$(find_on_path "$name") || return 1
    have=$("$version_of" "$own")
    if [[ -n $have ]] && version_ge "$have" "$min"; then
        log "$name: using $own (${product}v$have) as is; not building (IAC_RUNNER_FORCE_BUILD=1 builds anyway)"
        summary "$(printf '%-10s' "$name") $own  (${product}v$have, from PATH)"
        return 0
    fi
    log "$name: ignoring $own (version '${have:-unknown}' < $min)"
    return 1
}

# --------------------------------------------------------------------------
# building a Go module into the cache

# What the user can do instead when a build fails (part of every hint); set by build_go_engine.
BUILD_ALT=""
# Appended to every -ldflags of the build (build_go_engine --old-linknames).
BUILD_LDFLAGS=""

# download LABEL MODULE@VERSION: the module's source, once per run (DOWNLOADED[MODULE@VERSION])
declare -A DOWNLOADED=()
download() {
    local label=$1 modver=$2
    [[ -z ${DOWNLOADED[$modver]:-} ]] || return 0
    step "$label: download $modver" "check that the Go module proxy ($(go_env GOPROXY)) serves $modver (go list -m -versions ${modver%@*}), or $BUILD_ALT."
    DOWNLOADED[$modver]=$(go_module_dir "${modver%@*}" "${modver#*@}")
    step_done
}

# go_compile LABEL MODULE@VERSION PACKAGE OUT LDFLAGS RECORD [MODULE@VERSION...]
# Downloads MODULE, writes a wrapper module that requires it (and the other MODULE@VERSIONs, at
# exactly those versions) with upstream's replace/godebug/exclude directives, resolves PACKAGE's
# dependencies there and compiles it to OUT. The wrapper's go.mod and go.sum are kept beside OUT
# as RECORD.go.mod and RECORD.go.sum.
go_compile() {
    local label=$1 modver=$2 pkg=$3 out=$4 ldflags=$5 record=$6
    shift 6
    local mod=${modver%@*} ver=${modver#*@} src gover w name
    name=$(basename -- "$out")
    name=${name%%_v[0-9]*}
    download "$label" "$modver"
    src=${DOWNLOADED[$modver]}
    gover=$(go_directive "$src/go.mod")
    require_go "$name $ver" "$gover" "$BUILD_ALT"

    step "$label: resolve dependencies of $pkg in a wrapper module" "see the log; a dependency may be missing from the Go module proxy. Or $BUILD_ALT."
    w=$BUILD_TMP/wrapper-$name
    upstream_directives "$src/go.mod" >"$BUILD_TMP/directives-$name"
    write_wrapper "$w" "$name" "$gover" "$BUILD_TMP/directives-$name" "$modver" "$@"
    go_resolve_in "$w" "$pkg@$ver" "$@"
    step_done

    step "$label: compile $pkg (go build -p $GO_PARALLEL)" "see the log (a compiler error usually means a Go toolchain that is too old or too new for $modver). Or $BUILD_ALT."
    go_build_in "$w" "$out" "$pkg" "$ldflags$BUILD_LDFLAGS"
    cp "$w/go.mod" "$(dirname -- "$out")/$record.go.mod"
    [[ ! -f $w/go.sum ]] || cp "$w/go.sum" "$(dirname -- "$out")/$record.go.sum"
    step_done
}

# build_go_engine OPTION VALUE ...: the one way an engine gets into the cache. Unless the cached
# build $CACHE_ROOT/KEY is current (its .stamp says STAMP and it holds every file), it takes the
# build lock, compiles MODULE's PACKAGE into a temp folder (go_compile), runs the PREPARE and
# VERIFY functions on that folder, records the provenance and renames the folder into place.
#   --key NAME-VERSION  cache folder, lock and log name
#   --stamp TEXT        identity of the build; existing caches are valid while it stays the same
#   --label TEXT        prefix of the progress lines
#   --module MOD@VER    the upstream module
#   --package PKG       the package to compile (default: the module itself)
#   --require MOD@VER   another module the wrapper requires at that version (repeatable)
#   --output FILE       the binary's name in the cache folder
#   --ldflags FLAGS     go build -ldflags
#   --file FILE         another file the build puts beside it (repeatable)
#   --prepare FUNCTION  FUNCTION OUT_DIR runs before the compile (more binaries, copied files)
#   --verify FUNCTION   FUNCTION OUT_DIR fails unless the built files are what was asked for
#   --alt TEXT          what the user can do instead, for the advice on failure
#   --old-linknames 1   link as Go <= 1.22 did: Go >= 1.23 refuses old dependencies'
#                       //go:linkname into the runtime (-checklinkname=0)
build_go_engine() {
    local key="" stamp="" label="" modver="" pkg="" output="" ldflags="" prepare="" verify="" alt="" linknames=0
    local requires=() files=()
    while (($#)); do
        case $1 in
            --key) key=$2 ;;
            --stamp) stamp=$2 ;;
            --label) label=$2 ;;
            --module) modver=$2 ;;
            --package) pkg=$2 ;;
            --require) requires+=("$2") ;;
            --output) output=$2 ;;
            --ldflags) ldflags=$2 ;;
            --file) files+=("$2") ;;
            --prepare) prepare=$2 ;;
            --verify) verify=$2 ;;
            --alt) alt=$2 ;;
            --old-linknames) linknames=$2 ;;
            *) die "build_go_engine: unknown option $1" ;;
        esac
        shift 2
    done
    local dest=$CACHE_ROOT/$key
    files=("$output" "${files[@]}")
    if [[ $REBUILD != 1 ]] && cache_ok "$dest" "$stamp" "${files[@]}"; then
        log "$label: cached build $dest"
        return 0
    fi
    BUILD_ALT=$alt
    # In a subshell: the lock, the temp folder and its cleanup belong to this one build.
    (
        local t0 out f
        t0=$(now)
        log "$label: building $modver${pkg:+ ($pkg)} (cold: up to several minutes)"
        begin_build "$key"
        if [[ $REBUILD != 1 ]] && cache_ok "$dest" "$stamp" "${files[@]}"; then
            log "$label: built meanwhile by another run"
            exit 0
        fi
        require_go "$label" "1.22" "$alt"
        if [[ $linknames == 1 ]] && version_ge "$(go_env GOVERSION | sed 's/^go//')" 1.23; then
            BUILD_LDFLAGS=" -checklinkname=0"
        fi
        out=$BUILD_TMP/out
        mkdir -p "$out"
        # The sources first: a version the proxy refuses fails in seconds, not after minutes of compiling.
        download "$label" "$modver"
        [[ -z $prepare ]] || "$prepare" "$out"
        go_compile "$label" "$modver" "${pkg:-${modver%@*}}" "$out/$output" "$ldflags" build "${requires[@]}"

        step "$label: verify" "the build is not what was asked for ($modver); see the log."
        for f in "${files[@]}"; do [[ -x $out/$f ]] || die "$label: the build did not produce $f."; done
        [[ -z $verify ]] || "$verify" "$out"
        finish_build "$stamp"
        commit_build "$out" "$dest"
        step_done
        log "$label: built in $(since "$t0")"
    )
}

# --------------------------------------------------------------------------
# tofu

tofu_version_of() { # prints e.g. 1.12.6 (no "v") or nothing
    # (any line: a warning about a missing CLI config file may come first)
    TF_CLI_CONFIG_FILE=/dev/null timeout 30 "$1" version 2>/dev/null |
        sed -n 's/^OpenTofu v\([0-9][^ ]*\).*/\1/p' | head -n 1 || true
}

tofu_verify() { # tofu_verify OUT_DIR
    local got
    got=$(tofu_version_of "$1/tofu")
    printf 'tofu version -> %s\n' "$got" >>"$LOG_FILE"
    [[ $got == "$OPENTOFU_VERSION" ]]
}

install_tofu() {
    local ver=$OPENTOFU_VERSION mod=github.com/opentofu/opentofu
    [[ -n $ver ]] || die "OPENTOFU_VERSION is empty in tools/versions.env."
    use_own tofu "$OPENTOFU_MIN_VERSION" tofu_version_of "OpenTofu " && return 0
    build_go_engine --key "tofu-$ver" --label tofu \
        --stamp "$mod@v$ver cmd/tofu -X version.dev=no" \
        --module "$mod@v$ver" --package "$mod/cmd/tofu" --output tofu \
        --ldflags "-s -w -X github.com/opentofu/opentofu/version.dev=no" \
        --verify tofu_verify \
        --alt "put an OpenTofu >= $OPENTOFU_MIN_VERSION 'tofu' on PATH"
    local dest=$CACHE_ROOT/tofu-$ver
    link "$dest/tofu" "$BIN_DIR/tofu"
    summary "tofu       $BIN_DIR/tofu -> $dest/tofu  (OpenTofu v$(tofu_version_of "$BIN_DIR/tofu"))"
}

# --------------------------------------------------------------------------
# providers

tf_platform() {
    local os arch
    case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os=$(uname -s | tr '[:upper:]' '[:lower:]') ;; esac
    case "$(uname -m)" in x86_64 | amd64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; i?86) arch=386 ;; *) arch=$(uname -m) ;; esac
    printf '%s_%s\n' "$os" "$arch"
}

provider_verify() { # provider_verify OUT_DIR
    # A provider run by hand prints its "not meant to be executed directly" notice and exits 1.
    local exe out
    exe=$(find "$1" -maxdepth 1 -name 'terraform-provider-*' -type f | head -n 1)
    out=$("$exe" 2>&1 </dev/null || true)
    printf '%s -> %s\n' "${exe##*/}" "$out" >>"$LOG_FILE"
    [[ $out == *plugin* ]]
}

# build_provider TYPE VERSION MODULE MODULE_VERSION: prints the cached binary's path
build_provider() {
    local type=$1 ver=$2 mod=$3 modver=$4
    local key="terraform-provider-$type-$ver" exe="terraform-provider-${type}_v$ver"
    build_go_engine --key "$key" --label "providers: $type" --stamp "$mod@$modver" \
        --module "$mod@$modver" --output "$exe" --ldflags "-s -w" --verify provider_verify \
        --alt "drop ${type^^}_PROVIDER_VERSION from tools/versions.env (stacks then need another provider source)" >&2
    printf '%s\n' "$CACHE_ROOT/$key/$exe"
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
        bin=$(build_provider random "$RANDOM_PROVIDER_VERSION" "$RANDOM_PROVIDER_MODULE" "$RANDOM_PROVIDER_MODULE_VERSION")
        add_entry hashicorp random "$RANDOM_PROVIDER_VERSION" "$bin"
    fi
    if [[ -n ${NULL_PROVIDER_VERSION:-} ]]; then
        bin=$(build_provider null "$NULL_PROVIDER_VERSION" "$NULL_PROVIDER_MODULE" "$NULL_PROVIDER_MODULE_VERSION")
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

PULUMI_PKG=github.com/pulumi/pulumi/pkg/v3
PULUMI_SDK=github.com/pulumi/pulumi/sdk/v3

pulumi_version_of() { # prints e.g. 3.79.0 (no "v") or nothing
    PULUMI_SKIP_UPDATE_CHECK=1 timeout 30 "$1" version 2>/dev/null |
        sed -n 's/^v\([0-9][^ ]*\)$/\1/p' | head -n 1 || true
}

# The language host's version: PULUMI_LANGUAGE_PYTHON_VERSION, "none", or the CLI's version.
pulumi_host_version() { printf '%s\n' "${PULUMI_LANGUAGE_PYTHON_VERSION:-$PULUMI_VERSION}"; }

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

# pulumi_ldflags VERSION: -s -w plus the version stamp, set the way upstream's
# release builds set it: the CLI of pulumi <= 3.8x prints pkg/v3/version.Version,
# later ones sdk/v3/go/common/version.Version (the linker ignores -X for a
# variable that does not exist, so both are set). Pulumi builds also link with
# --old-linknames: pulumi 3.79 needs github.com/pgavlin/text, which links
# internal/bytealg.
pulumi_ldflags() {
    printf -- '-s -w -X %s/version.Version=v%s -X %s/go/common/version.Version=v%s' "$PULUMI_PKG" "$1" "$PULUMI_SDK" "$1"
}

# pulumi_companions OUT_DIR: what goes beside the CLI, copied or built before the CLI is
# compiled (a refused module fails in seconds, not after minutes of compiling it):
#  - pulumi-language-python, the Python language host. Up to 3.79.0 it is a package of the
#    sdk/v3 module; from 3.80.0 on a module of its own, which the proxy here refuses.
#  - pulumi-language-python-exec, the script through which the host runs a program; the host
#    looks for it next to its own (symlink-resolved) executable. Taken from the CLI's release:
#    it is the half of the host that talks to the program's SDK, and it accepts older SDKs.
#  - pulumi-resource-pulumi-python, the dynamic providers' plugin, from the CLI's release.
pulumi_companions() {
    local out=$1 ver=$PULUMI_VERSION lver
    lver=$(pulumi_host_version)
    download pulumi "$PULUMI_SDK@v$ver"
    [[ $lver == none ]] || install -m 0755 "${DOWNLOADED[$PULUMI_SDK@v$ver]}/python/cmd/pulumi-language-python-exec" "$out/"
    install -m 0755 "${DOWNLOADED[$PULUMI_SDK@v$ver]}/python/dist/pulumi-resource-pulumi-python" "$out/"
    if [[ $lver == none ]]; then
        log "pulumi: PULUMI_LANGUAGE_PYTHON_VERSION=none: not building pulumi-language-python (only inline programs will run)"
    elif version_ge 3.79.0 "$lver"; then
        go_compile "pulumi: language host" "$PULUMI_SDK@v$lver" "$PULUMI_SDK/python/cmd/pulumi-language-python" \
            "$out/pulumi-language-python" "$(pulumi_ldflags "$lver")" build-language-python
    else
        local lang=github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3
        local BUILD_ALT="pin PULUMI_LANGUAGE_PYTHON_VERSION to 3.79.0, the newest release whose host is part of $PULUMI_SDK (from 3.80.0 on it is the module $lang); or $BUILD_ALT"
        go_compile "pulumi: language host" "$lang@v$lver" "$lang" "$out/pulumi-language-python" \
            "$(pulumi_ldflags "$lver")" build-language-python "$PULUMI_PKG@v$lver" "$PULUMI_SDK@v$lver"
    fi

}

pulumi_verify() { # pulumi_verify OUT_DIR
    local got
    got=$(pulumi_version_of "$1/pulumi")
    printf 'pulumi version -> %s\n' "$got" >>"$LOG_FILE"
    [[ $got == "$PULUMI_VERSION" ]]
    [[ ! -e $1/pulumi-language-python ]] || langhost_starts "$1/pulumi-language-python"
}

install_pulumi() {
    local ver=$PULUMI_VERSION lver dest=$CACHE_ROOT/pulumi-$PULUMI_VERSION f
    lver=$(pulumi_host_version)
    [[ -n $ver ]] || die "PULUMI_VERSION is empty in tools/versions.env."
    use_own pulumi "$PULUMI_MIN_VERSION" pulumi_version_of "" && return 0
    local files=()
    [[ $lver == none ]] || files+=(pulumi-language-python pulumi-language-python-exec)
    files+=(pulumi-resource-pulumi-python)
    local options=()
    for f in "${files[@]}"; do options+=(--file "$f"); done
    build_go_engine --key "pulumi-$ver" --label pulumi \
        --stamp "$PULUMI_PKG@v$ver language-python@v$lver +exec" \
        --module "$PULUMI_PKG@v$ver" --package "$PULUMI_PKG/cmd/pulumi" --require "$PULUMI_SDK@v$ver" \
        --output pulumi --ldflags "$(pulumi_ldflags "$ver")" "${options[@]}" \
        --prepare pulumi_companions --verify pulumi_verify --old-linknames 1 \
        --alt "put a pulumi >= $PULUMI_MIN_VERSION CLI (with its language hosts) on PATH, e.g. from https://www.pulumi.com/docs/install/ where release downloads work"
    for f in pulumi "${files[@]}"; do link "$dest/$f" "$BIN_DIR/$f"; done
    [[ $lver != none ]] || rm -f -- "$BIN_DIR/pulumi-language-python" "$BIN_DIR/pulumi-language-python-exec"
    summary "pulumi     $BIN_DIR/pulumi -> $dest/pulumi  (v$(pulumi_version_of "$BIN_DIR/pulumi"); with ${files[*]})"
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
        # The ERR trap is off out here while it runs: a failed subshell would
        # fire it (with or without set -e) and end the whole run.
        set +e
        trap - ERR
        (
            set -e
            trap 'on_error $? $LINENO' ERR
            "install_$engine"
        )
        rc=$?
        trap 'on_error $? $LINENO' ERR
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
        exit 1 # not `return`: the ERR trap would report the failure a second time
    fi
    printf '[engines] add %s to PATH; for tofu/terraform: export TF_CLI_CONFIG_FILE=%s\n' "$BIN_DIR" "$TFRC"
}

main "$@"
