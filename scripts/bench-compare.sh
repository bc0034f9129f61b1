#!/usr/bin/env bash
# Runs the performance figures of issue 22 on two commits, alternately, and
# prints one table: figure | aim | old | new | gain.
#
#   scripts/bench-compare.sh OLD NEW            e.g. scripts/bench-compare.sh 9e6b96e HEAD
#
# Each commit is checked out in a temporary worktree (removed at the end) and
# its own benchmarks are compiled once (`go test -c`); then every figure runs
# on OLD, then on NEW (ROUNDS times: A B A B …), so background load on a
# shared machine hits both alike. Each run has a timeout; a run that fails or
# times out prints "failed" and the script goes on. Raw output is kept in
# $OUT (default: a new temporary directory, printed at the end).
#
# Environment:
#   ROUNDS=2        runs per commit per figure (values are listed, the gain
#                   compares their means)
#   FIGURES=…       space-separated subset of figure names (see `figures` below)
#   OUT=dir         where logs go
#   TIMEOUT_SCALE=1 multiply every timeout (a loaded machine needs more)
#
# Needs mosquitto on PATH for the telemetry and idle-memory figures
# (apt-get install -y mosquitto); without it they print "failed".
set -uo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 OLD NEW" >&2
  exit 2
fi
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
old_rev=$(git -C "$repo" rev-parse --verify "$1^{commit}") || exit 2
new_rev=$(git -C "$repo" rev-parse --verify "$2^{commit}") || exit 2
rounds=${ROUNDS:-2}
scale=${TIMEOUT_SCALE:-1}
out=${OUT:-$(mktemp -d /tmp/bench-compare.XXXXXX)}
mkdir -p "$out"
work=$(mktemp -d /tmp/bench-compare-wt.XXXXXX)

cleanup() {
  for side in old new; do
    [ -d "$work/$side" ] && git -C "$repo" worktree remove --force "$work/$side" >/dev/null 2>&1
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# figures: name | aim | better (higher/lower) | unit shown | package | timeout (s) | how
# "how" is a function below that runs the figure in the current directory
# (the package directory of one worktree) and prints one number, or nothing.
figures=(
  "twins-reported|>= 10,000/s|higher|patches/s|e2e|240|fig_twins_reported"
  "jobs-twin-100k|< 10 s|lower|s|e2e|420|fig_jobs_twin"
  "jobs-method-10k|< 2 s|lower|s|e2e|300|fig_jobs_method"
  "telemetry-qos1|>= 0.8x mosquitto|higher|x mosquitto|e2e|600|fig_telemetry_qos1"
  "telemetry-qos0|>= 0.8x mosquitto|higher|x mosquitto|e2e|0|fig_telemetry_qos0"
  "idle-memory|< 20 KB|lower|KB/device|e2e|0|fig_idle_memory"
  "groupby-100k|< 300 ms|lower|ms|sqlite|300|fig_groupby"
  "first-query-100k|-|lower|ms|sqlite|0|fig_first_query"
  "methods-100-callers|>= 20,000/s|higher|calls/s|e2e|300|fig_methods"
  "methods-100-callers-p50|-|lower|ms p50|e2e|0|fig_methods_p50"
  "registry-import-100k|< 6 s (1M: 60 s)|lower|s|e2e|240|fig_registry_import"
)
# A figure with timeout 0 is read from the log of the figure before it (one
# run yields several figures).

# metric UNIT < log: the value a Go benchmark reported with that unit (the
# last line that has it).
metric() {
  awk -v u="$1" '/^Benchmark/ { for (i = 2; i <= NF; i++) if ($i == u) v = $(i-1) } END { if (v != "") print v }'
}

fig_twins_reported() {
  ./pkg.test -test.run '^$' -test.bench '^BenchmarkTwins_Reported$' -test.benchtime 20000x -test.timeout "$1s"
}
fig_jobs_twin() {
  ./pkg.test -test.run '^$' -test.bench '^BenchmarkJobs_Twin100k$' -test.benchtime 1x -test.timeout "$1s"
}
fig_jobs_method() {
  ./pkg.test -test.run '^$' -test.bench '^BenchmarkJobs_Method10k$' -test.benchtime 1x -test.timeout "$1s"
}
fig_telemetry_qos1() {
  IOTHUB_BENCH=1 ./pkg.test -test.run '^TestMessagingBenchmark$' -test.v -test.timeout "$1s"
}
fig_groupby() {
  ./pkg.test -test.run '^$' -test.bench '^BenchmarkQueryStore$/^(groupby|where)$' -test.benchtime 5x -test.timeout "$1s"
}
fig_methods() {
  ./pkg.test -test.run '^$' -test.bench '^BenchmarkMethods$/^devices=1000$/^callers=100$' -test.benchtime 20000x -test.timeout "$1s"
}
fig_registry_import() {
  ./pkg.test -test.run '^$' -test.bench '^BenchmarkRegistry_BulkImport100k$' -test.benchtime 1x -test.timeout "$1s"
}

# extract NAME < log: the figure's number from its run's output.
extract() {
  case $1 in
    twins-reported) metric patches/s ;;
    jobs-twin-100k | jobs-method-10k) metric s/job ;;
    telemetry-qos1 | telemetry-qos0)
      # RESULT throughput emulator  QoS 1 round 1:     9000 msg/s …: the
      # emulator's total over the rounds divided by Mosquitto's.
      local q=${1#telemetry-qos}
      awk -v q="$q" '/RESULT throughput/ {
          for (i = 1; i <= NF; i++) if ($i == "throughput") who = $(i+1)
          for (i = 1; i <= NF; i++) if ($i == "QoS" && $(i+1) == q) {
            for (j = i; j <= NF; j++) if ($j == "msg/s") { r[who] += $(j-1); break }
          }
        }
        END { if (r["emulator"] > 0 && r["mosquitto"] > 0) printf "%.2f\n", r["emulator"] / r["mosquitto"] }' ;;
    idle-memory)
      awk '/RESULT idle emulator/ { for (i = 1; i <= NF; i++) if ($i == "KB" && $(i+1) == "per") v = $(i-1) } END { if (v != "") print v }' ;;
    groupby-100k)
      awk '/^BenchmarkQueryStore\/groupby/ { for (i = 2; i <= NF; i++) if ($i == "ns/op") printf "%.1f\n", $(i-1) / 1e6 }' ;;
    first-query-100k)
      awk '/^BenchmarkQueryStore\/where\/first-query/ { for (i = 2; i <= NF; i++) if ($i == "ns/op") printf "%.1f\n", $(i-1) / 1e6 }' ;;
    methods-100-callers) metric calls/s ;;
    methods-100-callers-p50) metric p50-ms ;;
    registry-import-100k) metric s/100k ;;
  esac
}

# Build both sides: a worktree each, the test binaries, and the emulator once
# so the benchmarks' own `go build` finds it in the cache.
echo "bench-compare: old $old_rev, new $new_rev, rounds $rounds, logs in $out" >&2
for side in old new; do
  rev=$old_rev
  [ $side = new ] && rev=$new_rev
  git -C "$repo" worktree add --detach "$work/$side" "$rev" >/dev/null 2>&1 || { echo "worktree $rev failed" >&2; exit 1; }
  for pkg in e2e sqlite; do
    (cd "$work/$side" && go test -c -o "$pkg/pkg.test" "./$pkg") >"$out/build-$side-$pkg.log" 2>&1 ||
      echo "build of $side ./$pkg failed (see $out/build-$side-$pkg.log)" >&2
  done
  (cd "$work/$side" && go build -o /dev/null ./cmd/iothub-emulator) >"$out/build-$side-emulator.log" 2>&1
done

# Each run gets a network namespace of its own when it can (root): the
# emulator's fixed default ports (AMQP 5671/5672) and the benchmarks' ports
# then cannot collide with other emulators running on the machine.
netns=0
if unshare --net true 2>/dev/null && command -v ip >/dev/null; then
  netns=1
else
  echo "bench-compare: no network namespace (not root?); port collisions with other emulators are possible" >&2
fi

# run SIDE ROUND NAME FN TIMEOUT: runs one figure in its own process group and
# kills whatever it left behind (the e2e benchmarks start emulator processes).
run() {
  local side=$1 round=$2 name=$3 fn=$4 t=$5 pkg=$6
  local log="$out/$name-$side-$round.log"
  if [ ! -x "$work/$side/$pkg/pkg.test" ]; then
    echo "no test binary" >"$log"
    return
  fi
  (
    cd "$work/$side/$pkg" || exit 1
    export -f "$fn"
    if [ "$netns" = 1 ]; then
      exec setsid timeout -k 15 $((t + 30)) unshare --net bash -c "ip link set lo up && $fn $t"
    fi
    exec setsid timeout -k 15 $((t + 30)) bash -c "$fn $t"
  ) >"$log" 2>&1 &
  local pid=$!
  wait $pid
  echo "exit status $?" >>"$log"
  kill -KILL -- "-$pid" 2>/dev/null
}

declare -A values
last_run=""
for spec in "${figures[@]}"; do
  IFS='|' read -r name aim better unit pkg t fn <<<"$spec"
  if [ -n "${FIGURES:-}" ] && ! [[ " $FIGURES " == *" $name "* ]]; then
    # Keep figures that share a run with a selected one.
    [ "$t" != 0 ] && { last_run=""; continue; }
    [ -z "$last_run" ] && continue
  fi
  if [ "$t" != 0 ]; then
    last_run=$name
    t=$(awk -v t="$t" -v s="$scale" 'BEGIN { printf "%d", t * s }')
    for round in $(seq "$rounds"); do
      for side in old new; do
        echo "$(date -u +%H:%M:%S) $name: $side, round $round" >&2
        run $side "$round" "$name" "$fn" "$t" "$pkg"
      done
    done
  fi
  for side in old new; do
    vs=""
    for round in $(seq "$rounds"); do
      v=$(extract "$name" <"$out/$last_run-$side-$round.log" 2>/dev/null)
      vs="$vs ${v:-failed}"
    done
    values[$name,$side]=${vs# }
  done
done

# The table.
mean() { awk '{ n = 0; s = 0; for (i = 1; i <= NF; i++) if ($i != "failed") { s += $i; n++ } if (n) printf "%.6g\n", s / n }'; }
# A Markdown table, ready for docs/benchmarks.md.
printf '\n| %-26s | %-18s | %-22s | %-22s | %s |\n' "figure" aim "old (${old_rev:0:7})" "new (${new_rev:0:7})" "gain (>1: new better)"
printf '%s\n' "|---|---|---|---|---|"
for spec in "${figures[@]}"; do
  IFS='|' read -r name aim better unit pkg t fn <<<"$spec"
  [ -z "${values[$name,old]+x}" ] && continue
  o=${values[$name,old]} n=${values[$name,new]}
  om=$(echo "$o" | mean) nm=$(echo "$n" | mean)
  gain="-"
  if [ -n "$om" ] && [ -n "$nm" ]; then
    gain=$(awk -v o="$om" -v n="$nm" -v b="$better" 'BEGIN { if (o <= 0 || n <= 0) { print "-"; exit } printf "%.2fx\n", (b == "higher") ? n / o : o / n }')
  fi
  [ -n "$om" ] && o="$o $unit"
  [ -n "$nm" ] && n="$n $unit"
  printf '| %-26s | %-18s | %-22s | %-22s | %s |\n' "$name" "$aim" "$o" "$n" "$gain"
done
echo
echo "logs: $out"
