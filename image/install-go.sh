#!/usr/bin/env bash
# A Go toolchain of an exact version on Debian bookworm, when the official golang image cannot be pulled:
# bookworm-backports' Go (1.23) fetches toolchain goVERSION from the Go module proxy (GOTOOLCHAIN), the
# fetched toolchain is laid out in DEST like the official image's /usr/local/go, and the bootstrap Go is
# removed again.
#
# Usage: image/install-go.sh VERSION DEST     (tools/base-images.sh: 1.26.8 /usr/local/go)
#
# Needs root and the Debian archive (apt), the Go module proxy ($GOPROXY, default proxy.golang.org) and its
# checksum database ($GOSUMDB); behind a TLS-intercepting proxy run it through image/with-build-cas.sh.
set -euo pipefail

log() { printf '[image-go] %s\n' "$*" >&2; }
fail() { printf '[image-go] FAILED: %s\n' "$*" >&2; exit 1; }
[[ $# -eq 2 && $1 =~ ^[0-9]+\.[0-9]+(\.[0-9]+)?$ && $2 == /* ]] || {
    printf 'usage: %s VERSION DEST  (e.g. 1.26.8 /usr/local/go)\n' "${0##*/}" >&2
    exit 2
}
version=$1 dest=$2
bootstrap=golang-1.23-go
[[ $(id -u) == 0 ]] || fail "installing Go needs root."
[[ ! -e $dest ]] || fail "$dest already exists."

# The backports suite on the mirror the image already uses.
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources | head -n 1)
[[ -n $mirror ]] || fail "no Debian mirror found in /etc/apt/sources.list.d/debian.sources."
backports=/etc/apt/sources.list.d/backports.sources
printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
    "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg >"$backports"

export DEBIAN_FRONTEND=noninteractive
log "apt-get install -t bookworm-backports $bootstrap (bootstrap Go from $mirror)"
apt-get update -qq
apt-get install -y -qq --no-install-recommends -t bookworm-backports "$bootstrap" ca-certificates >/dev/null
boot_go=$(dpkg -L "$bootstrap" | grep -m 1 '/bin/go$')
log "bootstrap: $("$boot_go" version)"

# `go version` with GOTOOLCHAIN set downloads the toolchain module into a private module cache.
work=$(mktemp -d)
trap 'chmod -R u+w -- "$work" 2>/dev/null; rm -rf -- "$work"' EXIT
log "GOTOOLCHAIN=go$version from ${GOPROXY:-the default Go module proxy}"
GOTOOLCHAIN=go$version GOPATH=$work/gopath GOMODCACHE=$work/mod GOFLAGS=-modcacherw "$boot_go" version >&2 ||
    fail "could not fetch toolchain go$version (is the Go module proxy reachable, and its certificate trusted?)."
src=$(find "$work/mod/golang.org" -mindepth 1 -maxdepth 1 -type d -name "toolchain@v0.0.1-go$version.*" | head -n 1)
[[ -n $src && -x $src/bin/go ]] || fail "toolchain go$version not found in the module cache after the download."
mkdir -p -- "$(dirname -- "$dest")"
cp -a -- "$src" "$dest"
chmod -R u+w,go-w -- "$dest"

log "removing the bootstrap Go"
apt-get purge -y -qq --auto-remove "$bootstrap" >/dev/null
rm -f -- "$backports"
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log

got=$(GOTOOLCHAIN=local "$dest/bin/go" env GOVERSION)
[[ $got == "go$version" ]] || fail "$dest/bin/go reports $got, not go$version."
log "$got in $dest ($(du -sh -- "$dest" | cut -f 1))"
