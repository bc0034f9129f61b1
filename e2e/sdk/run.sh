#!/usr/bin/env bash
# Runs the official Azure IoT SDK suites (Node and Python) against a freshly
# built emulator on the SDKs' real ports, then the tutorial ports under
# examples/ (tutorial.sh, with an emulator of its own).
#
#   e2e/sdk/run.sh              both suites, then the tutorials
#   e2e/sdk/run.sh node         only the Node suite (azure-iot-device, azure-iothub)
#   e2e/sdk/run.sh python       only the Python suite (azure-iot-device, azure-iot-hub)
#   e2e/sdk/run.sh go           only the Go suite (amenzhinsky/iothub, a module of its own)
#   e2e/sdk/run.sh tutorial     only the tutorials (e2e/sdk/tutorial.sh)
#   e2e/sdk/run.sh dashboard    only the dashboard in headless Chromium
#                               (installs Debian's chromium with apt-get when
#                               missing; screenshots in e2e/sdk/dashboard/screenshots)
#
# Needs go, node (20+) with npm, python3 (with venv), curl, openssl, and the npm and PyPI
# registries the first time (node_modules and the venv are reused while the
# lock files are unchanged). Binds 8883, 443, 1883, 8080 (and Azurite 10000) on 127.0.0.1, so it
# must run as root (or with CAP_NET_BIND_SERVICE) and with those ports free:
# the Node service SDK and the Python device SDK cannot use other ports.
#
# The emulator's log goes to a file, printed when anything fails.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SUITE_TIMEOUT=${SUITE_TIMEOUT:-300}    # seconds per suite, a hard stop against hangs
# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=azurite.sh
. "$HERE/azurite.sh"

suites=()
tutorial=""
[ $# -gt 0 ] || set -- node python go dashboard tutorial
for s in "$@"; do
  case "$s" in
    node|python|go|dashboard) suites+=("$s") ;;
    tutorial) tutorial=1 ;;
    *) echo "run.sh: unknown suite '$s' (node, python, go, dashboard or tutorial)" >&2; exit 2 ;;
  esac
done
if [ ${#suites[@]} -eq 0 ]; then
  exec "$HERE/tutorial.sh"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iothub-sdk-e2e.XXXXXX")
LOG="$WORK/emulator.log"
failed=()

on_exit() {
  local rc=$?
  stop_emulator
  stop_azurite
  if [ "$rc" -ne 0 ] && [ -f "$LOG" ]; then
    print_file "emulator log" "$LOG"
    echo "(kept $WORK)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

prepare_node() { prepare_node_dir "$HERE/node"; }
prepare_python() { prepare_venv "$HERE/python/requirements.txt" "$HERE/python/.venv"; }
prepare_go() { (cd "$HERE/go" && timeout "$INSTALL_TIMEOUT" go mod download); }
prepare_dashboard() {
  if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "== apt-get install chromium chromium-driver"
    command -v apt-get >/dev/null || { echo "run.sh: the dashboard suite needs Debian's chromium (apt-get)" >&2; exit 2; }
    timeout "$INSTALL_TIMEOUT" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout "$INSTALL_TIMEOUT" apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  prepare_node_dir "$HERE/dashboard"
}

for s in "${suites[@]}"; do "prepare_$s"; done
prepare_azurite

# File upload tests need a storage account: Azurite, started before the
# emulator so that it gets --storage-connection-string (as an environment
# variable) and trusts Azurite's certificate.
start_azurite "$WORK"
start_emulator "$WORK"
azurite_trust "$WORK"

run_node() {
  local dir="$HERE/node"
  echo "== node --test ($(node --version))"
  (cd "$dir" && timeout "$SUITE_TIMEOUT" node --test --test-concurrency=1 --test-timeout=120000)
}

run_go() {
  echo "== go test e2e/sdk/go ($(go version | cut -d' ' -f3))"
  (cd "$HERE/go" && timeout "$SUITE_TIMEOUT" go test -count=1 ./...)
}

run_dashboard() {
  local dir="$HERE/dashboard"
  echo "== dashboard in headless Chromium ($("${CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null | head -1))"
  (cd "$dir" && DASHBOARD_URL=http://127.0.0.1:8080/ui/ timeout "$SUITE_TIMEOUT" node --test --test-concurrency=1 dashboard.test.mjs)
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

if [ -n "$tutorial" ]; then
  # tutorial.sh starts an emulator of its own on the same ports, with
  # nothing left over from the suites; it prints its own logs on failure.
  stop_emulator
  stop_azurite
  rm -rf "$WORK"
  "$HERE/tutorial.sh"
fi
