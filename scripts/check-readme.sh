#!/usr/bin/env bash
# Checks that README.md's examples still work, so they cannot drift:
#   - its Go block under "Hermetic tests in Go" must equal the part of
#     hubtest/example_test.go between the README markers (go test runs it);
#   - the blocks marked <!-- readme-check: run --> run in order, as a new user
#     would type them, against an emulator built with the README's
#     `go install` and started on the default ports; a block marked
#     <!-- readme-check: file NAME --> is saved as NAME first; afterwards the
#     telemetry they sent must be stored;
#   - the block marked <!-- readme-check: background --> (the dotted host name
#     recipe) runs in the background against a fresh data directory, and the
#     name it sets up must then verify over HTTPS with the emulator's CA.
# Runs in a network and mount namespace of its own (root: the SDK ports and
# /etc/hosts stay untouched). Needs go, curl, python3 (the Python example runs
# in e2e/sdk/python/.venv, made here), mosquitto_pub (Debian:
# mosquitto-clients) and unshare.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
die() { echo "check-readme: $*" >&2; exit 1; }

# --- the Go example ----------------------------------------------------------------
[ -n "${CHECK_README_INNER:-}" ] || python3 - <<'PY' || exit 1
import re, sys
readme = open("README.md").read()
sec = readme[readme.index("## Hermetic tests in Go"):]
block = re.search(r"```go\n(.*?)```", sec, re.S).group(1).strip("\n")
src = open("hubtest/example_test.go").read()
want = src[src.index("// README:begin\n") + len("// README:begin\n"):src.index("// README:end")].strip("\n")
if block != want:
    import difflib
    sys.stdout.writelines(difflib.unified_diff(want.splitlines(True), block.splitlines(True), "hubtest/example_test.go", "README.md"))
    print("check-readme: the README's Go example differs from hubtest/example_test.go", file=sys.stderr)
    sys.exit(1)
print("== check-readme: the Go example matches hubtest/example_test.go")
PY

# --- the shell examples ---------------------------------------------------------------
if [ -z "${CHECK_README_INNER:-}" ]; then
  [ "$(id -u)" -eq 0 ] || die "the shell examples need root (ports 443/8883, a namespace of their own)"
  for tool in go curl python3 mosquitto_pub unshare ip; do
    command -v "$tool" >/dev/null || die "$tool is required (mosquitto_pub: apt-get install mosquitto-clients)"
  done
  HERE="$ROOT/e2e/sdk"
  # shellcheck source=../e2e/sdk/lib.sh
  . "$HERE/lib.sh"
  prepare_venv "$HERE/python/requirements.txt" "$HERE/python/.venv"   # azure-iot-device, with the network
  exec unshare --net --mount env CHECK_README_INNER=1 bash "$0"
fi

ip link set lo up
WORK=$(mktemp -d "${TMPDIR:-/tmp}/iothub-readme.XXXXXX")
EMU_PID=""
# stop_emulator: the emulator, or the shell running a block, and its children.
stop_emulator() {
  [ -n "$EMU_PID" ] || return 0
  local kids; kids=$(pgrep -P "$EMU_PID" || true)
  kill "$EMU_PID" $kids 2>/dev/null || true
  wait "$EMU_PID" 2>/dev/null || true
  EMU_PID=""
}
cleanup() {
  local rc=$?
  stop_emulator
  if [ "$rc" -ne 0 ]; then
    echo "---- emulator log"; cat "$WORK"/emulator*.log 2>/dev/null | tail -n 50
    echo "(kept $WORK)"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT

# Blocks by marker, in README order, into files: run-N.sh, background-N.sh, or NAME.
python3 - "$WORK" <<'PY'
import re, sys, pathlib
work = pathlib.Path(sys.argv[1])
readme = open("README.md").read()
n = 0
for m in re.finditer(r"<!-- readme-check: (\w+)(?: (\S+))? -->\n```\w*\n(.*?)```", readme, re.S):
    kind, name, body = m.groups()
    n += 1
    if kind == "file":
        (work / name).write_text(body)
    elif kind in ("run", "background"):
        (work / f"{kind}-{n:02d}.sh").write_text(body)
    else:
        sys.exit(f"check-readme: unknown marker {kind}")
print(f"== check-readme: {n} marked blocks")
PY
ls "$WORK"/run-*.sh >/dev/null 2>&1 || die "no <!-- readme-check: run --> blocks in README.md"

# The README's install command, into a private GOBIN.
export GOBIN="$WORK/bin"
go install ./cmd/iothub-emulator
export PATH="$GOBIN:$ROOT/e2e/sdk/python/.venv/bin:$PATH"
# On this root-only namespace sudo is a no-op; the examples use it for root.
mkdir -p "$WORK/shims"
printf '#!/bin/sh\nexec "$@"\n' >"$WORK/shims/sudo"; chmod +x "$WORK/shims/sudo"
export PATH="$WORK/shims:$PATH"
# The examples may append to /etc/hosts: give this namespace its own copy.
cp /etc/hosts "$WORK/hosts"; mount --bind "$WORK/hosts" /etc/hosts

wait_health() {
  for _ in $(seq 150); do
    curl -sf --max-time 2 -o /dev/null http://127.0.0.1:8080/_emulator/health && return 0
    kill -0 "$EMU_PID" 2>/dev/null || die "the emulator exited"
    sleep 0.2
  done
  die "the emulator did not become healthy"
}

cd "$WORK"
iothub-emulator --in-memory >"$WORK/emulator.log" 2>&1 &
EMU_PID=$!
wait_health
for f in "$WORK"/run-*.sh; do
  echo "== check-readme: running $(basename "$f")"; sed 's/^/   | /' "$f"
  bash -euo pipefail "$f" || die "README block $(basename "$f") failed"
done
stored=$(curl -sf -H "Authorization: $(iothub-emulator token)" "http://127.0.0.1:8080/_emulator/messages?deviceId=dev1")
for body in '{"temperature":21.5}' '{"temperature": 22.0}'; do
  grep -qF "$(printf '%s' "$body" | sed 's/"/\\"/g')" <<<"$stored" || die "telemetry $body from the README's examples is not stored: $stored"
done
stop_emulator

for f in "$WORK"/background-*.sh; do
  [ -e "$f" ] || continue
  echo "== check-readme: running $(basename "$f") in the background"; sed 's/^/   | /' "$f"
  mkdir -p "$WORK/recipe"
  (cd "$WORK/recipe" && exec bash -euo pipefail "$f") >"$WORK/emulator-recipe.log" 2>&1 &
  EMU_PID=$!
  wait_health
  curl -sf --cacert "$WORK/recipe/data/certs/ca.pem" -o /dev/null https://iothub.localhost/_emulator/health ||
    die "https://iothub.localhost does not verify after the dotted host name recipe"
  grep -q "HostName=iothub.localhost;" "$WORK/emulator-recipe.log" || die "the recipe's banner does not use iothub.localhost"
  stop_emulator
done
echo "== check-readme: the README's examples work"
