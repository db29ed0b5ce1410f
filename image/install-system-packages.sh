#!/usr/bin/env bash
# Debian packages of the image's final stage, without recommends, leaving no apt lists or caches.
#
# Usage: image/install-system-packages.sh [--simulate DIR] [--dpkg-config FILE] PACKAGE...
#   (the Dockerfile: --dpkg-config /tmp/image/dpkg-excludes.cfg git openssh-client ca-certificates)
#
#   --dpkg-config FILE  installed as /etc/dpkg/dpkg.cfg.d/iac-driver-runner before the packages, e.g. to
#                   leave out files with path-exclude lines (image/dpkg-excludes.cfg); ignored with --simulate,
#                   which lists packages, not files
#
#   --simulate DIR  change nothing: apt-get's dry run against an empty package database kept in DIR
#                   (a fresh folder), using this machine's package lists. It prints every package a
#                   bare system would get, one per line, so a test can check that no build tool
#                   (compiler, make, Go) comes in. Needs no root.
#
# Versions are not pinned: Debian's archive drops a package's older version as soon as a security
# update replaces it, so an exact pin breaks the build; the base image's tag pins the release.
set -euo pipefail

log() { printf '[image-packages] %s\n' "$*" >&2; }
fail() { printf '[image-packages] FAILED: %s\n' "$*" >&2; exit 1; }
usage() { printf 'usage: %s [--simulate DIR] [--dpkg-config FILE] PACKAGE...\n' "${0##*/}" >&2; exit 2; }

simulate="" dpkg_config=""
while [[ ${1:-} == --* ]]; do
    [[ -n ${2:-} ]] || usage
    case $1 in
    --simulate) simulate=$2 ;;
    --dpkg-config) dpkg_config=$2 ;;
    *) usage ;;
    esac
    shift 2
done
[[ $# -ge 1 ]] || usage
for p in "$@"; do
    [[ $p =~ ^[a-z0-9][a-z0-9+.-]+$ ]] || fail "'$p' is not a Debian package name."
done

if [[ -n $simulate ]]; then
    mkdir -p -- "$simulate/cache/archives/partial"
    : >"$simulate/status"
    apt-get --simulate --no-install-recommends \
        -o Dir::State::status="$simulate/status" -o Dir::Cache="$simulate/cache" -o Debug::NoLocking=1 \
        install "$@" >"$simulate/apt.log" 2>&1 || {
        cat -- "$simulate/apt.log" >&2
        fail "apt-get cannot resolve: $* (are this machine's package lists there? apt-get update)"
    }
    sed -n 's/^Inst \([^ ]*\) .*/\1/p' "$simulate/apt.log"
    exit 0
fi

[[ $(id -u) == 0 ]] || fail "installing packages needs root (or use --simulate DIR)."
if [[ -n $dpkg_config ]]; then
    [[ -f $dpkg_config ]] || fail "$dpkg_config does not exist."
    install -m 0644 -- "$dpkg_config" /etc/dpkg/dpkg.cfg.d/iac-driver-runner
    log "dpkg config: $(grep -c '^path-exclude' "$dpkg_config") path excludes from ${dpkg_config##*/}"
fi
export DEBIAN_FRONTEND=noninteractive
log "apt-get install --no-install-recommends $*"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || fail "$p is not installed."
    log "$p $(dpkg-query -W -f='${Version}' "$p")"
done
