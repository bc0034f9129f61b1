#!/usr/bin/env bash
# Runs every test: the Go unit and end-to-end tests with the race detector,
# then the official-SDK suites when they are present (they start their own
# emulator on the SDKs' fixed ports, so they need root or
# CAP_NET_BIND_SERVICE for 443).
set -euo pipefail
cd "$(dirname "$0")/.."

go test -race -count=1 ./...

if [ -x e2e/sdk/run.sh ]; then
  e2e/sdk/run.sh
fi
