#!/usr/bin/env bash
# Base images made from Debian's own packages, for machines that reach no container registry. Each stands in
# for an official image and carries its name under our own prefix, so it is never taken for the real one:
#
#   iac-driver-runner-base/debian:bookworm-slim   debootstrap --variant=minbase bookworm from this machine's
#                                                 Debian mirror, slimmed like the official -slim, docker import
#   iac-driver-runner-base/<PYTHON_IMAGE>         image/bases.Dockerfile target python on top of it
#   iac-driver-runner-base/<GOLANG_IMAGE>         image/bases.Dockerfile target golang on top of it
#
# PYTHON_IMAGE and GOLANG_IMAGE are the defaults of the Dockerfile's build args of the same names (e.g.
# python:3.11-slim-bookworm, golang:1.26.8-bookworm): one pin, read from there. image/build.sh passes the
# made images to the Dockerfile as those build args.
#
# Usage: tools/base-images.sh [--force] [names|all|debian|python|golang]   (default all)
#   names    print the three local image names (one a line: debian, python, golang) and change nothing
#   --force  make the image(s) again even when present
#
# Needs a Docker engine (tools/docker-engine.sh start) and, for debian, root on Debian with debootstrap (it is
# installed with apt-get when missing). Environment: IMAGE_BUILD_CAS (a PEM bundle of extra CAs for the Go
# download; default: made by image/host-cas.sh), GOPROXY (passed on to the Go download), DEBIAN_MIRROR and
# DEBIAN_SECURITY_MIRROR (default: this machine's, from /etc/apt/sources.list.d/debian.sources).
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
prefix=iac-driver-runner-base
suite=bookworm

log() { printf '[base-images] %s\n' "$*" >&2; }
fail() { printf '[base-images] FAILED: %s\n' "$*" >&2; exit 1; }
usage() { printf 'usage: %s [--force] [names|all|debian|python|golang]\n' "${0##*/}" >&2; exit 2; }

# dockerfile_default ARG: the default of `ARG NAME=value` in the Dockerfile.
dockerfile_default() {
    local v
    v=$(sed -n "s/^ARG $1=\\([^[:space:]]*\\)\$/\\1/p" "$repo/Dockerfile" | head -n 1)
    [[ -n $v ]] || fail "the Dockerfile has no 'ARG $1=...' default."
    printf '%s\n' "$v"
}

debian_name=$prefix/debian:$suite-slim
python_name=$prefix/$(dockerfile_default PYTHON_IMAGE)
golang_name=$prefix/$(dockerfile_default GOLANG_IMAGE)

force=0
[[ ${1:-} == --force ]] && { force=1; shift; }
[[ $# -le 1 ]] || usage
what=${1:-all}
case $what in
names) printf '%s\n' "$debian_name" "$python_name" "$golang_name"; exit 0 ;;
all | debian | python | golang) ;;
*) usage ;;
esac

docker=$("$repo/tools/docker-engine.sh" client)
export DOCKER_BUILDKIT=1
"$docker" version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
    fail "no Docker engine answers: run tools/docker-engine.sh start first."

present() { [[ $force == 0 ]] && "$docker" image inspect "$1" >/dev/null 2>&1; }
seconds() { printf '%ds' $((SECONDS - $1)); }

# mirror_of SUITE: the URI this machine's apt takes SUITE from (deb822 sources).
mirror_of() {
    awk -v suite="$1" '
        /^URIs:/ { uri = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) { print uri; exit } }
        /^$/ { uri = "" }
    ' /etc/apt/sources.list.d/*.sources 2>/dev/null
}

make_debian() {
    local t0=$SECONDS mirror security root arch epoch
    [[ $(id -u) == 0 ]] || fail "debootstrap needs root (this is uid $(id -u))."
    if [[ ! -f /etc/debian_version ]] || ! command -v apt-get >/dev/null 2>&1; then
        fail "making $debian_name needs a Debian machine (debootstrap, apt); elsewhere pull the official images."
    fi
    if ! command -v debootstrap >/dev/null 2>&1; then
        log "apt-get install debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
            fail "apt-get install debootstrap failed (apt-get update first?)."
    fi
    mirror=${DEBIAN_MIRROR:-$(mirror_of "$suite")}
    security=${DEBIAN_SECURITY_MIRROR:-$(mirror_of "$suite-security")}
    mirror=${mirror:-http://deb.debian.org/debian}
    security=${security:-http://deb.debian.org/debian-security}
    arch=$(dpkg --print-architecture)
    root=$(mktemp -d /var/tmp/base-debian.XXXXXX)
    chmod 0755 -- "$root"  # apt downloads as _apt inside it
    # shellcheck disable=SC2064 # expand now: $root is local
    trap "rm -rf -- '$root'" EXIT

    log "debootstrap --variant=minbase $suite ($arch) from $mirror"
    debootstrap --variant=minbase --arch="$arch" "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
        tail -n 20 -- "$root.log" >&2
        fail "debootstrap failed (log: $root.log)."
    }
    rm -f -- "$root.log"

    # What the official image has: deb822 sources with updates and security, and apt/dpkg set up for
    # containers: no docs, man pages or translations (copyright files stay), no caches or lists left behind.
    rm -f -- "$root/etc/apt/sources.list"
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: %s\n\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: %s\n' \
        "$mirror" "$suite" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg \
        "$security" "$suite" /usr/share/keyrings/debian-archive-keyring.gpg \
        >"$root/etc/apt/sources.list.d/debian.sources"
    printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/groff/*' \
        'path-exclude /usr/share/lintian/*' 'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/locale/*' \
        >"$root/etc/dpkg/dpkg.cfg.d/docker"
    printf '%s\n' 'Acquire::Languages "none";' 'Acquire::GzipIndexes "true";' \
        'APT::AutoRemove::SuggestsImportant "false";' 'Apt::Install-Recommends "false";' \
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' \
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$root/etc/apt/apt.conf.d/docker"

    log "apt-get upgrade from $suite-updates and $suite-security"
    # A private mount namespace: /proc for the package scripts, gone with the namespace.
    # shellcheck disable=SC2016 # $1 is the inner shell's argument
    unshare --mount --propagation private sh -c '
        mount -t proc proc "$1/proc" &&
        chroot "$1" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Use-Pty=0 upgrade >/dev/null"
    ' sh "$root" || fail "apt-get upgrade in the new root failed."

    # The same mirror state gives the same layer: dates in the tree are the newest suite's Release date
    # (shadow's "last changed" days), not today's, and ldconfig's aux-cache (inode numbers) goes.
    epoch=$(sed -n 's/^Date: //p' "$root"/var/lib/apt/lists/*InRelease | while IFS= read -r d; do
        date -u -d "$d" +%s
    done | sort -n | tail -n 1)
    [[ -n $epoch ]] || fail "no Release date in the new root's apt lists."
    sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$((epoch / 86400)):/" "$root/etc/shadow"
    rm -f -- "$root/var/cache/ldconfig/aux-cache"
    find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$root"/usr/share/{man,info,groff,lintian,linda,locale}/* "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
        "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* "$root"/debootstrap
    # Docker provides these per container; the official image ships machine-id empty.
    rm -f -- "$root/etc/hostname" "$root/etc/resolv.conf" "$root/etc/hosts"
    : >"$root/etc/machine-id"

    log "docker import $debian_name"
    # Sorted, with fixed times: the same packages give the same layer.
    tar --numeric-owner --xattrs --pax-option=delete=atime,delete=ctime --sort=name --mtime=@0 --clamp-mtime \
        -C "$root" -c . |
        "$docker" import --change 'CMD ["bash"]' - "$debian_name" >/dev/null
    rm -rf -- "$root"
    trap - EXIT
    log "$debian_name made in $(seconds "$t0"): $(size_of "$debian_name")"
}

size_of() { "$docker" image inspect --format '{{.Size}}' "$1" | awk '{ printf "%.0f MB", $1 / 1e6 }'; }

# build_target TARGET NAME [BUILD-ARG...]: a target of image/bases.Dockerfile on top of the debian base.
build_target() {
    local target=$1 name=$2 t0=$SECONDS cas args=()
    shift 2
    for a in "$@"; do args+=(--build-arg "$a"); done
    cas=${IMAGE_BUILD_CAS:-}
    if [[ -z $cas ]]; then
        cas=$(mktemp)
        # shellcheck disable=SC2064 # expand now: $cas is local
        trap "rm -f -- '$cas'" EXIT
        "$repo/image/host-cas.sh" "$cas"
    fi
    log "docker build --target $target -t $name"
    "$docker" build --progress=plain --file "$repo/image/bases.Dockerfile" --target "$target" \
        --build-arg "DEBIAN_IMAGE=$debian_name" "${args[@]}" --secret "id=build-cas,src=$cas" \
        --tag "$name" "$repo" >&2 || fail "building $name failed (output above)."
    log "$name made in $(seconds "$t0"): $(size_of "$name")"
}

# The python and golang bases build on the debian one; --force python does not make that again.
need_debian() { "$docker" image inspect "$debian_name" >/dev/null 2>&1 || make_debian; }

if [[ $what == all || $what == debian ]]; then
    if present "$debian_name"; then log "$debian_name is there"; else make_debian; fi
fi
if [[ $what == all || $what == python ]]; then
    if present "$python_name"; then
        log "$python_name is there"
    else
        need_debian
        build_target python "$python_name"
    fi
fi
if [[ $what == all || $what == golang ]]; then
    if present "$golang_name"; then
        log "$golang_name is there"
    else
        need_debian
        go_version=${golang_name##*:}
        go_version=${go_version%%-*}
        build_target golang "$golang_name" "GO_VERSION=$go_version" "GOPROXY=${GOPROXY:-}"
    fi
fi
