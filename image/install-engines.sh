#!/usr/bin/env bash
# The image's engines, from the project's own tools step (tools/install-engines.sh, pins in
# tools/versions.env): what `make tools` gives the tests is what the image ships.
#
# Usage: image/install-engines.sh DEST [SEED]   (the Dockerfile: /opt/iac-runner /tmp/tools-seed)
#   SEED  a copy of a tool cache that `make tools` filled (image/build.sh stages one): the builds in it
#         that the cache lacks are copied in first, so the engines are linked instead of compiled. An
#         empty or missing SEED is fine (a cold build: ~25 min on 2 cores).
#
# Result, all regular files (no link into a build cache):
#   DEST/bin/        tofu, pulumi, pulumi-language-python, pulumi-language-python-exec,
#                    pulumi-resource-pulumi-python
#   DEST/providers/  offline provider mirror (hashicorp/random; the registry.terraform.io entry is a
#                    relative link to the registry.opentofu.org copy)
#   DEST/tofu.tfrc   CLI config for TF_CLI_CONFIG_FILE, pointing at DEST/providers
#   DEST/build-info/ provenance of each build (Go version, wrapper go.mod/go.sum)
#
# Engines already built for the same pins are taken from the per-user tool cache (see
# tools/README.md; IAC_RUNNER_TOOLS_CACHE); a `tofu` or `pulumi` found on PATH is never used. Providers
# under /opt/tf-plugins are not included unless IMAGE_EXTRA_PROVIDER_MIRROR names such a folder.
# Runs anywhere with bash and Go (no root needed): DEST is a plain folder. Behind a TLS-intercepting proxy,
# the Go downloads trust the build's `build-cas` secret (image/with-build-cas.sh).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(dirname -- "$here")
[[ ($# -eq 1 || $# -eq 2) && -n $1 ]] || { printf 'usage: %s DEST [SEED]\n' "${0##*/}" >&2; exit 2; }
mkdir -p -- "$1"
dest=$(cd -- "$1" && pwd -P)
seed=${2:-}

log() { printf '[image-engines] %s\n' "$*"; }
fail() { printf '[image-engines] FAILED: %s\n' "$*" >&2; exit 1; }

# The tools step's own default, made explicit so that the seed lands where it looks.
cache=${IAC_RUNNER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iac-driver-runner/tools}
export IAC_RUNNER_TOOLS_CACHE=$cache
if [[ -n $seed && -d $seed ]]; then
    mkdir -p -- "$cache"
    # Only finished builds (a .stamp); a build already in the cache is kept (the stamp decides its use).
    for build in "$seed"/*/; do
        build=${build%/}
        name=${build##*/}
        [[ -f $build/.stamp && ! -e $cache/$name ]] || continue
        cp -a -- "$build" "$cache/$name.seed.$$"
        mv -T -- "$cache/$name.seed.$$" "$cache/$name"
        log "seeded the tool cache with $name"
    done
fi

log "engines into $dest (tools/install-engines.sh --tools-dir $dest all)"
IAC_RUNNER_FORCE_BUILD=1 EXTRA_PROVIDER_MIRROR=${IMAGE_EXTRA_PROVIDER_MIRROR:-} \
    "$here/with-build-cas.sh" "$repo/tools/install-engines.sh" --tools-dir "$dest" all

# The tools step links into its cache; an image layer needs the files themselves. The first link
# to a file becomes a copy, later links to the same file a relative link to that copy.
declare -A copied=()
mkdir -p -- "$dest/build-info"
while IFS= read -r -d '' lnk; do
    target=$(realpath -e -- "$lnk") || fail "$lnk is a dangling link."
    [[ $target == "$dest"/* ]] && continue
    if [[ -n ${copied[$target]:-} ]]; then
        rm -f -- "$lnk"
        ln -s -r -- "${copied[$target]}" "$lnk"
    else
        cp --remove-destination --preserve=mode -- "$target" "$lnk"
        chmod a+rx -- "$lnk"
        copied[$target]=$lnk
        src=$(dirname -- "$target")
        info=$dest/build-info/$(basename -- "$src")
        if [[ ! -d $info ]]; then
            mkdir -p -- "$info"
            find "$src" -maxdepth 1 -type f \( -name 'build-info.txt' -o -name '*.go.mod' -o -name '*.go.sum' \) \
                -exec cp -- {} "$info/" \;
        fi
    fi
done < <(find "$dest" -type l -print0 | sort -z)

# Checks: everything in place, nothing pointing outside DEST, the engines start.
for f in tofu pulumi pulumi-language-python pulumi-language-python-exec pulumi-resource-pulumi-python; do
    [[ -f $dest/bin/$f && -x $dest/bin/$f ]] || fail "$dest/bin/$f is missing."
done
[[ -f $dest/tofu.tfrc ]] || fail "$dest/tofu.tfrc is missing."
grep -q -F "\"$dest/providers\"" "$dest/tofu.tfrc" || fail "$dest/tofu.tfrc does not point at $dest/providers."
while IFS= read -r -d '' lnk; do
    target=$(realpath -e -- "$lnk") || fail "$lnk is a dangling link."
    [[ $target == "$dest"/* ]] || fail "$lnk still points outside $dest ($target)."
done < <(find "$dest" -type l -print0)
log "$(TF_CLI_CONFIG_FILE=$dest/tofu.tfrc "$dest/bin/tofu" version | head -n 1)"
log "pulumi $(PULUMI_SKIP_UPDATE_CHECK=true "$dest/bin/pulumi" version)"
log "done: $(du -sh -- "$dest" | cut -f 1) in $dest"
