#!/usr/bin/env bash
# Runs the official Azure IoT SDK suites against the emulator on the SDKs'
# real ports (8883, 443), each suite in parallel in a network namespace of its
# own with an emulator of its own, so they neither collide with each other nor
# with anything else on the machine.
#
#   e2e/sdk/run.sh                  every suite in SUITES
#   e2e/sdk/run.sh node python      only these
#   e2e/sdk/run.sh --list           "name needs..." per suite (scripts/test.sh
#                                   checks the needs and passes what can run)
#
# Each suite NAME has prepare_NAME (runs first, outside the namespace: npm,
# pip or Maven installs that need the registries) and run_NAME (runs inside,
# with the emulator started and IOTHUB_CONNECTION_STRING, IOTHUB_CA_FILE,
# NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE exported, see lib.sh). Suites in
# OWN_EMULATOR start their own; suites in WITH_AZURITE also get Azurite
# (azurite.sh) for the file upload tests. Inside a namespace the name iothub.localhost
# resolves to 127.0.0.1 and is in the certificate (IOTHUB_DOTTED_HOSTNAME),
# for the SDKs that refuse a host name without a dot (docs/sdk-notes.md).
#
# Needs root for the namespaces (unshare --net --mount, ip). Without root the
# suites run one after another in the host's namespace, on its ports.
# SDK_PARALLEL bounds how many suites run at once (default 3: the machine
# has 2 cores); SUITE_TIMEOUT bounds each suite's test run (seconds).
# Every suite's output is printed at the end, and on failure its emulator's
# log. Under CI=true a suite that skips a test fails: a missing feature must
# not pass as a skip.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SUITE_TIMEOUT=${SUITE_TIMEOUT:-300}
SDK_PARALLEL=${SDK_PARALLEL:-3}
export IOTHUB_DOTTED_HOSTNAME=iothub.localhost

# Adding a suite: one line here, and its prepare_NAME and run_NAME below.
# name      needs (tools scripts/test.sh checks before it runs the suite)
SUITES=(
  "node     node openssl"
  "nodefaults node openssl"
  "python   python openssl"
  "tutorial node python"
  "dashboard node"
  "go       go"
  "java     java"
  "s1       node python openssl"
)
OWN_EMULATOR=" tutorial s1 "
# Suites whose namespace also gets Azurite (file upload tests, azurite.sh),
# started before their emulator.
WITH_AZURITE=" node python "

# --- the suites -------------------------------------------------------------------

prepare_node() { prepare_node_dir "$HERE/node"; }
run_node() {
  echo "== node --test ($(node --version))"
  (cd "$HERE/node" && timeout "$SUITE_TIMEOUT" node --test --test-concurrency=1 --test-timeout=120000)
}

# The Node SDK over AMQP under injected faults (node/resilience/): apart
# from the node suite because its faults wait on real time, the slowest on
# the SDK's own 45-second rundown; one file per transport, run at once.
prepare_nodefaults() { prepare_node_dir "$HERE/node"; }
run_nodefaults() {
  echo "== node --test resilience/ ($(node --version))"
  (cd "$HERE/node" && timeout "$SUITE_TIMEOUT" node --test --test-concurrency=2 --test-timeout=240000 \
    resilience/faults_amqp.js resilience/faults_amqpws.js)
}

prepare_python() { prepare_venv "$HERE/python/requirements.txt" "$HERE/python/.venv"; }
run_python() {
  local venv="$HERE/python/.venv"
  echo "== pytest ($("$venv/bin/python" --version))"
  (cd "$HERE/python" && timeout "$SUITE_TIMEOUT" "$venv/bin/python" -m pytest)
}

# github.com/amenzhinsky/iothub, a module of its own in go/.
prepare_go() { (cd "$HERE/go" && timeout "$INSTALL_TIMEOUT" go mod download); }
run_go() {
  echo "== go test e2e/sdk/go ($(go version | cut -d' ' -f3))"
  (cd "$HERE/go" && timeout "$SUITE_TIMEOUT" go test -count=1 ./...)
}

# The Java SDKs refuse a host name without a dot, so the Java suite reaches
# the emulator as iothub.localhost: the emulator's certificate covers it
# (--tls-san in lib.sh), the JVM resolves it from a hosts file of its own
# (-Djdk.net.hosts.file, nothing on the machine changes) and trusts the CA
# from a PKCS12 trust store. The emulator ignores the host part of SAS
# resource URIs and MQTT user names, so one emulator serves every suite.
JAVA_IOTHUB_HOSTNAME=iothub.localhost
prepare_java() {
  if ! command -v mvn >/dev/null || ! command -v keytool >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "== installing Maven and a JDK (apt)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends maven default-jdk-headless >/dev/null
    else
      echo "run.sh: the java suite needs mvn and a JDK 11+ (keytool)" >&2; exit 2
    fi
  fi
  # Fetches everything a test run needs, so the run itself needs no network:
  # the SDKs and plugins (a run of no test at all) and the JUnit provider,
  # which Surefire would otherwise download only when tests start.
  echo "== mvn in $HERE/java (downloads the SDKs and plugins on first run)"
  (cd "$HERE/java" && timeout "$INSTALL_TIMEOUT" mvn -B -q test -Dtest=NoTestHasThisName -Dsurefire.failIfNoSpecifiedTests=false &&
    timeout "$INSTALL_TIMEOUT" mvn -B -q dependency:get -Dartifact=org.apache.maven.surefire:surefire-junit-platform:3.5.2)
}
run_java() {
  local store="$WORK/java-truststore.p12" hosts="$WORK/java-hosts"
  echo "== mvn test e2e/sdk/java ($(java -version 2>&1 | head -1)) as $JAVA_IOTHUB_HOSTNAME"
  rm -f "$store"
  keytool -importcert -noprompt -alias iothub-emulator -file "$IOTHUB_CA_FILE" \
    -keystore "$store" -storetype PKCS12 -storepass changeit >/dev/null
  echo "127.0.0.1 $JAVA_IOTHUB_HOSTNAME" >"$hosts"
  (cd "$HERE/java" && JAVA_IOTHUB_HOSTNAME=$JAVA_IOTHUB_HOSTNAME timeout "$SUITE_TIMEOUT" mvn -B --no-transfer-progress test \
    -DargLine="-Djavax.net.ssl.trustStore=$store -Djavax.net.ssl.trustStorePassword=changeit -Djavax.net.ssl.trustStoreType=PKCS12 -Djdk.net.hosts.file=$hosts")
}

# The Node and Python SDKs against an S1 hub (--sku S1) on a fake clock
# (--fake-clock): the tier's budgets refill only when a test moves the hub's
# clock, so the throttling tests count exactly and never wait for time. Its
# own emulator, so the other suites stay unthrottled; tests in node/s1 and
# python/s1, which the node and python suites do not pick up.
prepare_s1() { prepare_node; prepare_python; }
run_s1() {
  local dir="$WORK"
  [ ! -d "$WORK/s1" ] || dir="$WORK/s1"   # without namespaces WORK is shared by the suites
  start_emulator "$dir" --sku S1 --fake-clock
  echo "== node --test s1 ($(node --version))"
  (cd "$HERE/node" && timeout "$SUITE_TIMEOUT" node --test --test-concurrency=1 --test-timeout=120000 s1/*.s1.js)
  echo "== pytest s1"
  (cd "$HERE/python" && timeout "$SUITE_TIMEOUT" "$HERE/python/.venv/bin/python" -m pytest s1)
}

# The dashboard in headless Chromium (Debian's chromium, installed with apt
# when missing; screenshots in e2e/sdk/dashboard/screenshots).
prepare_dashboard() {
  if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
    echo "== apt-get install chromium chromium-driver"
    command -v apt-get >/dev/null || { echo "run.sh: the dashboard suite needs Debian's chromium (apt-get)" >&2; exit 2; }
    timeout "$INSTALL_TIMEOUT" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout "$INSTALL_TIMEOUT" apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  prepare_node_dir "$HERE/dashboard"
}
run_dashboard() {
  local dir="$HERE/dashboard"
  echo "== dashboard in headless Chromium ($("${CHROMIUM:-/usr/bin/chromium}" --version 2>/dev/null | head -1))"
  (cd "$dir" && DASHBOARD_URL=http://127.0.0.1:8080/ui/ timeout "$SUITE_TIMEOUT" node --test --test-concurrency=1 dashboard.test.mjs)
}

# The "Schedule and broadcast jobs" tutorial ports (tutorial.sh installs what
# it needs and starts its own emulator).
prepare_tutorial() { "$HERE/tutorial.sh" --prepare-only; }
run_tutorial() { "$HERE/tutorial.sh"; }

# --- machinery ----------------------------------------------------------------------

suite_names() { local s; for s in "${SUITES[@]}"; do echo "${s%% *}"; done; }

if [ "${1:-}" = "--list" ]; then
  for s in "${SUITES[@]}"; do echo "$s" | tr -s ' '; done
  exit 0
fi

# shellcheck source=lib.sh
. "$HERE/lib.sh"
# shellcheck source=azurite.sh
. "$HERE/azurite.sh"

# Inside a namespace: run.sh --inside NAME WORK
if [ "${1:-}" = "--inside" ]; then
  name="$2" WORK="$3"
  ip link set lo up
  # iothub.localhost for Java and C, in this mount namespace only.
  { cat /etc/hosts; echo "127.0.0.1 $IOTHUB_DOTTED_HOSTNAME"; } >"$WORK/hosts"
  mount --bind "$WORK/hosts" /etc/hosts
  trap 'rc=$?; stop_emulator; stop_azurite; if [ $rc -ne 0 ]; then print_file "emulator log ($name)" "$WORK/emulator.log"; fi; exit $rc' EXIT
  trap 'exit 130' INT TERM
  with_azurite=""
  [[ "$WITH_AZURITE" != *" $name "* ]] || with_azurite=1
  [ -z "$with_azurite" ] || start_azurite "$WORK"
  if [[ "$OWN_EMULATOR" != *" $name "* ]]; then
    start_emulator "$WORK"
  fi
  [ -z "$with_azurite" ] || azurite_trust "$WORK"
  "run_$name"
  if ! emulator_alive; then
    echo "run.sh: the emulator died during the $name suite" >&2
    exit 1
  fi
  exit 0
fi

selected=("$@")
[ ${#selected[@]} -gt 0 ] || mapfile -t selected < <(suite_names)
all_suites=" $(suite_names | tr '\n' ' ') "
for s in "${selected[@]}"; do
  [[ "$all_suites" == *" $s "* ]] || { echo "run.sh: unknown suite '$s' ($(suite_names | tr '\n' ' '))" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/iothub-sdk-e2e.XXXXXX")
declare -A started rc_of suite_of
cleanup() {
  local rc=$? p
  for p in "${!suite_of[@]}"; do   # suites still running
    [ -n "${rc_of[${suite_of[$p]}]+x}" ] || kill "$p" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [ "$rc" -eq 0 ]; then rm -rf "$WORK"; else echo "(kept $WORK)"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Installs first, one after another, with the network.
for s in "${selected[@]}"; do "prepare_$s"; done
for s in "${selected[@]}"; do
  if [[ "$WITH_AZURITE" == *" $s "* ]]; then prepare_azurite; break; fi
done
(cd "$ROOT" && go build -o bin/iothub-emulator ./cmd/iothub-emulator)
export IOTHUB_EMULATOR_BIN="$ROOT/bin/iothub-emulator"   # start_emulator reuses it

isolated=""
if [ "$(id -u)" -eq 0 ] && command -v unshare >/dev/null && command -v ip >/dev/null &&
  unshare --net --mount true 2>/dev/null; then
  isolated=1
else
  echo "run.sh: not root (or no unshare): the suites run one after another on this namespace's ports" >&2
  SDK_PARALLEL=1
fi

launch() {
  local s="$1" dir="$WORK/$1"
  mkdir -p "$dir"
  started[$s]=$SECONDS
  if [ -n "$isolated" ]; then
    unshare --net --mount bash "$HERE/run.sh" --inside "$s" "$dir" >"$dir/output.log" 2>&1 &
  else
    (
      trap 'stop_emulator; stop_azurite' EXIT
      [[ "$WITH_AZURITE" != *" $s "* ]] || start_azurite "$dir"
      [[ "$OWN_EMULATOR" == *" $s "* ]] || start_emulator "$dir"
      [[ "$WITH_AZURITE" != *" $s "* ]] || azurite_trust "$dir"
      "run_$s"
    ) >"$dir/output.log" 2>&1 &
  fi
  suite_of[$!]=$s
  echo "== suite $s started"
}

queue=("${selected[@]}")
active=0
while [ ${#queue[@]} -gt 0 ] || [ "$active" -gt 0 ]; do
  while [ ${#queue[@]} -gt 0 ] && [ "$active" -lt "$SDK_PARALLEL" ]; do
    launch "${queue[0]}"
    queue=("${queue[@]:1}")
    active=$((active + 1))
  done
  running=()
  for p in "${!suite_of[@]}"; do [ -n "${rc_of[${suite_of[$p]}]+x}" ] || running+=("$p"); done
  rc=0
  wait -n -p done_pid "${running[@]}" || rc=$?
  s=${suite_of[$done_pid]}
  rc_of[$s]=$rc
  active=$((active - 1))
  echo "== suite $s: $([ "$rc" -eq 0 ] && echo passed || echo "FAILED (exit $rc)") in $((SECONDS - started[$s])) s"
done

# skipped_in LOG: the runners' summary lines that report skipped tests
# (node --test TAP and spec, pytest, Maven Surefire, go test -v).
skipped_in() {
  grep -aE '^# skipped [1-9]|skipped [1-9][0-9]* *$|[ ,][1-9][0-9]* skipped|Skipped: [1-9]|^ *--- SKIP' "$1" || true
}

# Every suite's output, so CI logs carry each runner's summary. A skipped
# test hides a missing feature, so in CI it fails its suite.
failed=()
for s in "${selected[@]}"; do
  print_file "suite $s (exit ${rc_of[$s]})" "$WORK/$s/output.log" 100000
  skips=$(skipped_in "$WORK/$s/output.log")
  if [ -n "$skips" ]; then
    echo "run.sh: suite $s skipped tests:"; echo "$skips"
    if [ "${CI:-}" = true ] && [ "${rc_of[$s]}" -eq 0 ]; then rc_of[$s]=1; fi
  fi
  [ "${rc_of[$s]}" -eq 0 ] || failed+=("$s")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "run.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "run.sh: all SDK suites passed (${selected[*]})"
