#!/usr/bin/env bash
# Install iac-driver-runner (with its extras) into a virtualenv, in two steps so that a code change rebuilds
# only the second one:
#
# Usage: image/install-runner.sh --lock SOURCE_DIR [EXTRAS]
#          resolve the project's dependencies from the index into a temporary virtualenv and print them as
#          `name==version` lines (image/build.sh lock writes image/requirements.txt with it)
#        image/install-runner.sh --locked LOCK VENV_DIR
#          a fresh virtualenv with exactly the packages of LOCK (image/requirements.txt, written by
#          image/build.sh lock), all as wheels; VENV_DIR must not exist yet
#        image/install-runner.sh SOURCE_DIR VENV_DIR [EXTRAS]
#          the project itself; SOURCE_DIR (pyproject.toml, README.md and the package) is not written to.
#          Into a new VENV_DIR: with its dependencies from the index. Into a VENV_DIR made with --locked: the
#          project must need nothing beyond LOCK (otherwise it fails: the lock is stale), and what the runner
#          does not use at run time is removed (see trim).
#   EXTRAS  comma-separated extras of the project (default: pulumi, the Automation API pinned to the Pulumi
#           CLI of tools/versions.env)
#
# Environment: PYTHON (default python3; Python 3.11, Debian bookworm's, which the image's final stage runs), and
# pip's own variables (PIP_INDEX_URL, PIP_NO_CACHE_DIR, ...). Downloads trust the build's
# `build-cas` secret (image/with-build-cas.sh). A regular (not editable) install: the venv does not refer back
# to SOURCE_DIR. No compiler is needed: every package comes as a wheel (--only-binary :all:).
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
usage() {
    printf 'usage: %s --lock SOURCE_DIR [EXTRAS] | --locked LOCK VENV_DIR | SOURCE_DIR VENV_DIR [EXTRAS]\n' \
        "${0##*/}" >&2
    exit 2
}
log() { printf '[image-runner] %s\n' "$*" >&2; }
fail() { printf '[image-runner] FAILED: %s\n' "$*" >&2; exit 1; }

python=${PYTHON:-python3}
pip_install=(-m pip install --quiet --disable-pip-version-check --no-input --only-binary :all:)
locked_marker=.iac-runner-locked.txt # in VENV_DIR between the two steps
stage="" scratch=""
trap 'rm -rf -- ${stage:+"$stage"} ${scratch:+"$scratch"}' EXIT

new_venv() {
    [[ ! -e $1 ]] || fail "$1 already exists: give a new folder."
    "$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' ||
        fail "$python is not Python 3.11 ($("$python" --version 2>&1)); set PYTHON."
    log "virtualenv $1 ($("$python" --version 2>&1))"
    "$python" -m venv -- "$1"
}

# The packages of a venv as `name==version` lines, sorted, without the project and pip's own tools.
frozen() {
    "$1/bin/python" -m pip freeze --disable-pip-version-check --exclude iac-driver-runner |
        LC_ALL=C sort -f
}

install_locked() {
    local lock=$1 venv=$2
    [[ -f $lock ]] || fail "$lock does not exist (image/build.sh lock writes it)."
    new_venv "$venv"
    log "pip install -r $lock ($(grep -c '==' "$lock") packages, no resolution)"
    "$here/with-build-cas.sh" "$venv/bin/python" "${pip_install[@]}" --no-deps --requirement "$lock"
    grep -E '^[A-Za-z0-9]' "$lock" | LC_ALL=C sort -f >"$venv/$locked_marker"
}

# What the runner never uses at run time: the build tools of its own venv (pip stays: Pulumi's Python language
# host runs `python -m pip list` to find a program's plugins); debugpy, which the Pulumi SDK requires only so that
# a language host can attach a debugger (`pulumi up --attach-debugger`, never done by a Job; nothing imports it
# otherwise: ~25 MB); the test suites and benchmarks that packages ship inside themselves (`tests` and
# `benchmarks` folders below a package's top, with their bytecode: ~47 MB, most of it sympy's and networkx's,
# which cfn-lint brings); type stubs (`.pyi`, read by type checkers only); and the symbol tables of the compiled
# extensions (`strip --strip-unneeded` keeps what the dynamic loader needs: ~4.5 MB, most of it PyYAML's and
# regex's, whose wheels ship them unstripped). Without `strip` (binutils) on PATH the extensions stay as they are.
trim() {
    local venv=$1 before site
    before=$(du -sm -- "$venv" | cut -f 1)
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    "$venv/bin/python" -m pip uninstall --quiet --yes setuptools wheel debugpy 2>/dev/null || true
    find "$site" -mindepth 2 -type d \( -name tests -o -name benchmarks \) -prune -exec rm -rf -- {} +
    find "$site" -name '*.pyi' -type f -delete
    if command -v strip >/dev/null; then
        find "$site" -name '*.so' -type f -exec strip --strip-unneeded -- {} +
    else
        log "no strip on PATH (binutils): the compiled extensions keep their symbol tables"
    fi
    log "trimmed the venv: ${before} MB -> $(du -sm -- "$venv" | cut -f 1) MB"
}

install_project() {
    local src=$1 venv=$2 extras=$3 spec
    [[ -f $src/pyproject.toml ]] || fail "$src has no pyproject.toml: give the project's folder."
    [[ -e $venv ]] || new_venv "$venv"
    # Build from a private copy: pip builds in the source tree (build/, *.egg-info), which must stay clean.
    stage=$(mktemp -d)
    cp -- "$src/pyproject.toml" "$src/README.md" "$stage/"
    # The Python packages at the top of the project (pyproject.toml picks which of them it ships).
    for pkg in "$src"/*/__init__.py; do
        if [[ -f $pkg ]]; then cp -R -- "${pkg%/__init__.py}" "$stage/"; fi
    done
    find "$stage" \( -name __pycache__ -o -name '*.egg-info' -o -name build \) -prune -exec rm -rf -- {} +
    spec="$stage${extras:+[$extras]}"
    log "pip install iac-driver-runner${extras:+[$extras]}"
    "$here/with-build-cas.sh" "$venv/bin/python" "${pip_install[@]}" "$spec"

    if [[ -f $venv/$locked_marker ]]; then
        if ! diff -u "$venv/$locked_marker" <(frozen "$venv") >"$stage/lock.diff"; then
            cat -- "$stage/lock.diff" >&2
            fail "the project needs packages image/requirements.txt does not pin (diff above: - locked, + installed): run image/build.sh lock and commit the result."
        fi
        rm -f -- "$venv/$locked_marker"
        trim "$venv"
    fi
    log "check: $venv/bin/iac-runner --help"
    "$venv/bin/iac-runner" --help >/dev/null
    log "done: $(du -sh -- "$venv" | cut -f 1) in $venv"
}

case ${1:-} in
--lock)
    [[ ($# -eq 2 || $# -eq 3) && -n $2 ]] || usage
    scratch=$(mktemp -d)
    install_project "$2" "$scratch/venv" "${3-pulumi}"
    frozen "$scratch/venv"
    ;;
--locked)
    [[ $# -eq 3 && -n $2 && -n $3 ]] || usage
    install_locked "$2" "$3"
    ;;
'' | -*) usage ;;
*)
    [[ ($# -eq 2 || $# -eq 3) && -n $2 ]] || usage
    install_project "$1" "$2" "${3-pulumi}"
    ;;
esac
