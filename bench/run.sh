#!/usr/bin/env bash
# `make bench`: micro-benchmarks, the database floor (pgbench), then payhook (release)
# under payhook-loadgen on Postgres and on SQLite, and one summary table. By hand only:
# it takes several minutes and its numbers go in docs/performance.md. ROUNDS (default 3)
# repeats the floor and payhook runs; the summary gives medians and ranges. KIND=mirror
# sends `customer.updated` events (the Stripe mirror only) instead of payments.
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
# PAYHOOK_BIN: measure another payhook binary (an older build, for an A/B pair).
payhook=${PAYHOOK_BIN:-$target/release/payhook}; loadgen="$target/release/payhook-loadgen"

# The machine's speed drifts (a third, from one quarter hour to the next, on the shared
# 2-core VMs measured here), so the floor and payhook are measured in pairs, ROUNDS times,
# and the summary gives each number's median and range, the ratio taken within each pair.
ROUNDS=${ROUNDS:-3}

floor() {  # round
  say "round $1: the floor: pgbench, bench/floor.sql, $CONCURRENCY clients, ${FLOOR_SECONDS}s"
  psql -qtA -d postgres -c "DROP DATABASE IF EXISTS payhook_bench" -c "CREATE DATABASE payhook_bench"
  psql -qtA -d payhook_bench -c "ALTER DATABASE payhook_bench SET synchronous_commit = on" >/dev/null
  psql -qtA -d payhook_bench -f bench/floor_setup.sql >/dev/null
  pgbench -n -c "$CONCURRENCY" -j 2 -T "$FLOOR_SECONDS" -f bench/floor.sql payhook_bench 2>/dev/null | tee "$work/floor.txt" \
    | grep -E 'tps|latency average'
  sed -nE 's/^tps = ([0-9.]+).*/{"tps": \1}/p' "$work/floor.txt" | head -1 > "$work/floor.$1.json"
}

# The worker's batch size is payhook's default unless given.
if [ -n "${WORKER_BATCH_SIZE:-}" ]; then export PAYHOOK__WORKER__BATCH_SIZE=$WORKER_BATCH_SIZE; fi

run_payhook() {  # name round database_url pool_size ('' = payhook's default for the store)
  local name=$1 round=$2 url=$3 pool=$4 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  PAYHOOK__DATABASE__URL=$url "$payhook" migrate >/dev/null 2>&1
  env RUST_LOG=warn PAYHOOK__SERVER__BIND=127.0.0.1:$port PAYHOOK__DATABASE__URL=$url \
    ${pool:+PAYHOOK__DATABASE__POOL_SIZE=$pool} PAYHOOK__WORKER__CONCURRENCY=${WORKER_CONCURRENCY:-8} \
    PAYHOOK__PROVIDERS__STRIPE__ENABLED=true PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS=whsec_payhook_bench \
    "$payhook" serve >"$work/$name.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  say "round $round: payhook on $name: $EVENTS events at concurrency $CONCURRENCY"
  "$loadgen" --url "http://127.0.0.1:$port" --database-url "$url" --events "$EVENTS" \
    --concurrency "$CONCURRENCY" --secret whsec_payhook_bench --kind "${KIND:-payment}" --json | tee "$work/$name.$round.json"
  local rss
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  echo "{\"peak_rss_kib\": $rss}" > "$work/$name.rss.$round.json"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

for round in $(seq 1 "$ROUNDS"); do
  floor "$round"
  psql -qtA -d postgres -c "DROP DATABASE IF EXISTS payhook_bench" -c "CREATE DATABASE payhook_bench"
  run_payhook postgres "$round" "postgres://$PGUSER@$PGHOST:5432/payhook_bench" "${POOL_SIZE:-32}"
  rm -f "$work"/bench.db*
  [ "${SKIP_SQLITE:-0}" = 1 ] || run_payhook sqlite "$round" "sqlite://$work/bench.db" "${POOL_SIZE:-}"
done

say "summary: median (min-max) of $ROUNDS rounds ($(nproc) cores; server, database and load generator on one machine)"
python3 - "$work" "$ROUNDS" <<'PY'
import json, sys, os, statistics
work, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    return [json.load(open(os.path.join(work, f"{name}.{r}.json"))) for r in range(1, rounds + 1)
            if os.path.exists(os.path.join(work, f"{name}.{r}.json"))]
floors = [f["tps"] for f in load("floor")]
names = [n for n in ("postgres", "sqlite") if load(n)]
runs = {n: load(n) for n in names}
rss = {n: load(n + ".rss") for n in names}
def cell(values, fmt):
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.median(values))} ({fmt(min(values))}-{fmt(max(values))})"
def row(label, f, fmt):
    print(f"{label:<26}" + "".join(f"{cell(f(n), fmt):>28}" for n in names))
print(f"{'':<26}" + "".join(f"{n:>28}" for n in names))
print(f"{'floor (pgbench) tps':<26}{cell(floors, lambda v: f'{v:.0f}'):>28}")
row("ingest requests/s", lambda n: [r["requests_per_second"] for r in runs[n]], lambda v: f"{v:.0f}")
# Each round's ratio is payhook against the floor measured just before it.
row("ratio payhook / floor", lambda n: [r["requests_per_second"] / f for r, f in zip(runs[n], floors) if f],
    lambda v: f"{v:.2f}x")
row("ACK p50 ms", lambda n: [r["latency_ms"]["p50"] for r in runs[n]], lambda v: f"{v:.1f}")
row("ACK p99 ms", lambda n: [r["latency_ms"]["p99"] for r in runs[n]], lambda v: f"{v:.1f}")
row("ACK max ms", lambda n: [r["latency_ms"]["max"] for r in runs[n]], lambda v: f"{v:.0f}")
row("non-2xx", lambda n: [r["non_2xx"] for r in runs[n]], lambda v: f"{v:.0f}")
row("drain after last (s)", lambda n: [r["drain_seconds_after_last_request"] for r in runs[n]], lambda v: f"{v:.2f}")
row("processing events/s", lambda n: [r["processing_per_second"] for r in runs[n]], lambda v: f"{v:.0f}")
row("lag p50 ms", lambda n: [r["lag_ms"]["p50"] for r in runs[n]], lambda v: f"{v:.0f}")
row("lag p99 ms", lambda n: [r["lag_ms"]["p99"] for r in runs[n]], lambda v: f"{v:.0f}")
row("peak RSS MiB", lambda n: [r["peak_rss_kib"] / 1024 for r in rss[n]], lambda v: f"{v:.1f}")
print(f"{'lost / duplicated, all rounds':<26}"
      + "".join(f"{sum(r['lost'] for r in runs[n])} / {sum(r['duplicated'] for r in runs[n])}".rjust(28) for n in names))
PY
