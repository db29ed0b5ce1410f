# The image a Container Driver job runs: `iac-runner container` with OpenTofu, the Pulumi CLI (+ its Python
# language host and dynamic-provider plugin) and the CloudFormation backend.
#
#   make image                  (image/build.sh: bases, CA secret, tool-cache seed, timing; tag iac-driver-runner:local)
#   docker build -t iac-driver-runner .          (plain: official bases, engines compiled inside, ~25 min)
#
# Needs BuildKit (Docker >= 23's default builder; DOCKER_BUILDKIT=1 on 20.10) or buildah/podman, for RUN --mount.
# Only Dockerfile 1.2 syntax (no `# syntax=` line): it builds with the frontend built into Docker 20.10, as
# Debian's docker.io has it, where no registry can be reached to fetch a newer one.
#
# Every install step is a script under image/; tests/integration/test_image.py runs the same scripts outside
# Docker. Build tools (Go) exist only in the `engines` stage; the final stage has none.

# The bases: the official images by default. Where no registry answers, image/build.sh passes the ones
# tools/base-images.sh makes from Debian's packages: same Debian release, Python 3.11 and Go version, under
# names of our own (iac-driver-runner-base/...) so that they are never taken for the official ones.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG GOLANG_IMAGE=golang:1.26.8-bookworm

# ---- tools-cache: engine builds a `make tools` already made (a tool cache's <name>-<version>/ folders), to
# seed the engines stage. image/build.sh stages them in .tools/image-seed/; the pattern matches nothing when
# that folder is absent, and the stage is then empty. With buildx, `--build-context tools-cache=DIR` gives a
# tool cache folder directly.
FROM scratch AS tools-cache
COPY .tool[s]/image-see[d]/ /

# ---- engines: the project's own tools step, same pins as `make tools` (tools/versions.env).
# Go >= 1.26.6 is what OpenTofu 1.12.6's go.mod asks for; GOTOOLCHAIN=local in this image, so the tag matters.
FROM ${GOLANG_IMAGE} AS engines
# The Go module proxy to build from (the image's default, proxy.golang.org, when not given).
ARG GOPROXY
WORKDIR /src
COPY tools/ tools/
COPY image/install-engines.sh image/with-build-cas.sh image/
# The Go caches and the tool cache persist between builds (a rebuild relinks in seconds); the layer keeps only
# /opt/iac-runner: bin/, providers/, tofu.tfrc, build-info/. The host's extra CAs (`build-cas` secret) are
# trusted by the Go downloads and stay out of the layer.
RUN --mount=type=cache,target=/root/.cache --mount=type=cache,target=/go/pkg/mod \
    --mount=type=bind,from=tools-cache,target=/tmp/tools-seed --mount=type=secret,id=build-cas \
    image/install-engines.sh /opt/iac-runner /tmp/tools-seed

# ---- runner: the project with its `pulumi` extra (the Automation API, pinned to the CLI above) in a venv.
# First exactly the locked dependencies (a layer that a code change does not touch), then the project.
FROM ${PYTHON_IMAGE} AS runner
# binutils' strip, for the compiled extensions (image/install-runner.sh trims the venv); this stage only.
RUN --mount=type=bind,source=image/install-system-packages.sh,target=/tmp/image/install-system-packages.sh \
    /tmp/image/install-system-packages.sh binutils
WORKDIR /src
COPY image/requirements.txt image/install-runner.sh image/with-build-cas.sh image/
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=build-cas \
    image/install-runner.sh --locked image/requirements.txt /opt/iac-runner/venv
COPY pyproject.toml README.md ./
COPY iac_runner/ iac_runner/
COPY backends/ backends/
RUN --mount=type=cache,target=/root/.cache/pip --mount=type=secret,id=build-cas \
    image/install-runner.sh /src /opt/iac-runner/venv pulumi

# ---- the image: slim Python 3.11 (Debian bookworm's, the release the bases share), git, ssh, no build tools.
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="iac-driver-runner" \
      org.opencontainers.image.description="Runs OpenTofu, Pulumi and CloudFormation stacks as a Container Driver job" \
      org.opencontainers.image.licenses="Apache-2.0"
# The scripts are bound one by one: a change elsewhere in image/ does not rebuild these layers.
RUN --mount=type=bind,source=image/install-system-packages.sh,target=/tmp/image/install-system-packages.sh \
    --mount=type=bind,source=image/dpkg-excludes.cfg,target=/tmp/image/dpkg-excludes.cfg \
    /tmp/image/install-system-packages.sh --dpkg-config /tmp/image/dpkg-excludes.cfg \
        git openssh-client ca-certificates
COPY --from=engines /opt/iac-runner/ /opt/iac-runner/
COPY --from=runner /opt/iac-runner/venv/ /opt/iac-runner/venv/
RUN --mount=type=bind,source=image/create-user.sh,target=/tmp/image/create-user.sh \
    /tmp/image/create-user.sh / 1000 runner /home/runner
# The runner finds the engines on PATH and tofu's offline provider mirror through TF_CLI_CONFIG_FILE. It writes
# only under HOME (tofu's plugin cache, Pulumi's home, virtualenvs) and /tmp (its container-mode work dirs).
ENV PATH=/opt/iac-runner/venv/bin:/opt/iac-runner/bin:$PATH \
    HOME=/home/runner \
    TF_CLI_CONFIG_FILE=/opt/iac-runner/tofu.tfrc \
    TF_PLUGIN_CACHE_DIR=/home/runner/.cache/iac-driver-runner/tofu-plugin-cache \
    PULUMI_HOME=/home/runner/.pulumi \
    PULUMI_SKIP_UPDATE_CHECK=true \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /home/runner
USER 1000
ENTRYPOINT ["iac-runner", "container"]
