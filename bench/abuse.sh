#!/usr/bin/env bash
# What one hostile client costs the others (issue: credentials and limits). By hand
# only; the numbers go in docs/performance.md. Starts payhook (release) on a fresh
# Postgres database for each scenario and runs payhook-abuse against it:
#   slow-bodies  2,000 clients sending a body a byte a second, beside 200 valid events/s
#   flood        5,000 wrong-signature requests/s from one address, beside 200 valid/s
#   streams      10,000 open status streams, then 2,000 webhooks/s paying their payments
# SCENARIOS picks some ("flood streams"); RATE, SECS, CLIENTS, BAD_RATE, STREAMS,
# STREAM_RATE change the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

SCENARIOS=${SCENARIOS:-"slow-bodies flood streams"}
PGHOST=${PGHOST:-127.0.0.1}; PGUSER=${PGUSER:-postgres}; export PGHOST PGUSER
export PGOPTIONS="-c client_min_messages=warning"
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

cargo build --release --locked -p payhook-app -p payhook-loadgen --bins 2>&1 | tail -1
payhook="$target/release/payhook"; abuse="$target/release/payhook-abuse"

start() {  # scenario
  local url="postgres://$PGUSER@$PGHOST:5432/payhook_abuse"
  psql -qtA -d postgres -c "DROP DATABASE IF EXISTS payhook_abuse" -c "CREATE DATABASE payhook_abuse"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PAYHOOK__DATABASE__URL=$url "$payhook" migrate >/dev/null 2>&1
  env RUST_LOG=warn PAYHOOK__SERVER__BIND=127.0.0.1:$port PAYHOOK__DATABASE__URL=$url \
    PAYHOOK__PROVIDERS__STRIPE__ENABLED=true PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS=whsec_payhook_bench \
    PAYHOOK__LIMITS__STREAMS_TOTAL=20000 "$payhook" serve >"$work/$1.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  db=$url
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

for scenario in $SCENARIOS; do
  printf '\n== %s\n' "$scenario"
  start "$scenario"
  case $scenario in
    slow-bodies) "$abuse" --addr "127.0.0.1:$port" --rate "${RATE:-200}" --secs "${SECS:-10}" \
                   slow-bodies --clients "${CLIENTS:-2000}" ;;
    flood)       "$abuse" --addr "127.0.0.1:$port" --rate "${RATE:-200}" --secs "${SECS:-10}" \
                   flood --bad-rate "${BAD_RATE:-5000}" ;;
    streams)     "$abuse" --addr "127.0.0.1:$port" --rate "${STREAM_RATE:-2000}" --secs "${SECS:-5}" \
                   streams --streams "${STREAMS:-10000}" --database-url "$db" --pid "$pid" ;;
  esac || echo "(refused or lost valid events: see above)"
  stop
done
