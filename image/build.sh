#!/usr/bin/env bash
# Build the Container Driver image from the Dockerfile (what `make image` runs), on a laptop with Docker as on
# a machine of ours that reaches no container registry.
#
# Usage: image/build.sh [image|lock|bases]
#   image  (default) a Docker engine (tools/docker-engine.sh start), the bases, then
#          docker build -t $IMAGE_TAG . with BuildKit; prints the build time, the image size and its largest
#          layers
#   lock   rewrite image/requirements.txt: the project's dependencies resolved from the index in the Python
#          base (the image's own Python), as the image installs them
#   bases  print the two base images the build would use (PYTHON_IMAGE, GOLANG_IMAGE)
#
# What the build is given:
#   bases      the official images the Dockerfile names (python:3.11-slim-bookworm, golang:...) when they are
#              here or can be pulled; otherwise the ones tools/base-images.sh makes from Debian's packages,
#              as the PYTHON_IMAGE / GOLANG_IMAGE build args
#   build-cas  (BuildKit secret) the host's extra CA certificates (image/host-cas.sh), trusted by the steps
#              that download, kept in no layer
#   seed       the finished engine builds of the tool cache `make tools` filled, hard-linked into
#              .tools/image-seed/ (the Dockerfile's tools-cache stage takes it from the build context): the
#              engines stage links them instead of compiling for ~25 min
#
# Environment: IMAGE_TAG (default iac-driver-runner:local); IMAGE_BASES=auto|official|local (default auto);
# IAC_RUNNER_TOOLS_CACHE (the tool cache, default ${XDG_CACHE_HOME:-~/.cache}/iac-driver-runner/tools);
# GOPROXY (passed to the build when set); IMAGE_BUILD_FLAGS (more `docker build` flags, split on spaces,
# e.g. --no-cache).
set -euo pipefail

repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
tag=${IMAGE_TAG:-iac-driver-runner:local}
work=$repo/.tools/image-build
seed=$repo/.tools/image-seed
cache=${IAC_RUNNER_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/iac-driver-runner/tools}

log() { printf '[image] %s\n' "$*" >&2; }
fail() { printf '[image] FAILED: %s\n' "$*" >&2; exit 1; }
usage() { printf 'usage: %s [image|lock|bases]\n' "${0##*/}" >&2; exit 2; }
duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

dockerfile_default() { sed -n "s/^ARG $1=\\([^[:space:]]*\\)\$/\\1/p" "$repo/Dockerfile" | head -n 1; }

engine() {
    "$repo/tools/docker-engine.sh" start
    docker=$("$repo/tools/docker-engine.sh" client)
    export DOCKER_BUILDKIT=1
}

# available IMAGE: here already, or pulled now.
available() {
    "$docker" image inspect "$1" >/dev/null 2>&1 && return 0
    log "docker pull $1"
    "$docker" pull --quiet "$1" >/dev/null 2>"$work/pull.err" && return 0
    log "cannot pull $1: $(tail -n 1 "$work/pull.err")"
    return 1
}

# Sets python_image and golang_image.
choose_bases() {
    local official_python official_golang mode=${IMAGE_BASES:-auto}
    official_python=$(dockerfile_default PYTHON_IMAGE)
    official_golang=$(dockerfile_default GOLANG_IMAGE)
    [[ -n $official_python && -n $official_golang ]] || fail "the Dockerfile lacks ARG PYTHON_IMAGE= / GOLANG_IMAGE= defaults."
    case $mode in
    official | auto)
        if available "$official_python" && available "$official_golang"; then
            python_image=$official_python golang_image=$official_golang
            log "bases: the official $python_image and $golang_image"
            return 0
        fi
        [[ $mode == auto ]] || fail "IMAGE_BASES=official, but the official base images cannot be had (above)."
        ;;
    local) ;;
    *) fail "IMAGE_BASES=$mode: want auto, official or local." ;;
    esac
    log "bases: made from Debian's packages (tools/base-images.sh)"
    "$repo/tools/base-images.sh" all
    local names
    mapfile -t names < <("$repo/tools/base-images.sh" names)
    python_image=${names[1]} golang_image=${names[2]}
}

# The tool cache's finished builds, hard-linked (copied across file systems) into the build context.
stage_seed() {
    local build n=0
    rm -rf -- "$seed.new"
    mkdir -p -- "$seed.new"
    if [[ -d $cache ]]; then
        for build in "$cache"/*/; do
            [[ -f $build/.stamp ]] || continue
            cp -al -- "${build%/}" "$seed.new/" 2>/dev/null || cp -a -- "${build%/}" "$seed.new/"
            n=$((n + 1))
        done
    fi
    rm -rf -- "$seed"
    mv -T -- "$seed.new" "$seed"
    if ((n > 0)); then
        log "seed: $(cd "$seed" && printf '%s ' *)from $cache"
    else
        log "seed: none in $cache (make tools fills it): the engines are compiled inside the build (~25 min on 2 cores)"
    fi
}

build() {
    local t0 args=() secs size flags=()
    engine
    mkdir -p -- "$work"
    choose_bases
    "$repo/image/host-cas.sh" "$work/build-cas.pem"
    stage_seed
    args=(--build-arg "PYTHON_IMAGE=$python_image" --build-arg "GOLANG_IMAGE=$golang_image")
    [[ -z ${GOPROXY:-} ]] || args+=(--build-arg "GOPROXY=$GOPROXY")
    read -r -a flags <<<"${IMAGE_BUILD_FLAGS:-}"
    log "docker build -t $tag ($docker, BuildKit)"
    t0=$SECONDS
    "$docker" build --progress=plain "${args[@]}" --secret "id=build-cas,src=$work/build-cas.pem" \
        "${flags[@]}" --tag "$tag" "$repo" || fail "docker build failed (output above)."
    secs=$((SECONDS - t0))
    size=$("$docker" image inspect --format '{{.Size}}' "$tag")
    log "largest layers of $tag:"
    "$docker" history --format '{{.Size}}\t{{.CreatedBy}}' --no-trunc "$tag" |
        awk -F '\t' '$1 != "0B" { sub(/^\/bin\/sh -c (#\(nop\) )?/, "", $2); print $1 "\t" substr($2, 1, 110) }' |
        sort -h -r | head -n 8 | sed 's/^/    /' >&2
    log "built $tag in $(duration "$secs"): $(awk -v s="$size" 'BEGIN { printf "%.0f MB", s / 1e6 }')"
    printf 'build_seconds=%s\nsize_bytes=%s\n' "$secs" "$size" >"$work/last-build.env"
}

lock() {
    local out=$repo/image/requirements.txt
    engine
    mkdir -p -- "$work"
    choose_bases
    "$repo/image/host-cas.sh" "$work/build-cas.pem"
    log "resolving the dependencies of iac-driver-runner[pulumi] in $python_image"
    {
        printf '# The image'"'"'s Python packages, exactly (image/install-runner.sh --locked): iac-driver-runner[pulumi]\n'
        printf '# resolved in %s. Rewritten by: image/build.sh lock\n' "$python_image"
        "$docker" run --rm -v "$repo:/src:ro" -v "$work/build-cas.pem:/run/secrets/build-cas:ro" \
            "$python_image" /src/image/install-runner.sh --lock /src pulumi
    } >"$out.new" || { rm -f -- "$out.new"; fail "resolving the dependencies failed (output above)."; }
    mv -f -- "$out.new" "$out"
    log "wrote $out ($(grep -c '==' "$out") packages)"
}

[[ $# -le 1 ]] || usage
case ${1:-image} in
image) build ;;
lock) lock ;;
bases) engine && mkdir -p -- "$work" && choose_bases && printf '%s\n' "$python_image" "$golang_image" ;;
*) usage ;;
esac
