#!/usr/bin/env bash
# Where the time goes on the ingest path: runs payhook (release) on Postgres under
# payhook-loadgen and reports the CPU seconds spent by payhook, by Postgres and by
# the load generator, then payhook's hottest symbols (perf, when installed).
# By hand, after `make bench` has built the release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-20000}; CONCURRENCY=${CONCURRENCY:-64}
target=${CARGO_TARGET_DIR:-target}
payhook="$target/release/payhook"; loadgen="$target/release/payhook-loadgen"
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres} PGOPTIONS="-c client_min_messages=warning"
url="postgres://$PGUSER@$PGHOST:5432/payhook_profile"
psql -qtA -d postgres -c "DROP DATABASE IF EXISTS payhook_profile" -c "CREATE DATABASE payhook_profile"
PAYHOOK__DATABASE__URL=$url "$payhook" migrate >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUST_LOG=warn PAYHOOK__SERVER__BIND=127.0.0.1:$port PAYHOOK__DATABASE__URL=$url PAYHOOK__DATABASE__POOL_SIZE=32 \
  PAYHOOK__PROVIDERS__STRIPE__ENABLED=true PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS=whsec_payhook_bench \
  "$payhook" serve >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done

# CPU seconds (user + system) of a set of processes, from /proc.
cpu() { local t=0; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
postgres_pids() { pgrep -u postgres postgres | tr '\n' ' '; }
tick=$(getconf CLK_TCK)
pg_before=$(cpu $(postgres_pids)); ph_before=$(cpu "$pid")
if command -v perf >/dev/null; then
  perf record -F 499 -g -p "$pid" -o /tmp/payhook.perf.data -- sleep 600 >/dev/null 2>&1 &
  perf_pid=$!
fi
start=$(date +%s.%N)
"$loadgen" --url "http://127.0.0.1:$port" --database-url "$url" --events "$EVENTS" --concurrency "$CONCURRENCY" \
  --secret whsec_payhook_bench > /tmp/payhook.loadgen.txt &
lg=$!
lg_cpu=0
while kill -0 "$lg" 2>/dev/null; do lg_cpu=$(cpu "$lg"); sleep 0.2; done
wait "$lg" || true
wall=$(python3 -c "import time; print(round(time.time() - $start, 1))")
pg_after=$(cpu $(postgres_pids)); ph_after=$(cpu "$pid")
[ -n "${perf_pid:-}" ] && kill -INT "$perf_pid" && wait "$perf_pid" 2>/dev/null || true
cat /tmp/payhook.loadgen.txt
echo
echo "wall ${wall}s on $(nproc) cores; CPU seconds: payhook $(( (ph_after - ph_before) / tick )), postgres $(( (pg_after - pg_before) / tick )), loadgen ≥ $(( lg_cpu / tick ))"
if [ -n "${perf_pid:-}" ]; then
  echo; echo "payhook's hottest symbols (perf, self time):"
  perf report -i /tmp/payhook.perf.data --no-children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -25
fi
