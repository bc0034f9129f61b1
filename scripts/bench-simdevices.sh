#!/usr/bin/env bash
# Measures what simulated devices cost the emulator: CPU (user+system, as a
# share of one core) and memory (RSS) of the emulator process while N
# simulated devices send one message every INTERVAL, against the same
# emulator idle with the same N devices registered and not simulated.
# The simulator runs inside the emulator process, so the figures include
# both the MQTT clients and the hub serving them (broker, telemetry log).
#
#   scripts/bench-simdevices.sh [devices] [interval] [seconds]   (1000 1s 60)
#
# Uses ports 28883, 28443, 21883 and 28080 on 127.0.0.1 and a data directory
# on disk (telemetry is stored as it would be).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
interval=${2:-1s}
secs=${3:-60}
work=$(mktemp -d)
bin="$work/iothub-emulator"
go build -o "$bin" ./cmd/iothub-emulator
ports=(--mqtts-port 28883 --https-port 28443 --mqtt-port 21883 --http-port 28080)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

cs="HostName=localhost;SharedAccessKeyName=iothubowner;SharedAccessKey=P2ja1D+Ckn3UtCuHYDTO8mnTDonBDe4tGpQE5JTLVhM="
token() {
  python3 - "$cs" <<'PY'
import base64, hashlib, hmac, sys, time, urllib.parse
f = dict(p.split("=", 1) for p in sys.argv[1].split(";"))
sr = urllib.parse.quote_plus(f["HostName"]); se = int(time.time()) + 3600
sig = base64.b64encode(hmac.new(base64.b64decode(f["SharedAccessKey"]), f"{sr}\n{se}".encode(), hashlib.sha256).digest()).decode()
print(f"SharedAccessSignature sr={sr}&sig={urllib.parse.quote(sig, safe='')}&se={se}&skn={f['SharedAccessKeyName']}")
PY
}

ticks=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# measure LABEL: CPU share and RSS over $secs seconds.
measure() {
  local t0 t1 c0 c1 rss_max=0 r
  c0=$(cpu_ticks "$pid"); t0=$(date +%s%N)
  for _ in $(seq "$secs"); do
    sleep 1
    r=$(rss_kb "$pid"); [ "$r" -gt "$rss_max" ] && rss_max=$r
  done
  c1=$(cpu_ticks "$pid"); t1=$(date +%s%N)
  awk -v c=$((c1 - c0)) -v hz="$ticks" -v ns=$((t1 - t0)) -v rss="$(rss_kb "$pid")" -v max="$rss_max" -v label="$1" \
    'BEGIN { printf "%-34s CPU %5.1f%% of one core   RSS %6.1f MB (max %6.1f MB)\n", label, 100 * c / hz / (ns / 1e9), rss / 1024, max / 1024 }'
}

start() {
  "$bin" --data-dir "$work/data" "${ports[@]}" "$@" >"$work/out" 2>&1 &
  pid=$!
  until curl -sf -o /dev/null http://127.0.0.1:28080/_emulator/health; do sleep 0.2; done
}

# 1. Idle, with the devices registered (the simulation creates them).
start
curl -sf -o /dev/null -H "Authorization: $(token)" -H 'Content-Type: application/json' \
  -d "{\"id\":\"bench\",\"count\":$n}" http://127.0.0.1:28080/_emulator/simulations
curl -sf -o /dev/null -X DELETE -H "Authorization: $(token)" http://127.0.0.1:28080/_emulator/simulations/bench
sleep 5
measure "idle, $n devices registered"
kill "$pid"; wait "$pid" 2>/dev/null || true

# 2. The same devices simulated, one message each every $interval.
start
curl -sf -o /dev/null -H "Authorization: $(token)" -H 'Content-Type: application/json' \
  -d "{\"id\":\"bench\",\"count\":$n,\"telemetry\":{\"interval\":\"$interval\",\"fields\":{\"temperature\":{\"min\":18,\"max\":26,\"walk\":0.3},\"humidity\":{\"min\":30,\"max\":60}},\"properties\":{\"source\":\"bench\"}},\"methods\":[{\"name\":\"lockDoor\"}]}" \
  http://127.0.0.1:28080/_emulator/simulations
until [ "$(curl -sf -H "Authorization: $(token)" http://127.0.0.1:28080/_emulator/simulations/bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["connectedCount"])')" = "$n" ]; do sleep 1; done
sleep 5 # past the spread-out first messages
sent0=$(curl -sf -H "Authorization: $(token)" http://127.0.0.1:28080/_emulator/simulations/bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["messagesSent"])')
measure "$n simulated, every $interval"
sent1=$(curl -sf -H "Authorization: $(token)" http://127.0.0.1:28080/_emulator/simulations/bench | python3 -c 'import json,sys; print(json.load(sys.stdin)["messagesSent"])')
echo "messages stored (PUBACKed) in the window: $((sent1 - sent0)) ($(( (sent1 - sent0) / secs ))/s)"
