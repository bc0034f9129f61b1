#!/usr/bin/env bash
# Runs Microsoft's "Schedule and broadcast jobs" tutorial, as ported in
# examples/schedule-jobs-python and examples/schedule-jobs-node, against a
# freshly built emulator on the SDKs' real ports, and checks the outcome.
#
#   e2e/sdk/tutorial.sh              all four runs below
#   e2e/sdk/tutorial.sh python       only the Python port
#   e2e/sdk/tutorial.sh node         only the Node port
#   e2e/sdk/tutorial.sh node-amqp    the Node port with its device over AMQP
#                                    (IOTHUB_DEVICE_TRANSPORT=amqp; the Python
#                                    device SDK has no AMQP)
#   e2e/sdk/tutorial.sh sim          the Python scheduleJobService against the
#                                    simulated myDeviceId of examples/seed.json,
#                                    no simDevice at all
#   e2e/sdk/tutorial.sh --prepare-only   only install what the ports need
#
# The emulator starts with --seed examples/seed.json (its simulated fleet).
# For each port: registers a device over REST, starts simDevice in the
# background (output to a file), runs scheduleJobService in the foreground,
# then checks
#   - the device's output: lockDoor received with {"lockTime":"10m"}, and the
#     desired patch with building 43 and floor 3;
#   - the service's output: both jobs completed (and it exited 0);
#   - the emulator's state over REST: the twin's desired building 43 / floor 3,
#     GET /jobs/v2/{id} completed with succeededCount 1 and failedCount 0 for
#     both jobs, and the method job's devices.jobs record with
#     outcome.deviceMethodResponse.status 200.
#
# With IOTHUB_EXTERNAL_EMULATOR=1 it uses an emulator already running on
# 127.0.0.1 (e.g. `docker compose up`) instead of starting one; IOTHUB_CA_FILE
# then names its CA (see use_running_emulator in lib.sh).
#
# Same needs as run.sh (root, ports 8883/443/1883/8080 free, go, node, python3).
# The Python port reuses e2e/sdk/python/.venv when its pins are a subset of
# e2e/sdk/python/requirements.txt (else it gets examples/.../.venv); the Node
# port has its own node_modules from its package-lock.json. Both are
# git-ignored and reused while the lock files are unchanged.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
READY_TIMEOUT=${READY_TIMEOUT:-30}       # seconds for simDevice to connect and subscribe
SERVICE_TIMEOUT=${SERVICE_TIMEOUT:-150}  # seconds for scheduleJobService (it polls for up to 2 min)
DEVICE_TIMEOUT=${DEVICE_TIMEOUT:-300}    # hard stop for a simDevice left running
# shellcheck source=lib.sh
. "$HERE/lib.sh"

PY_DIR="$ROOT/examples/schedule-jobs-python"
NODE_DIR="$ROOT/examples/schedule-jobs-node"

prepare_only=""
if [ "${1:-}" = "--prepare-only" ]; then prepare_only=1; shift; fi
ports=("$@")
[ ${#ports[@]} -gt 0 ] || ports=(python node node-amqp sim)
for p in "${ports[@]}"; do
  case "$p" in python|node|node-amqp|sim) ;; *) echo "tutorial.sh: unknown port '$p' (python, node, node-amqp or sim)" >&2; exit 2 ;; esac
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iothub-tutorial.XXXXXX")
LOG="$WORK/emulator.log"
DEVICE_PID=""
failed=()

stop_device() {
  if [ -n "$DEVICE_PID" ] && kill -0 "$DEVICE_PID" 2>/dev/null; then
    kill "$DEVICE_PID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$DEVICE_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$DEVICE_PID" 2>/dev/null || true
  fi
  [ -z "$DEVICE_PID" ] || wait "$DEVICE_PID" 2>/dev/null || true
  DEVICE_PID=""
}

on_exit() {
  local rc=$? f
  stop_device
  stop_emulator
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/*-device.log "$WORK"/*-service.log; do
      [ -f "$f" ] && print_file "$(basename "$f" .log) output" "$f" 300
    done
    print_file "emulator log" "$LOG"
    echo "(kept $WORK)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# --- installs (before the CA variables exist; see lib.sh) ---------------------

PY_VENV=""
prepare_python() {
  local line
  # Reuse the SDK suite's venv when every pin of the example is one of its pins.
  PY_VENV="$HERE/python/.venv"
  while IFS= read -r line; do
    line=${line%%#*}; line=${line//[[:space:]]/}
    [ -z "$line" ] && continue
    if ! grep -qxF "$line" <(sed 's/#.*//; s/[[:space:]]//g' "$HERE/python/requirements.txt"); then
      PY_VENV="$PY_DIR/.venv"
      break
    fi
  done <"$PY_DIR/requirements.txt"
  if [ "$PY_VENV" = "$HERE/python/.venv" ]; then
    prepare_venv "$HERE/python/requirements.txt" "$PY_VENV"
  else
    prepare_venv "$PY_DIR/requirements.txt" "$PY_VENV"
  fi
}
prepare_node() { prepare_node_dir "$NODE_DIR"; }
prepare_node-amqp() { prepare_node; }
prepare_sim() { [ -n "$PY_VENV" ] || prepare_python; }

for p in "${ports[@]}"; do "prepare_$p"; done
[ -z "$prepare_only" ] || exit 0

if [ -n "${IOTHUB_EXTERNAL_EMULATOR:-}" ]; then
  use_running_emulator "$WORK"
else
  start_emulator "$WORK" --seed "$ROOT/examples/seed.json"
fi

# --- one port ------------------------------------------------------------------

# run_port LANG DIR DEVICE_CMD... -- SERVICE_CMD...
run_port() {
  local lang="$1" dir="$2"; shift 2
  local device_cmd=() service_cmd=() device_id key cs dlog slog deadline rc=0
  while [ "$1" != "--" ]; do device_cmd+=("$1"); shift; done
  shift
  service_cmd=("$@")

  device_id="tutorial-$lang-$(date +%s)-$RANDOM"
  dlog="$WORK/$lang-device.log"
  slog="$WORK/$lang-service.log"
  echo "== $lang port: device $device_id"

  key=$("$PYTHON" "$HERE/tutorial_check.py" create-device "$device_id") || return 1
  cs="HostName=localhost;DeviceId=$device_id;SharedAccessKey=$key"

  # The device side trusts the CA through IOTHUB_CA_FILE only (as the README
  # tells users), so NODE_EXTRA_CA_CERTS and REQUESTS_CA_BUNDLE are removed.
  (cd "$dir" && exec env -u NODE_EXTRA_CA_CERTS -u REQUESTS_CA_BUNDLE PYTHONUNBUFFERED=1 \
    IOTHUB_DEVICE_CONNECTION_STRING="$cs" IOTHUB_CA_FILE="$IOTHUB_CA_FILE" \
    timeout "$DEVICE_TIMEOUT" "${device_cmd[@]}") >"$dlog" 2>&1 &
  DEVICE_PID=$!

  # Both device programs print this line once their method and desired-patch
  # handlers are set (Python: after the SUBACKs; Node: after the twin GET).
  deadline=$((SECONDS + READY_TIMEOUT))
  until grep -q "waiting for commands" "$dlog"; do
    if ! kill -0 "$DEVICE_PID" 2>/dev/null; then
      echo "tutorial.sh: $lang simDevice exited before it was ready" >&2
      return 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "tutorial.sh: $lang simDevice not ready within ${READY_TIMEOUT}s" >&2
      return 1
    fi
    sleep 0.2
  done

  echo "   simDevice ready; running scheduleJobService"
  (cd "$dir" && exec env DEVICE_ID="$device_id" timeout "$SERVICE_TIMEOUT" "${service_cmd[@]}") >"$slog" 2>&1 || rc=$?
  # Let the device print anything still in flight before it is stopped.
  sleep 0.5
  stop_device
  if [ "$rc" -ne 0 ]; then
    echo "tutorial.sh: $lang scheduleJobService exited with $rc" >&2
  fi

  "$PYTHON" "$HERE/tutorial_check.py" verify --lang "$lang" --device-id "$device_id" \
    --device-log "$dlog" --service-log "$slog" || rc=1
  return "$rc"
}

run_python() {
  run_port python "$PY_DIR" "$PY_VENV/bin/python" simDevice.py -- "$PY_VENV/bin/python" scheduleJobService.py
}

run_node() {
  run_port node "$NODE_DIR" node simDevice.js -- node scheduleJobService.js
}

# The same Node port with its device over AMQP (5671).
run_node-amqp() {
  IOTHUB_DEVICE_TRANSPORT=amqp run_port node "$NODE_DIR" node simDevice.js -- node scheduleJobService.js
}

# run_sim: the tutorial's service against a device the emulator simulates
# (examples/seed.json declares myDeviceId with lockDoor and echoDesired).
run_sim() {
  local slog="$WORK/sim-service.log" rc=0 deadline
  echo "== sim: scheduleJobService against the simulated myDeviceId"
  deadline=$((SECONDS + READY_TIMEOUT))
  until "$PYTHON" "$HERE/tutorial_check.py" connected myDeviceId; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "tutorial.sh: the simulated myDeviceId did not connect within ${READY_TIMEOUT}s" >&2
      return 1
    fi
    sleep 0.2
  done
  (cd "$PY_DIR" && exec env DEVICE_ID=myDeviceId timeout "$SERVICE_TIMEOUT" "$PY_VENV/bin/python" scheduleJobService.py) >"$slog" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "tutorial.sh: sim scheduleJobService exited with $rc" >&2
  fi
  "$PYTHON" "$HERE/tutorial_check.py" verify --lang python --simulated --device-id myDeviceId --service-log "$slog" || rc=1
  return "$rc"
}

for p in "${ports[@]}"; do
  if ! "run_$p"; then
    failed+=("$p")
    stop_device
  fi
  if ! emulator_alive; then
    echo "tutorial.sh: the emulator died during the $p port" >&2
    failed+=("emulator")
    break
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "tutorial.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "tutorial.sh: the schedule-jobs tutorial passed (${ports[*]})"
