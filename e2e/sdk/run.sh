#!/usr/bin/env bash
# Runs the official Azure IoT SDK suites (Node and Python) against a freshly
# built emulator on the SDKs' real ports.
#
#   e2e/sdk/run.sh              both suites
#   e2e/sdk/run.sh node         only the Node suite (azure-iot-device, azure-iothub)
#   e2e/sdk/run.sh python       only the Python suite (azure-iot-device, azure-iot-hub)
#
# Needs go, node (20+) with npm, python3 (with venv), curl, and the npm and PyPI
# registries the first time (node_modules and the venv are reused while the
# lock files are unchanged). Binds 8883, 443, 1883 and 8080 on 127.0.0.1, so it
# must run as root (or with CAP_NET_BIND_SERVICE) and with those ports free:
# the Node service SDK and the Python device SDK cannot use other ports.
#
# The emulator's log goes to a file, printed when anything fails.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PYTHON=${PYTHON:-python3}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-30}   # seconds to wait for the emulator to be ready
SUITE_TIMEOUT=${SUITE_TIMEOUT:-300}    # seconds per suite, a hard stop against hangs
INSTALL_TIMEOUT=${INSTALL_TIMEOUT:-600}

suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(node python)
for s in "${suites[@]}"; do
  case "$s" in node|python) ;; *) echo "run.sh: unknown suite '$s' (node or python)" >&2; exit 2 ;; esac
done

for tool in go curl sha256sum timeout; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iothub-sdk-e2e.XXXXXX")
LOG="$WORK/emulator.log"
EMU_PID=""
failed=()

stop_emulator() {
  if [ -n "$EMU_PID" ] && kill -0 "$EMU_PID" 2>/dev/null; then
    kill "$EMU_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$EMU_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
  fi
  EMU_PID=""
}

on_exit() {
  local rc=$?
  stop_emulator
  if [ "$rc" -ne 0 ] && [ -f "$LOG" ]; then
    echo
    echo "==================== emulator log ($LOG, last 2000 lines) ===================="
    tail -n 2000 "$LOG" || true
    echo "==================== end of emulator log ===================="
    echo "(kept $WORK)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# Local traffic must not go through a proxy that CI may have configured.
export NO_PROXY="localhost,127.0.0.1${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

# Installs come first, before the emulator runs and before the CA variables
# are exported: pip honours REQUESTS_CA_BUNDLE too, and would then trust only
# the emulator's CA.
prepare_node() {
  local dir="$HERE/node" want have=""
  command -v node >/dev/null && command -v npm >/dev/null || { echo "run.sh: node and npm are required" >&2; exit 2; }
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [ -f "$dir/node_modules/.e2e-lock.sha256" ] && have=$(cat "$dir/node_modules/.e2e-lock.sha256")
  if [ "$want" != "$have" ]; then
    echo "== npm ci (node_modules missing or stale)"
    (cd "$dir" && timeout "$INSTALL_TIMEOUT" npm ci --no-audit --no-fund)
    echo "$want" >"$dir/node_modules/.e2e-lock.sha256"
  fi
}

prepare_python() {
  local dir="$HERE/python" venv="$HERE/python/.venv" want have=""
  command -v "$PYTHON" >/dev/null || { echo "run.sh: $PYTHON is required" >&2; exit 2; }
  want=$( (sha256sum "$dir/requirements.txt"; "$PYTHON" --version) | sha256sum | cut -d' ' -f1)
  [ -f "$venv/.e2e-requirements.sha256" ] && have=$(cat "$venv/.e2e-requirements.sha256")
  if [ "$want" != "$have" ]; then
    echo "== creating $venv and installing requirements.txt"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    # uamqp only from a wheel: a source build needs a C toolchain and CMake and is slow.
    env -u REQUESTS_CA_BUNDLE -u SSL_CERT_FILE timeout "$INSTALL_TIMEOUT" "$venv/bin/pip" install \
      --disable-pip-version-check -q --only-binary=uamqp -r "$dir/requirements.txt"
    echo "$want" >"$venv/.e2e-requirements.sha256"
  fi
}

for s in "${suites[@]}"; do "prepare_$s"; done

echo "== building the emulator"
(cd "$ROOT" && go build -o bin/iothub-emulator ./cmd/iothub-emulator)

echo "== starting the emulator on 8883 (MQTT/TLS), 443 (HTTPS + WSS), 1883, 8080"
"$ROOT/bin/iothub-emulator" --in-memory --data-dir "$WORK/data" --bind 127.0.0.1 --hostname localhost \
  --mqtts-port 8883 --https-port 443 --mqtt-port 1883 --http-port 8080 >"$LOG" 2>&1 &
EMU_PID=$!

deadline=$((SECONDS + HEALTH_TIMEOUT))
until curl -sf --max-time 2 -o /dev/null http://127.0.0.1:8080/_emulator/health; do
  if ! kill -0 "$EMU_PID" 2>/dev/null; then
    echo "run.sh: the emulator exited during start-up (are 443/8883/1883/8080 free, and are we root?)" >&2
    exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "run.sh: the emulator was not healthy within ${HEALTH_TIMEOUT}s" >&2
    exit 1
  fi
  sleep 0.2
done

# The SDKs cannot follow a listener that fell back to another port.
for addr in 127.0.0.1:8883 127.0.0.1:443; do
  grep -q " $addr " "$LOG" || { echo "run.sh: the emulator is not listening on $addr (see its banner)" >&2; exit 1; }
done

curl -sf --max-time 5 -o "$WORK/ca.pem" http://127.0.0.1:8080/_emulator/ca.pem
CS=$(grep -m1 -o 'HostName=[^[:space:]]*SharedAccessKeyName=iothubowner;SharedAccessKey=[^[:space:]]*' "$LOG" || true)
[ -n "$CS" ] || { echo "run.sh: no iothubowner connection string in the emulator's banner" >&2; exit 1; }

export IOTHUB_CONNECTION_STRING="$CS"
export IOTHUB_CA_FILE="$WORK/ca.pem"
export NODE_EXTRA_CA_CERTS="$WORK/ca.pem"   # the only way the Node service SDK trusts a CA
export REQUESTS_CA_BUNDLE="$WORK/ca.pem"    # azure-iot-hub (requests/msrest)
echo "   ready: $CS"

run_node() {
  local dir="$HERE/node"
  echo "== node --test ($(node --version))"
  (cd "$dir" && timeout "$SUITE_TIMEOUT" node --test --test-concurrency=1 --test-timeout=120000)
}

run_python() {
  local dir="$HERE/python" venv="$HERE/python/.venv"
  echo "== pytest ($("$venv/bin/python" --version))"
  (cd "$dir" && timeout "$SUITE_TIMEOUT" "$venv/bin/python" -m pytest)
}

for s in "${suites[@]}"; do
  if ! "run_$s"; then
    failed+=("$s")
  fi
  if ! kill -0 "$EMU_PID" 2>/dev/null; then
    echo "run.sh: the emulator died during the $s suite" >&2
    failed+=("emulator")
    break
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "run.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "run.sh: all SDK suites passed (${suites[*]})"
