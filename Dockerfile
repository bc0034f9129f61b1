# Build a static binary, then ship it alone on a small base image.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/iothub-emulator ./cmd/iothub-emulator

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/iothub-emulator /iothub-emulator
# In a container the emulator must listen on every interface to be reachable
# through published ports.
ENV IOTHUB_EMULATOR_BIND=0.0.0.0 \
    IOTHUB_EMULATOR_DATA_DIR=/data
VOLUME /data
EXPOSE 8883 443 1883 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/iothub-emulator", "healthcheck"]
ENTRYPOINT ["/iothub-emulator"]
