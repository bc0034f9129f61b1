# Builds a static binary and ships it alone in an empty (scratch) image.
#
# BUILDER selects the build stage's base: the official golang image by
# default; offline, any image with the Go toolchain and this module's
# dependencies in its module cache (scripts/docker-builder-base.sh makes one
# from the host's Go, and scripts/compose-test.sh uses it). The build steps
# use the exec form, so the base needs no shell.
ARG BUILDER=golang:1.26
FROM ${BUILDER} AS build
WORKDIR /src
ENV CGO_ENABLED=0
COPY go.mod go.sum ./
# The patched MQTT server the go.mod replace directive points at (docs/third-party.md).
COPY third_party/ third_party/
RUN ["go", "mod", "download"]
COPY . .
RUN ["go", "build", "-trimpath", "-ldflags=-s -w", "-o", "/out/iothub-emulator", "./cmd/iothub-emulator"]

FROM scratch
COPY --from=build /out/iothub-emulator /iothub-emulator
# --in-memory writes the CA for clients to the temporary directory; WORKDIR
# creates it in the empty image.
WORKDIR /tmp
WORKDIR /
# In a container the emulator must listen on every interface to be reachable
# through published ports.
ENV IOTHUB_EMULATOR_BIND=0.0.0.0 \
    IOTHUB_EMULATOR_DATA_DIR=/data \
    TMPDIR=/tmp
VOLUME /data
EXPOSE 8883 443 1883 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/iothub-emulator", "healthcheck"]
ENTRYPOINT ["/iothub-emulator"]
