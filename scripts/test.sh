#!/usr/bin/env bash
# Runs every test the machine can run:
#   1. the Go unit and end-to-end tests, with the race detector (needs a C
#      compiler; without one they run without -race);
#   2. the official-SDK suites of e2e/sdk/run.sh whose tools are present (Node
#      20+, Python 3.8-3.13 on x86_64, Java 17+ with Maven, root for the SDKs'
#      ports 443/8883), in parallel, each in its own network namespace;
#   3. the `docker compose` test (scripts/compose-test.sh; root, apt).
# 3 starts first, in the background; 1 and then 2 run beside it. Whatever
# cannot run is named in a SKIPPED line at the end. With CI=true nothing may
# be skipped: a missing tool fails the run.
#
#   scripts/test.sh                  everything
#   TEST_PARTS="go sdk" scripts/test.sh   only some parts (go, sdk, compose)
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS=" ${TEST_PARTS:-go sdk compose} "
skipped=()
start=$SECONDS

# version_at_least HAVE WANT: dotted versions compared field by field.
version_at_least() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# have_TOOL: echoes nothing and succeeds when the tool is usable, else
# prints why not.
have_node() {
  command -v node >/dev/null && command -v npm >/dev/null || { echo "node and npm not found (Node 20 or later)"; return 1; }
  local v; v=$(node --version 2>/dev/null | head -n1); v=${v#v}
  [[ "$v" =~ ^[0-9]+(\.[0-9]+)*$ ]] || { echo "node --version gave '$v', not a version"; return 1; }
  version_at_least "$v" 20 || { echo "Node $v is older than 20"; return 1; }
}
have_python() {
  local py=${PYTHON:-python3} v
  command -v "$py" >/dev/null || { echo "$py not found (Python 3.8 to 3.13)"; return 1; }
  v=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  { version_at_least "$v" 3.8 && ! version_at_least "$v" 3.14; } || { echo "Python $v is not 3.8 to 3.13 (uamqp has wheels only there)"; return 1; }
  [ "$(uname -m)" = x86_64 ] || { echo "Python SDK suites need x86_64 (uamqp wheels), not $(uname -m)"; return 1; }
  "$py" -c 'import venv, ensurepip' 2>/dev/null || { echo "$py lacks venv/ensurepip (Debian: apt-get install python3-venv)"; return 1; }
}
have_java() {
  command -v java >/dev/null && command -v mvn >/dev/null || { echo "java and mvn not found (Java 17 or later, Maven)"; return 1; }
  local v; v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  version_at_least "${v:-0}" 17 || { echo "Java ${v:-?} is older than 17"; return 1; }
}
have_openssl() { command -v openssl >/dev/null || { echo "openssl not found (Azurite's certificate for the file upload tests)"; return 1; }; }
have_go() { command -v go >/dev/null || { echo "go not found"; return 1; }; }
have_root() { [ "$(id -u)" -eq 0 ] || { echo "not root ($1)"; return 1; }; }

pids=()
names=()
failed=()
# Background parts stop (and clean up after themselves) if this script does.
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# --- 3 first, in the background: its image build is the longest step and uses
# about one core, so it overlaps the Go tests and the SDK suites.
if [[ "$PARTS" == *" compose "* ]]; then
  if why=$(have_root "it installs and runs a Docker engine"); then
    # Its output goes to a file (printed below) so that it does not interleave
    # with the SDK suites'.
    compose_log=$(mktemp "${TMPDIR:-/tmp}/iothub-compose-test.XXXXXX")
    echo "== docker compose test (log: $compose_log)"
    scripts/compose-test.sh >"$compose_log" 2>&1 &
    pids+=($!); names+=("compose test")
  else
    skipped+=("docker compose test: $why")
  fi
fi

# --- 1. Go ---------------------------------------------------------------------------
if [[ "$PARTS" == *" go "* ]]; then
  race=-race
  if ! command -v "${CC:-gcc}" >/dev/null && ! command -v cc >/dev/null; then
    race=""
    skipped+=("go test -race (no C compiler: install gcc; the tests ran without the race detector)")
  fi
  echo "== go test $race ./..."
  go test $race -count=1 ./... || failed+=("go test")
fi

# --- 2. the SDK suites -----------------------------------------------------------------

if [[ "$PARTS" == *" sdk "* ]] && [ -x e2e/sdk/run.sh ]; then
  runnable=()
  if why=$(have_root "the SDKs need ports 443 and 8883, and each suite a network namespace"); then
    while read -r name needs; do
      missing=""
      for n in $needs; do
        if ! why=$("have_$n"); then missing="$why"; break; fi
      done
      if [ -n "$missing" ]; then skipped+=("SDK suite $name: $missing"); else runnable+=("$name"); fi
    done < <(e2e/sdk/run.sh --list)
  else
    skipped+=("every SDK suite: $why")
  fi
  if [ ${#runnable[@]} -gt 0 ]; then
    echo "== SDK suites: ${runnable[*]}"
    e2e/sdk/run.sh "${runnable[@]}" &
    pids+=($!); names+=("SDK suites")
  fi
fi

for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then failed+=("${names[$i]}"); fi
  if [ "${names[$i]}" = "compose test" ]; then
    echo "==================== docker compose test ===================="
    cat "$compose_log"; rm -f "$compose_log"
  fi
done
pids=()   # all reaped: nothing left for the EXIT trap to stop

echo "== scripts/test.sh took $((SECONDS - start)) s"
if [ ${#skipped[@]} -gt 0 ]; then
  for s in "${skipped[@]}"; do echo "SKIPPED: $s"; done
fi
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
if [ ${#skipped[@]} -gt 0 ] && [ "${CI:-}" = true ]; then
  echo "CI=true: nothing may be skipped (see the SKIPPED lines)" >&2
  exit 1
fi
echo "scripts/test.sh: everything that ran passed"
