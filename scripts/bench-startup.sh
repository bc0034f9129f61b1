#!/usr/bin/env bash
# Measures start-up time (process exec to every listener accepting) and idle
# memory (RSS) of the emulator binary. Usage: scripts/bench-startup.sh [runs] [data-dir]
# Without a data dir every run starts on a fresh one; with one (e.g. the
# database `go run ./cmd/loadgen registry -data-dir DIR` filled) every run
# starts on it, and it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
keep=${2:-}
bin=$(mktemp -d)/iothub-emulator
go build -o "$bin" ./cmd/iothub-emulator
ports=(--mqtts-port 28883 --https-port 28443 --mqtt-port 21883 --http-port 28080)

times=()
for _ in $(seq "$runs"); do
  data=${keep:-$(mktemp -d)}
  start=$(date +%s%N)
  "$bin" --data-dir "$data" "${ports[@]}" >"$data/out" 2>&1 &
  pid=$!
  # Ready = the last listener accepts a TCP connection.
  until (exec 3<>/dev/tcp/127.0.0.1/28080) 2>/dev/null; do :; done
  end=$(date +%s%N)
  times+=($(( (end - start) / 1000 )))
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  [ -n "$keep" ] || rm -rf "$data"
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "start-up to ready, $runs runs (µs): min $(echo "$sorted" | head -1) median $(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p") max $(echo "$sorted" | tail -1)"

# Idle RSS after a settle period, fresh data dir (first start generates certificates).
data=${keep:-$(mktemp -d)}
"$bin" --data-dir "$data" "${ports[@]}" >"$data/out" 2>&1 &
pid=$!
until (exec 3<>/dev/tcp/127.0.0.1/28080) 2>/dev/null; do :; done
sleep 5
echo "idle RSS after 5 s: $(awk '/VmRSS/ {print $2}' /proc/$pid/status) kB"
kill $pid; wait $pid 2>/dev/null || true
[ -n "$keep" ] || rm -rf "$data"
rm -rf "$(dirname "$bin")"
