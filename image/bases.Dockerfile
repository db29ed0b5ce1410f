# The build bases of the image, made from Debian's own packages where no container registry can be reached
# (tools/base-images.sh builds these targets on top of a debootstrapped debian:bookworm-slim). They stand in
# for the official images the Dockerfile names by default, with the parts of them the Dockerfile relies on:
#
#   python  bookworm's python3 (3.11) with venv and ensurepip, ca-certificates
#   golang  Go GO_VERSION in /usr/local/go (fetched by bookworm-backports' Go through the Go module proxy),
#           GOPATH=/go, GOTOOLCHAIN=local, ca-certificates
#
# Build context: the project (the same .dockerignore as the Dockerfile). Needs BuildKit (RUN --mount).
ARG DEBIAN_IMAGE=debian:bookworm-slim

FROM ${DEBIAN_IMAGE} AS python
RUN --mount=type=bind,source=image,target=/tmp/image \
    /tmp/image/install-system-packages.sh python3 python3-venv ca-certificates
ENV LANG=C.UTF-8
CMD ["python3"]

FROM ${DEBIAN_IMAGE} AS golang
ARG GO_VERSION
# The Go module proxy the toolchain comes from (Go's default, proxy.golang.org, when not given).
ARG GOPROXY
RUN --mount=type=bind,source=image,target=/tmp/image --mount=type=secret,id=build-cas \
    /tmp/image/with-build-cas.sh /tmp/image/install-go.sh "$GO_VERSION" /usr/local/go
ENV GOPATH=/go \
    PATH=/go/bin:/usr/local/go/bin:$PATH \
    GOTOOLCHAIN=local
WORKDIR /go
