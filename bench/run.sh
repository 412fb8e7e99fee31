#!/usr/bin/env bash
# `make bench`: micro-benchmarks, the database floor (pgbench), then payhook (release)
# under payhook-loadgen on Postgres and on SQLite, and one summary table. By hand only:
# it takes a few minutes and its numbers go in docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."

EVENTS=${EVENTS:-20000}
CONCURRENCY=${CONCURRENCY:-64}
FLOOR_SECONDS=${FLOOR_SECONDS:-15}
PGHOST=${PGHOST:-127.0.0.1}; PGUSER=${PGUSER:-postgres}; export PGHOST PGUSER
export PGOPTIONS="-c client_min_messages=warning"
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

say() { printf '\n== %s\n' "$*"; }

if [ "${SKIP_MICRO:-0}" != 1 ]; then
  say "micro-benchmarks (criterion)"
  cargo bench -p payhook-microbench --bench webhooks -- --noplot 2>&1 | grep -E '^[a-z].*|time:' | tee "$work/micro.txt"
fi

cargo build --release --locked -p payhook-app -p payhook-loadgen --bins 2>&1 | tail -1
payhook="$target/release/payhook"; loadgen="$target/release/payhook-loadgen"

say "the floor: pgbench, bench/floor.sql, $CONCURRENCY clients, ${FLOOR_SECONDS}s"
psql -qtA -d postgres -c "DROP DATABASE IF EXISTS payhook_bench" -c "CREATE DATABASE payhook_bench"
psql -qtA -d payhook_bench -c "ALTER DATABASE payhook_bench SET synchronous_commit = on" >/dev/null
psql -qtA -d payhook_bench -f bench/floor_setup.sql >/dev/null
pgbench -n -c "$CONCURRENCY" -j 2 -T "$FLOOR_SECONDS" -f bench/floor.sql payhook_bench 2>/dev/null | tee "$work/floor.txt" \
  | grep -E 'tps|latency average'
floor_tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$work/floor.txt" | head -1)

# The worker's batch size is payhook's default unless given.
if [ -n "${WORKER_BATCH_SIZE:-}" ]; then export PAYHOOK__WORKER__BATCH_SIZE=$WORKER_BATCH_SIZE; fi

run_payhook() {  # name database_url pool_size ('' = payhook's default for the store)
  local name=$1 url=$2 pool=$3 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PAYHOOK__DATABASE__URL=$url "$payhook" migrate >/dev/null 2>&1
  env RUST_LOG=warn PAYHOOK__SERVER__BIND=127.0.0.1:$port PAYHOOK__DATABASE__URL=$url \
    ${pool:+PAYHOOK__DATABASE__POOL_SIZE=$pool} PAYHOOK__WORKER__CONCURRENCY=${WORKER_CONCURRENCY:-8} \
    PAYHOOK__PROVIDERS__STRIPE__ENABLED=true PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS=whsec_payhook_bench \
    "$payhook" serve >"$work/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  say "payhook on $name: $EVENTS events at concurrency $CONCURRENCY"
  "$loadgen" --url "http://127.0.0.1:$port" --database-url "$url" --events "$EVENTS" \
    --concurrency "$CONCURRENCY" --secret whsec_payhook_bench --json | tee "$work/$name.json"
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  echo "{\"peak_rss_kib\": $rss}" > "$work/$name.rss.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

psql -qtA -d postgres -c "DROP DATABASE IF EXISTS payhook_bench" -c "CREATE DATABASE payhook_bench"
run_payhook postgres "postgres://$PGUSER@$PGHOST:5432/payhook_bench" "${POOL_SIZE:-32}"
[ "${SKIP_SQLITE:-0}" = 1 ] || run_payhook sqlite "sqlite://$work/bench.db" "${POOL_SIZE:-}"

say "summary ($(nproc) cores; server, database and load generator on one machine)"
python3 - "$work" "$floor_tps" <<'PY'
import json, sys, os
work, floor = sys.argv[1], float(sys.argv[2] or 0)
names = [n for n in ("postgres", "sqlite") if os.path.exists(os.path.join(work, n + ".json"))]
print(f"{'':<28}" + "".join(f"{n:>12}" for n in names))
runs = {n: json.load(open(os.path.join(work, n + ".json"))) for n in names}
rss = {n: json.load(open(os.path.join(work, n + ".rss.json")))["peak_rss_kib"] for n in names}
def row(label, f):
    print(f"{label:<28}" + "".join(f"{f(runs[n], n):>12}" for n in names))
print(f"{'floor (pgbench) tps':<28}{floor:>12.0f}{'':>12}")
row("ingest requests/s", lambda r, n: f"{r['requests_per_second']:.0f}")
row("ratio payhook / floor", lambda r, n: f"{r['requests_per_second'] / floor:.2f}x" if floor else "-")
row("ACK p50 ms", lambda r, n: f"{r['latency_ms']['p50']}")
row("ACK p99 ms", lambda r, n: f"{r['latency_ms']['p99']}")
row("ACK max ms", lambda r, n: f"{r['latency_ms']['max']}")
row("non-2xx", lambda r, n: f"{r['non_2xx']}")
row("drain after last (s)", lambda r, n: f"{r['drain_seconds_after_last_request']}")
row("processing events/s", lambda r, n: f"{r['processing_per_second']:.0f}")
row("lag p50 ms", lambda r, n: f"{r['lag_ms']['p50']}")
row("lag p99 ms", lambda r, n: f"{r['lag_ms']['p99']}")
row("peak RSS MiB", lambda r, n: f"{rss[n] / 1024:.1f}")
row("lost / duplicated", lambda r, n: f"{r['lost']} / {r['duplicated']}")
PY
