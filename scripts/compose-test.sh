#!/usr/bin/env bash
# Proves `docker compose up` works, with a real Docker engine and no registry:
#   1. installs Docker (Debian's docker.io and docker-compose) when missing;
#   2. in a network namespace of its own (so it neither needs nor disturbs the
#      host's ports 8883/443/1883/8080), starts a private dockerd;
#   3. builds the images from local parts only: a builder base imported from
#      the host's Go toolchain (scripts/docker-builder-base.sh) and a scratch
#      runtime image;
#   4. docker compose up -d, waits for the container's health check, checks
#      the exported CA (./certs/ca.pem) and the seeded devices;
#   5. runs the Python port of the "Schedule and broadcast jobs" tutorial from
#      the host against the container, and a client container against the
#      service name (https://iothub, verified against the exported CA);
#   6. docker compose down and up again, and checks that devices, jobs and the
#      CA survived in the volume;
#   7. tears everything down (containers, volume, images, dockerd).
# Needs root, apt (the first time), go, python3, curl and unshare/ip.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-90}
PROJECT=iothubcompose
STATE=/var/lib/iothub-compose-test     # the private dockerd's images and volumes
RUN=/run/iothub-compose-test           # its socket, pid file and exec root

log() { echo "== compose-test: $*"; }
die() { echo "compose-test: $*" >&2; exit 1; }

if [ -z "${IOTHUB_COMPOSE_INNER:-}" ]; then
  [ "$(id -u)" -eq 0 ] || die "needs root (it installs and runs a Docker engine)"
  if ! command -v dockerd >/dev/null || ! command -v docker-compose >/dev/null; then
    log "installing docker.io and docker-compose"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io docker-compose iptables >/dev/null
  fi
  command -v unshare >/dev/null && command -v ip >/dev/null || die "needs unshare and ip"
  # What needs the network happens here, before the namespace: Go modules for
  # the builder base, the tutorial's Python packages.
  go mod download
  HERE="$ROOT/e2e/sdk"
  # shellcheck source=../e2e/sdk/lib.sh
  . "$ROOT/e2e/sdk/lib.sh"
  prepare_venv "$HERE/python/requirements.txt" "$HERE/python/.venv"
  # The host-side client gets a path of its own: run.sh may be building
  # bin/iothub-emulator at the same time.
  IOTHUB_COMPOSE_CLI="$(mktemp -d "${TMPDIR:-/tmp}/iothub-compose-cli.XXXXXX")/iothub-emulator"
  export IOTHUB_COMPOSE_CLI
  log "building the host-side client ($IOTHUB_COMPOSE_CLI)"
  go build -o "$IOTHUB_COMPOSE_CLI" ./cmd/iothub-emulator
  exec unshare --net env IOTHUB_COMPOSE_INNER=1 bash "$0" "$@"
fi

# --- inside the namespace --------------------------------------------------------
ip link set lo up
export DOCKER_HOST="unix://$RUN/docker.sock"
mkdir -p "$RUN" "$STATE"
DOCKERD_PID=""
if docker compose version >/dev/null 2>&1; then DC=(docker compose); else DC=(docker-compose); fi
DC+=(-p "$PROJECT" -f "$ROOT/docker-compose.yml")
export IOTHUB_BUILDER=iothub-emulator-builder:local
CLI="$IOTHUB_COMPOSE_CLI"

cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ] && [ -n "$DOCKERD_PID" ]; then
    "${DC[@]}" ps || true
    "${DC[@]}" logs --no-color --tail 200 || true
    echo "---- dockerd log (tail)"; tail -n 50 "$RUN/dockerd.log" || true
  fi
  if [ -n "$DOCKERD_PID" ]; then
    "${DC[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
    kill "$DOCKERD_PID" 2>/dev/null || true
    for _ in $(seq 300); do kill -0 "$DOCKERD_PID" 2>/dev/null || break; sleep 0.1; done
  fi
  # The private engine's images and volumes go with it (faster than pruning).
  if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then rm -rf "$STATE" "$RUN"; fi
  rm -rf "$ROOT/certs" "$(dirname "$CLI")"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "starting a private dockerd"
dockerd --host "$DOCKER_HOST" --data-root "$STATE" --exec-root "$RUN/exec" \
  --pidfile "$RUN/dockerd.pid" >"$RUN/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 150); do docker info >/dev/null 2>&1 && break; kill -0 "$DOCKERD_PID" || die "dockerd exited: $(tail -5 "$RUN/dockerd.log")"; sleep 0.2; done
docker info >/dev/null || die "dockerd did not come up"

log "builder base from the host's Go"
"$ROOT/scripts/docker-builder-base.sh" "$IOTHUB_BUILDER"
log "docker compose build ($("${DC[@]}" version --short 2>/dev/null || true))"
start=$SECONDS
"${DC[@]}" build -q iothub
log "built in $((SECONDS - start)) s: $(docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' iothub-emulator:local)"

rm -rf "$ROOT/certs"
wait_healthy() {
  local id deadline=$((SECONDS + HEALTH_TIMEOUT)) status=""
  id=$("${DC[@]}" ps -q iothub)
  [ -n "$id" ] || die "no iothub container"
  while [ "$SECONDS" -lt "$deadline" ]; do
    status=$(docker inspect -f '{{.State.Health.Status}}' "$id")
    [ "$status" = healthy ] && return 0
    sleep 1
  done
  die "the container is $status after ${HEALTH_TIMEOUT}s"
}

log "docker compose up -d"
"${DC[@]}" up -d
wait_healthy
[ -s "$ROOT/certs/ca.pem" ] || die "the CA was not exported to ./certs/ca.pem"
CA_SUM=$(sha256sum <"$ROOT/certs/ca.pem")
export IOTHUB_EMULATOR_CA="$ROOT/certs/ca.pem"
"$CLI" healthcheck --url https://localhost --ca "$IOTHUB_EMULATOR_CA" || die "HTTPS on 127.0.0.1:443 is not verified by ./certs/ca.pem"
"$CLI" token --url https://localhost --device thermostat1 --connection-string | grep -q "DeviceId=thermostat1;SharedAccessKey=AAECAwQF" ||
  die "the seeded device thermostat1 is missing"

log "the Python tutorial port from the host against the container"
IOTHUB_EXTERNAL_EMULATOR=1 IOTHUB_CA_FILE="$IOTHUB_EMULATOR_CA" "$ROOT/e2e/sdk/tutorial.sh" python

log "a client container against the service name"
docker run --rm --network "${PROJECT}_default" -v "$ROOT/certs:/certs:ro" iothub-emulator:local \
  healthcheck --url https://iothub --ca /certs/ca.pem || die "https://iothub does not verify in a client container"
docker run --rm --network "${PROJECT}_default" -v "$ROOT/certs:/certs:ro" iothub-emulator:local \
  token --url https://iothub:443 --ca /certs/ca.pem --hostname iothub --device gateway1 --module filter --connection-string |
  grep -q "^HostName=iothub;DeviceId=gateway1;ModuleId=filter;SharedAccessKey=" || die "a client container could not read a module's key over https://iothub"

snapshot() {
  "$CLI" jobs list | awk 'NR > 1 {print $1, $2, $3}' | sort
  curl -sf -H "Authorization: $("$CLI" token)" "http://127.0.0.1:8080/devices?top=1000&api-version=2021-04-12" |
    python3 -c 'import json,sys; print(sorted(d["deviceId"] for d in json.load(sys.stdin)))'
}
BEFORE=$(snapshot)
grep -q "completed" <<<"$BEFORE" || die "no completed job before the restart: $BEFORE"

log "docker compose down, then up again: the volume keeps the state"
"${DC[@]}" down
"${DC[@]}" up -d
wait_healthy
AFTER=$(snapshot)
[ "$BEFORE" = "$AFTER" ] || die "state changed across the restart:
before: $BEFORE
after:  $AFTER"
[ "$CA_SUM" = "$(sha256sum <"$ROOT/certs/ca.pem")" ] || die "the CA changed across the restart"
"$CLI" healthcheck --url https://localhost --ca "$IOTHUB_EMULATOR_CA" || die "HTTPS after the restart"

log "passed: build, up, health, tutorial, service-name client, restart with state kept"
