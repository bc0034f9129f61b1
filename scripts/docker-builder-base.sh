#!/usr/bin/env bash
# Makes the Docker image iothub-emulator-builder:local, a build stage base for
# the Dockerfile that needs no registry: the host's Go toolchain plus this
# module's dependencies (from the host's module cache), imported from a
# tarball with `docker import`. Use it with
#   docker build --build-arg BUILDER=iothub-emulator-builder:local .
#   IOTHUB_BUILDER=iothub-emulator-builder:local docker compose build
# Needs go and a running Docker engine; the module download (once) needs the
# Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-iothub-emulator-builder:local}

GOROOT=$(go env GOROOT)
GOVERSION=$(go env GOVERSION)
go mod download
MODCACHE=$(go env GOMODCACHE)

ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/iothub-builder.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT
mkdir -p "$ROOTFS/usr/local" "$ROOTFS/go/pkg/mod/cache" "$ROOTFS/tmp" "$ROOTFS/root" "$ROOTFS/etc"
chmod 1777 "$ROOTFS/tmp"
cp -a "$GOROOT" "$ROOTFS/usr/local/go"
# Only the download cache: zips and go.mod files, which `go` unpacks itself.
cp -a "$MODCACHE/cache/download" "$ROOTFS/go/pkg/mod/cache/download"
echo "root:x:0:0:root:/root:/sbin/nologin" >"$ROOTFS/etc/passwd"

echo "== importing $IMAGE ($GOVERSION, $(du -sh "$ROOTFS" | cut -f1))"
tar -C "$ROOTFS" -c . | docker import \
  -c 'ENV PATH=/usr/local/go/bin:/go/bin' \
  -c 'ENV GOPATH=/go' \
  -c 'ENV GOCACHE=/tmp/go-build' \
  -c 'ENV GOPROXY=off' \
  -c 'ENV GOFLAGS=-mod=mod' \
  -c 'ENV GOTOOLCHAIN=local' \
  -c 'ENV HOME=/root' \
  -c 'WORKDIR /src' \
  -m "Go $GOVERSION and the iothub-emulator module's dependencies, from the host" \
  - "$IMAGE" >/dev/null
echo "   $IMAGE ready"
