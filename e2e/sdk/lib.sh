# Shared by e2e/sdk/run.sh and e2e/sdk/tutorial.sh (sourced, not run).
#
# Provides: installing pinned npm and pip packages (skipped while their lock
# files are unchanged), building and starting the emulator on the SDKs' real
# ports (8883, 443, plus 1883 and 8080), and stopping it. The caller sets
# HERE (this directory) and ROOT (the repository) and owns the EXIT trap.

PYTHON=${PYTHON:-python3}
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-30}   # seconds to wait for the emulator to be ready
INSTALL_TIMEOUT=${INSTALL_TIMEOUT:-600}
EMU_PID=""

for tool in go curl sha256sum timeout; do
  command -v "$tool" >/dev/null || { echo "$(basename "$0"): $tool is required" >&2; exit 2; }
done

# Local traffic must not go through a proxy that CI may have configured.
export NO_PROXY="localhost,127.0.0.1${NO_PROXY:+,$NO_PROXY}"
export no_proxy="$NO_PROXY"

# Installs come first, before the emulator runs and before the CA variables
# are exported: pip honours REQUESTS_CA_BUNDLE too, and would then trust only
# the emulator's CA.

# with_install_lock PATH CMD...: runs CMD holding a lock named after PATH, so
# that scripts running side by side (run.sh, compose-test.sh) never install
# into the same directory at once.
with_install_lock() {
  local lock
  lock="${TMPDIR:-/tmp}/iothub-install-$(printf '%s' "$1" | sha256sum | cut -c1-16).lock"
  shift
  ( flock 9; "$@" ) 9>"$lock"
}

# prepare_node_dir DIR: npm ci in DIR unless node_modules matches package-lock.json.
prepare_node_dir() { with_install_lock "$1" prepare_node_dir_unlocked "$@"; }
prepare_node_dir_unlocked() {
  local dir="$1" want have=""
  command -v node >/dev/null && command -v npm >/dev/null || { echo "$(basename "$0"): node and npm are required" >&2; exit 2; }
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  [ -f "$dir/node_modules/.e2e-lock.sha256" ] && have=$(cat "$dir/node_modules/.e2e-lock.sha256")
  if [ "$want" != "$have" ]; then
    echo "== npm ci in $dir (node_modules missing or stale)"
    (cd "$dir" && env -u NODE_EXTRA_CA_CERTS timeout "$INSTALL_TIMEOUT" npm ci --no-audit --no-fund)
    echo "$want" >"$dir/node_modules/.e2e-lock.sha256"
  fi
}

# prepare_venv REQUIREMENTS VENV: a virtualenv at VENV with REQUIREMENTS
# installed, unless it already holds exactly those (and this Python).
prepare_venv() { with_install_lock "$2" prepare_venv_unlocked "$@"; }
prepare_venv_unlocked() {
  local req="$1" venv="$2" want have=""
  command -v "$PYTHON" >/dev/null || { echo "$(basename "$0"): $PYTHON is required" >&2; exit 2; }
  want=$( (sha256sum "$req"; "$PYTHON" --version) | sha256sum | cut -d' ' -f1)
  [ -f "$venv/.e2e-requirements.sha256" ] && have=$(cat "$venv/.e2e-requirements.sha256")
  if [ "$want" != "$have" ]; then
    echo "== creating $venv and installing $req"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    # uamqp only from a wheel: a source build needs a C toolchain and CMake and is slow.
    env -u REQUESTS_CA_BUNDLE -u SSL_CERT_FILE timeout "$INSTALL_TIMEOUT" "$venv/bin/pip" install \
      --disable-pip-version-check -q --only-binary=uamqp -r "$req"
    echo "$want" >"$venv/.e2e-requirements.sha256"
  fi
}

# start_emulator WORK [FLAGS...]: builds bin/iothub-emulator, starts it (with
# FLAGS added) in memory on
# 8883, 443, 1883 and 8080 with its log in WORK/emulator.log, waits until it
# is healthy, and exports IOTHUB_CONNECTION_STRING, EVENTHUB_CONNECTION_STRING,
# EVENTHUB_DEV_CONNECTION_STRING, IOTHUB_CA_FILE,
# NODE_EXTRA_CA_CERTS and REQUESTS_CA_BUNDLE. Sets EMU_PID and LOG.
start_emulator() {
  local work="$1" deadline addr cs
  shift
  LOG="$work/emulator.log"

  # run.sh builds it once for all its suites.
  if [ -z "${IOTHUB_EMULATOR_BIN:-}" ]; then
    echo "== building the emulator"
    (cd "$ROOT" && go build -o bin/iothub-emulator ./cmd/iothub-emulator)
  fi

  echo "== starting the emulator on 8883 (MQTT/TLS), 443 (HTTPS + WSS), 5671 (AMQP/TLS), 5672 (AMQP), 1883, 8080"
  "$ROOT/bin/iothub-emulator" --in-memory --data-dir "$work/data" --bind 127.0.0.1 --hostname localhost \
    --mqtts-port 8883 --https-port 443 --mqtt-port 1883 --http-port 8080 --amqps-port 5671 --amqp-port 5672 \
    ${IOTHUB_DOTTED_HOSTNAME:+--tls-san "$IOTHUB_DOTTED_HOSTNAME"} "$@" >"$LOG" 2>&1 &
  EMU_PID=$!

  deadline=$((SECONDS + HEALTH_TIMEOUT))
  until curl -sf --max-time 2 -o /dev/null http://127.0.0.1:8080/_emulator/health; do
    if ! kill -0 "$EMU_PID" 2>/dev/null; then
      echo "$(basename "$0"): the emulator exited during start-up (are 443/8883/1883/8080 free, and are we root?)" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$(basename "$0"): the emulator was not healthy within ${HEALTH_TIMEOUT}s" >&2
      exit 1
    fi
    sleep 0.2
  done

  # The SDKs cannot follow a listener that fell back to another port.
  for addr in 127.0.0.1:8883 127.0.0.1:443 127.0.0.1:5671; do
    grep -q " $addr " "$LOG" || { echo "$(basename "$0"): the emulator is not listening on $addr (see its banner)" >&2; exit 1; }
  done

  curl -sf --max-time 5 -o "$work/ca.pem" http://127.0.0.1:8080/_emulator/ca.pem
  cs=$(grep -m1 -o 'HostName=[^[:space:]]*SharedAccessKeyName=iothubowner;SharedAccessKey=[^[:space:]]*' "$LOG" || true)
  [ -n "$cs" ] || { echo "$(basename "$0"): no iothubowner connection string in the emulator's banner" >&2; exit 1; }

  export IOTHUB_CONNECTION_STRING="$cs"
  # The Event Hub-compatible endpoint: over TLS (5671) and for
  # UseDevelopmentEmulator=true (plain 5672), as the banner prints them.
  EVENTHUB_CONNECTION_STRING=$(grep -m1 -o 'Endpoint=sb://[^[:space:]]*EntityPath=[^;[:space:]]*$' "$LOG" || true)
  EVENTHUB_DEV_CONNECTION_STRING=$(grep -m1 -o 'Endpoint=sb://[^[:space:]]*;UseDevelopmentEmulator=true' "$LOG" || true)
  [ -n "$EVENTHUB_CONNECTION_STRING" ] && [ -n "$EVENTHUB_DEV_CONNECTION_STRING" ] ||
    { echo "$(basename "$0"): no Event Hub-compatible connection strings in the emulator's banner" >&2; exit 1; }
  export EVENTHUB_CONNECTION_STRING EVENTHUB_DEV_CONNECTION_STRING
  export IOTHUB_CA_FILE="$work/ca.pem"
  export NODE_EXTRA_CA_CERTS="$work/ca.pem"   # the only way the Node service SDK trusts a CA
  export REQUESTS_CA_BUNDLE="$work/ca.pem"    # azure-iot-hub (requests/msrest)
  echo "   ready: $cs"
}

# use_running_emulator WORK: instead of start_emulator, uses an emulator that
# is already running on 127.0.0.1 (8883, 443, 8080), e.g. in a container, and
# exports the same variables. IOTHUB_CA_FILE may name its CA (else it is
# fetched from /_emulator/ca.pem); IOTHUB_CONNECTION_STRING defaults to the
# well-known iothubowner one. EMU_PID stays empty.
use_running_emulator() {
  local work="$1"
  LOG="$work/emulator.log"
  : >"$LOG"
  curl -sf --max-time 5 -o /dev/null http://127.0.0.1:8080/_emulator/health ||
    { echo "$(basename "$0"): no emulator answers at http://127.0.0.1:8080" >&2; exit 1; }
  if [ -z "${IOTHUB_CA_FILE:-}" ]; then
    curl -sf --max-time 5 -o "$work/ca.pem" http://127.0.0.1:8080/_emulator/ca.pem
    IOTHUB_CA_FILE="$work/ca.pem"
  fi
  export IOTHUB_CA_FILE
  export IOTHUB_CONNECTION_STRING="${IOTHUB_CONNECTION_STRING:-HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=P2ja1D+Ckn3UtCuHYDTO8mnTDonBDe4tGpQE5JTLVhM=}"
  export NODE_EXTRA_CA_CERTS="$IOTHUB_CA_FILE" REQUESTS_CA_BUNDLE="$IOTHUB_CA_FILE"
  echo "== using the running emulator at 127.0.0.1 (CA $IOTHUB_CA_FILE)"
}

# emulator_alive: the emulator this script started still runs (always true
# for one it did not start).
emulator_alive() { [ -z "$EMU_PID" ] || kill -0 "$EMU_PID" 2>/dev/null; }

stop_emulator() {
  if [ -n "$EMU_PID" ] && kill -0 "$EMU_PID" 2>/dev/null; then
    kill "$EMU_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$EMU_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
  fi
  EMU_PID=""
}

# print_file TITLE FILE [LINES]: the tail of a log, framed.
print_file() {
  local title="$1" file="$2" lines="${3:-2000}"
  [ -f "$file" ] || return 0
  echo
  echo "==================== $title ($file, last $lines lines) ===================="
  tail -n "$lines" "$file" || true
  echo "==================== end of $title ===================="
}
