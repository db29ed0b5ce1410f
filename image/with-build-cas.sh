#!/usr/bin/env bash
# Run one build step that downloads (pip, go) trusting the build host's extra CAs as well as the system's,
# when the build was given them as the `build-cas` BuildKit secret (image/host-cas.sh makes it). The combined
# bundle lives in a temp folder that is gone when the step ends, and the variables pointing at it are set for
# this step only: no layer keeps a certificate or a setting for it.
#
# Usage (a Dockerfile RUN step):
#   RUN --mount=type=secret,id=build-cas image/with-build-cas.sh COMMAND [ARG...]
#
# Without the secret (a plain `docker build`, no proxy) COMMAND runs unchanged.
set -euo pipefail

[[ $# -ge 1 ]] || { printf 'usage: %s COMMAND [ARG...]\n' "${0##*/}" >&2; exit 2; }
secret=${BUILD_CAS_SECRET:-/run/secrets/build-cas}

if [[ -s $secret ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf -- "$tmp"' EXIT
    bundle=$tmp/ca-bundle.pem
    # The system's bundle first (ca-certificates), then the extra ones; both are optional.
    cat /etc/ssl/certs/ca-certificates.crt "$secret" >"$bundle" 2>/dev/null || cat -- "$secret" >"$bundle"
    # Go and OpenSSL-based tools: SSL_CERT_FILE; pip: PIP_CERT (pip 23 ignores SSL_CERT_FILE); requests
    # (inside pip's vendored copy too): REQUESTS_CA_BUNDLE; curl and git: CURL_CA_BUNDLE, GIT_SSL_CAINFO.
    export SSL_CERT_FILE=$bundle PIP_CERT=$bundle REQUESTS_CA_BUNDLE=$bundle CURL_CA_BUNDLE=$bundle \
        GIT_SSL_CAINFO=$bundle
    printf '[build-cas] trusting %s extra CA certificate(s) for: %s\n' \
        "$(grep -c -e '-----BEGIN CERTIFICATE-----' -- "$secret")" "${1##*/}" >&2
    # Not exec: the trap removes the bundle when COMMAND ends.
    "$@"
else
    exec "$@"
fi
