#!/usr/bin/env bash
# Retention under load: 1,000,000 forensic rows older than retention.forensic_days are
# purged by payhook serve's retention job while payhook-loadgen sends the bench's
# webhooks. Prints ACK latency per load round: before (retention off), during the
# purge, and after it. Postgres; release build; about 10 minutes.
#   OLD_ROWS=1000000 EVENTS=20000 CONCURRENCY=64 bench/retention.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OLD_ROWS=${OLD_ROWS:-1000000}
EVENTS=${EVENTS:-20000}
CONCURRENCY=${CONCURRENCY:-64}
BASELINE_ROUNDS=${BASELINE_ROUNDS:-2}
PGHOST=${PGHOST:-127.0.0.1}; PGUSER=${PGUSER:-postgres}; export PGHOST PGUSER
export PGOPTIONS="-c client_min_messages=warning"
db=payhook_retention
url="postgres://$PGUSER@$PGHOST:5432/$db"
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

cargo build --release --locked -p payhook-app -p payhook-loadgen --bins 2>&1 | tail -1
payhook="$target/release/payhook"; loadgen="$target/release/payhook-loadgen"

psql -qtA -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
PAYHOOK__DATABASE__URL=$url "$payhook" migrate >/dev/null 2>&1
echo "== seeding $OLD_ROWS forensic rows received 200 days ago (1.6 KB bodies)"
time psql -qtA -d "$db" -c "
  INSERT INTO webhook_logs (provider, received_at, method, path, query, headers, raw_body, remote_addr,
                            event_id, event_type, http_status, processing_result, completed_at)
  SELECT 'stripe', now() - interval '200 days' + g * interval '1 millisecond', 'POST', '/webhooks/stripe', '',
         '[[\"content-type\",\"application/json\"]]'::jsonb,
         convert_to(repeat('{\"id\":\"evt_old_' || g || '\",\"object\":\"event\"}', 40), 'UTF8'),
         '127.0.0.1:5555', 'evt_old_' || g, 'payment_intent.succeeded', 200, 'accepted',
         now() - interval '200 days'
  FROM generate_series(1, $OLD_ROWS) g" -c "VACUUM ANALYZE webhook_logs"

old() { psql -qtA -d "$db" -c "SELECT count(*) FROM webhook_logs WHERE received_at < now() - interval '90 days'"; }

start() {  # forensic_days; sets pid and base
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  env RUST_LOG=warn,payhook_app::retention=info PAYHOOK__SERVER__BIND=127.0.0.1:$port PAYHOOK__DATABASE__URL=$url \
    PAYHOOK__DATABASE__POOL_SIZE=32 PAYHOOK__WORKER__CONCURRENCY=8 \
    PAYHOOK__RETENTION__FORENSIC_DAYS="$1" \
    PAYHOOK__PROVIDERS__STRIPE__ENABLED=true PAYHOOK__PROVIDERS__STRIPE__WEBHOOK_SECRETS=whsec_payhook_bench \
    "$payhook" serve >>"$work/serve.log" 2>&1 &
  pid=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 100); do curl -s -o /dev/null "$base/healthz" && break; sleep 0.1; done
}

round() {  # phase base_url
  local before after
  before=$(old)
  "$loadgen" --url "$2" --database-url "$url" --events "$EVENTS" --concurrency "$CONCURRENCY" \
    --secret whsec_payhook_bench --json > "$work/round.json"
  after=$(old)
  python3 - "$1" "$before" "$after" "$work/round.json" <<'PY'
import json, sys
phase, before, after, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
r = json.load(open(path))
l = r["latency_ms"]
print(f"{phase:<8} req/s {r['requests_per_second']:>6.0f}  ACK p50 {l['p50']:>5.1f}  p99 {l['p99']:>6.1f}  max {l['max']:>6.0f} ms"
      f"  non-2xx {r['non_2xx']}  lost {r['lost']}  old rows {before} -> {after}")
PY
}

echo "== retention off (forensic_days = 0): $BASELINE_ROUNDS rounds"
start 0
for _ in $(seq 1 "$BASELINE_ROUNDS"); do round before "$base"; done
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

echo "== retention on (forensic_days = 90): the start-up pass purges while the load runs"
start 90
while [ "$(old)" -gt 0 ]; do round during "$base"; done
for _ in $(seq 1 "$BASELINE_ROUNDS"); do round after "$base"; done
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
echo "== the retention job's own account (elapsed_ms: the whole pass)"
grep 'purged records' "$work/serve.log" | sed -E 's/\x1b\[[0-9;]*m//g'
