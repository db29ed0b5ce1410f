#!/usr/bin/env bash
# Install iac-driver-runner (with its extras) into a fresh virtualenv.
#
# Usage: image/install-runner.sh SOURCE_DIR VENV_DIR [EXTRAS]
#   SOURCE_DIR  the project (pyproject.toml, README.md, iac_runner/, backends/); it is not written to
#   VENV_DIR    the virtualenv to create (the Dockerfile: /opt/iac-runner/venv); must not exist yet
#   EXTRAS      comma-separated extras of the project (default: pulumi, the Automation API pinned to
#               the Pulumi CLI of tools/versions.env)
#
# Environment: PYTHON (default python3; Python 3.11: pulumi 3.79's grpcio pin has no wheels for
# later versions), and pip's own variables (PIP_INDEX_URL, PIP_NO_CACHE_DIR, ...).
# A regular (not editable) install: the venv does not refer back to SOURCE_DIR. No compiler is
# needed: every dependency comes as a wheel (--only-binary :all:).
set -euo pipefail

[[ $# -ge 2 && $# -le 3 && -n $1 && -n $2 ]] || {
    printf 'usage: %s SOURCE_DIR VENV_DIR [EXTRAS]\n' "${0##*/}" >&2
    exit 2
}
src=$1 venv=$2 extras=${3-pulumi} python=${PYTHON:-python3}

log() { printf '[image-runner] %s\n' "$*"; }
fail() { printf '[image-runner] FAILED: %s\n' "$*" >&2; exit 1; }

[[ -f $src/pyproject.toml ]] || fail "$src has no pyproject.toml: give the project's folder."
[[ ! -e $venv ]] || fail "$venv already exists: give a new folder."
"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' ||
    fail "$python is not Python 3.11 ($("$python" --version 2>&1)); set PYTHON."

# Build from a private copy: pip builds in the source tree (build/, *.egg-info), which must stay clean.
stage=$(mktemp -d)
trap 'rm -rf -- "$stage"' EXIT
cp -R -- "$src/pyproject.toml" "$src/README.md" "$src/iac_runner" "$src/backends" "$stage/"
find "$stage" \( -name __pycache__ -o -name '*.egg-info' \) -prune -exec rm -rf -- {} +

log "virtualenv $venv ($("$python" --version 2>&1))"
"$python" -m venv -- "$venv"
spec="$stage${extras:+[$extras]}"
log "pip install iac-driver-runner${extras:+[$extras]}"
# setuptools (the build backend) and the dependencies only as wheels: no compiler involved.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --only-binary :all: "$spec"

log "check: $venv/bin/iac-runner --help"
"$venv/bin/iac-runner" --help >/dev/null
log "done: $(du -sh -- "$venv" | cut -f 1) in $venv"
