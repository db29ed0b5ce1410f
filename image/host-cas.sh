#!/usr/bin/env bash
# The build host's extra CA certificates as one PEM file, for the `build-cas` BuildKit secret: behind a
# TLS-intercepting proxy the build steps that download trust it (image/with-build-cas.sh), and no image layer
# keeps it.
#
# Usage: image/host-cas.sh OUT
#   Writes OUT (mode 0644; empty when there are none) from every *.crt under $IMAGE_EXTRA_CA_DIR
#   (default /usr/local/share/ca-certificates, where Debian's update-ca-certificates takes local CAs from).
set -euo pipefail

[[ $# -eq 1 && -n $1 ]] || { printf 'usage: %s OUT\n' "${0##*/}" >&2; exit 2; }
out=$1 dir=${IMAGE_EXTRA_CA_DIR:-/usr/local/share/ca-certificates}

tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
count=0
if [[ -d $dir ]]; then
    while IFS= read -r -d '' crt; do
        grep -q -e '-----BEGIN CERTIFICATE-----' -- "$crt" || continue
        cat -- "$crt" >>"$tmp"
        printf '\n' >>"$tmp"
        count=$((count + 1))
    done < <(find -L "$dir" -type f -name '*.crt' -print0 | sort -z)
fi
chmod 0644 -- "$tmp"
mv -f -- "$tmp" "$out"
trap - EXIT
printf '[host-cas] %s extra CA certificate file(s) from %s\n' "$count" "$dir" >&2
