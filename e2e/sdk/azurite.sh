# Azurite for the file upload SDK tests; sourced by e2e/sdk/run.sh after
# lib.sh (not run on its own).
#
# The device SDKs upload to https://{hostName}/{container}/{blob}{sas}, so
# Azurite serves HTTPS, with a throw-away self-signed certificate for
# 127.0.0.1 and localhost made here with openssl. The emulator (Go) trusts it
# through SSL_CERT_FILE; the SDKs through NODE_EXTRA_CA_CERTS and
# REQUESTS_CA_BUNDLE, which azurite_trust points at a bundle of the
# emulator's CA and this certificate.
#
# Provides prepare_azurite, start_azurite WORK (before start_emulator: it
# exports IOTHUB_EMULATOR_STORAGE_CONNECTION_STRING for it),
# azurite_trust WORK (after start_emulator) and stop_azurite. Exports
# STORAGE_CONNECTION_STRING for the tests.

AZURITE_PORT=${AZURITE_PORT:-10000}
AZURITE_PID=""
# Azurite's well-known development account (public, like the emulator's keys).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

prepare_azurite() {
  command -v openssl >/dev/null || { echo "$(basename "$0"): openssl is required (file upload tests)" >&2; exit 2; }
  prepare_node_dir "$HERE/azurite"
}

start_azurite() {
  local work="$1" deadline
  mkdir -p "$work/azurite"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$work/azurite/key.pem" -out "$work/azurite/cert.pem" 2>/dev/null
  echo "== starting Azurite (blob) on https://127.0.0.1:$AZURITE_PORT"
  # In memory, from inside WORK so that nothing lands in the repository.
  # --loose: the storage library the Node device SDK pins sends headers
  # (x-ms-encryption-algorithm) that strict Azurite refuses.
  (cd "$work/azurite" && exec "$HERE/azurite/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$AZURITE_PORT" \
    --cert "$work/azurite/cert.pem" --key "$work/azurite/key.pem" --inMemoryPersistence \
    --disableTelemetry --silent --loose) >"$work/azurite.log" 2>&1 &
  AZURITE_PID=$!
  deadline=$((SECONDS + HEALTH_TIMEOUT))
  # Any HTTP answer (400 for a bare GET) means it is listening.
  until curl -s --max-time 2 -o /dev/null --cacert "$work/azurite/cert.pem" "https://127.0.0.1:$AZURITE_PORT/"; do
    if ! kill -0 "$AZURITE_PID" 2>/dev/null; then
      print_file "Azurite log" "$work/azurite.log"
      echo "$(basename "$0"): Azurite exited during start-up" >&2
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$(basename "$0"): Azurite did not answer within ${HEALTH_TIMEOUT}s" >&2
      exit 1
    fi
    sleep 0.2
  done
  STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=https;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY;BlobEndpoint=https://127.0.0.1:$AZURITE_PORT/$AZURITE_ACCOUNT;"
  export STORAGE_CONNECTION_STRING
  export IOTHUB_EMULATOR_STORAGE_CONNECTION_STRING="$STORAGE_CONNECTION_STRING"
  export SSL_CERT_FILE="$work/azurite/cert.pem"
}

# azurite_trust WORK: the SDKs trust both the emulator's CA and Azurite.
azurite_trust() {
  local work="$1"
  cat "$IOTHUB_CA_FILE" "$work/azurite/cert.pem" >"$work/trust.pem"
  export NODE_EXTRA_CA_CERTS="$work/trust.pem" REQUESTS_CA_BUNDLE="$work/trust.pem"
}

stop_azurite() {
  if [ -n "$AZURITE_PID" ] && kill -0 "$AZURITE_PID" 2>/dev/null; then
    kill "$AZURITE_PID" 2>/dev/null || true
    wait "$AZURITE_PID" 2>/dev/null || true
  fi
  AZURITE_PID=""
  unset SSL_CERT_FILE IOTHUB_EMULATOR_STORAGE_CONNECTION_STRING
}
