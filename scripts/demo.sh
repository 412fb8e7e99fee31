#!/usr/bin/env bash
# `make demo`: payhook on the embedded store with the four fake providers, one
# payment per provider driven through its lifecycle (a duplicate, a bad signature, an
# out-of-order event included), each payment's history printed; then one subscription
# per provider activated and renewed (Stripe's by Stripe's events; the others by
# payhook's scheduler, with payhook's clock moved a month on through the admin API's
# `POST /admin/clock`, which `admin.time_travel` allows); everything stopped.
# Offline: every process listens on 127.0.0.1. Exits non-zero if a payment does not
# end where it should. Usage: scripts/demo.sh path/to/payhook path/to/payhook-fakes
set -euo pipefail

payhook=${1:?usage: scripts/demo.sh path/to/payhook path/to/payhook-fakes}
fakes=${2:?usage: scripts/demo.sh path/to/payhook path/to/payhook-fakes}
command -v curl >/dev/null || { echo "demo: curl is needed" >&2; exit 1; }
command -v python3 >/dev/null || { echo "demo: python3 is needed (to read JSON)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

port=$(free_port); stripe=$(free_port); xendit=$(free_port); qpay=$(free_port); jungle=$(free_port)
gateway="http://127.0.0.1:$port"
auth="Authorization: Bearer demo_merchant_key_0123"

cat > "$work/demo.toml" <<EOF
[server]
bind = "127.0.0.1:$port"
[database]
url = "sqlite://$work/payhook.db"
[api]
keys = ["demo_merchant_key_0123"]
[admin]
token = "demo_admin_token_0123"
time_travel = true                # demos only: POST /admin/clock moves payhook's clock
[reconcile]
pending_after_secs = 2
interval_secs = 1
[worker]
poll_interval_ms = 100
backoff_base_ms = 200
backoff_max_ms = 1000
[providers.stripe]
enabled = true
webhook_secrets = ["whsec_demo_only"]
api_key = "sk_test_demo"
success_url = "https://shop.example/thanks"
api_base_url = "http://127.0.0.1:$stripe"
[providers.xendit]
enabled = true
callback_token = "xendit-demo-callback-token"
secret_key = "xnd_demo"
api_base_url = "http://127.0.0.1:$xendit"
[providers.qpay]
enabled = true
client_id = "demo"
client_secret = "demo-secret"
invoice_code = "DEMO_INVOICE"
api_base_url = "http://127.0.0.1:$qpay/v2"
callback_base_url = "$gateway"
[providers.junglepay]
enabled = true
secret_key = "jp_demo"
api_base_url = "http://127.0.0.1:$jungle/v1"
callback_base_url = "$gateway"
EOF

start() { "$@" >>"$work/processes.log" 2>&1 & pids+=($!); }
export RUST_LOG=warn
start "$fakes" stripe --port "$stripe" --key sk_test_demo \
  --callback-url "$gateway/webhooks/stripe" --callback-secret whsec_demo_only
start "$fakes" xendit --port "$xendit" --key xnd_demo \
  --callback-url "$gateway/webhooks/xendit" --callback-secret xendit-demo-callback-token
start "$fakes" qpay --port "$qpay" --client-id demo --client-secret demo-secret
start "$fakes" junglepay --port "$jungle" --key jp_demo
start "$payhook" --config "$work/demo.toml" serve

up() { curl -s -o /dev/null "$1"; }  # any HTTP answer: it is listening
for _ in $(seq 1 100); do
  if up "$gateway/healthz" && up "http://127.0.0.1:$stripe/" && up "http://127.0.0.1:$xendit/" \
     && up "http://127.0.0.1:$qpay/" && up "http://127.0.0.1:$jungle/"; then break; fi
  sleep 0.2
done
up "$gateway/healthz" || { echo "demo: payhook did not start"; cat "$work/processes.log"; exit 1; }
say "payhook on $gateway; fakes: stripe :$stripe, xendit :$xendit, qpay :$qpay, junglepay :$jungle"

create() {
  say "create a $1 payment"
  local answer
  answer=$(curl -s -X POST "$gateway/payments" -H "$auth" -H 'content-type: application/json' -d "$2")
  echo "$answer"
  id=$(json "d['id']" <<<"$answer"); ref=$(json "d['provider_ref']" <<<"$answer")
}
simulate() { echo "\$ payhook simulate $*"; "$payhook" --config "$work/demo.toml" simulate "$@"; }
fake() { echo "\$ curl -X POST $1"; curl -s -X POST "$1"; echo; }

create stripe '{"provider":"stripe","amount":2500,"currency":"USD","merchant_ref":"demo-stripe"}'
stripe_id=$id
fake "http://127.0.0.1:$stripe/_fake/pay/$ref"
simulate stripe charge.refunded --partial --payment "$stripe_id" --replay 2   # a dashboard refund: accepted, then duplicate
for _ in $(seq 1 100); do  # the dashboard refund applied first
  [ "$(curl -s -H "$auth" "$gateway/payments/$stripe_id" | json "d['status']")" = partially_refunded ] && break
  sleep 0.1
done
echo "# the merchant refunds the rest through payhook; Stripe settles it a moment later"
echo "\$ curl -X POST $gateway/payments/$stripe_id/refunds -d '{}'"
refund=$(curl -s -X POST "$gateway/payments/$stripe_id/refunds" -H "$auth" -H 'content-type: application/json' -d '{}')
echo "$refund" | json "'refund %s of %s: %s' % (d['id'], d['amount'], d['status'])"
fake "http://127.0.0.1:$stripe/_fake/refunds/$(json "d['provider_ref']" <<<"$refund")/succeeded" >/dev/null
simulate stripe payment_intent.payment_failed --payment "$stripe_id"          # out of order: stale
simulate stripe payment_intent.succeeded --payment "$stripe_id" --bad-signature || true

create xendit '{"provider":"xendit","amount":15000000,"currency":"IDR","merchant_ref":"demo-xendit"}'
xendit_id=$id
fake "http://127.0.0.1:$xendit/_fake/pay/$ref"
simulate xendit expired --payment "$xendit_id"                                # out of order: stale
simulate xendit paid --payment "$xendit_id" --bad-signature || true

create xendit '{"provider":"xendit","amount":7500000,"currency":"IDR","merchant_ref":"demo-lost-callback"}'
lost_id=$id
echo "# paid at Xendit, but its callback is lost: payhook asks Xendit about it a moment later"
fake "http://127.0.0.1:$xendit/_fake/pay/$ref?drop_callback=true"

create xendit '{"provider":"xendit","amount":5000000,"currency":"IDR","merchant_ref":"demo-cancel"}'
cancel_id=$id
echo "# the order is called off before anyone pays: payhook expires the invoice at Xendit"
echo "\$ curl -X POST $gateway/payments/$cancel_id/cancel"
curl -s -X POST "$gateway/payments/$cancel_id/cancel" -H "$auth" | json "'status: ' + d['status']"
fake "http://127.0.0.1:$xendit/_fake/pay/$ref"                               # Xendit no longer takes it

create qpay '{"provider":"qpay","amount":5000000,"currency":"MNT","description":"demo-qpay"}'
qpay_id=$id; qpay_ref=$ref
fake "http://127.0.0.1:$qpay/_fake/pay/$qpay_ref"
token=$(curl -s "http://127.0.0.1:$qpay/_fake/callback-url/$qpay_ref" | json "d['callback_url'].split('token=')[1]")
simulate qpay paid --payment "$qpay_id" --token "$token" --replay 2          # QPay calls twice: one event
simulate qpay paid --payment "$qpay_id" --bad-signature || true

create junglepay '{"provider":"junglepay","amount":10000,"currency":"BRL","customer_email":"ana@example.com.br","metadata":{"customer_name":"Ana","customer_document":"12345678910"}}'
jungle_id=$id; jungle_ref=$ref
token=$(curl -s "http://127.0.0.1:$jungle/_fake/callback-url/$jungle_ref" | json "d['callback_url'].split('token=')[1]")
simulate junglepay refunded --payment "$jungle_id" --token "$token"           # a forged claim: the API disagrees
fake "http://127.0.0.1:$jungle/_fake/pay/$jungle_ref"
fake "http://127.0.0.1:$jungle/_fake/status/$jungle_ref/chargedback"

say "the Stripe mirror: a connected account's customer and invoice, newest first"
simulate stripe customer.created --account acct_demo --object cus_demo
simulate stripe invoice.created --account acct_demo --object in_demo         # draft
simulate stripe invoice.paid --account acct_demo --object in_demo            # paid: later, or the same second and a later status
mirrored() {  # type id: the mirrored object's status, as the merchant API reads it
  curl -s -H "$auth" "$gateway/stripe/objects/$1/$2?account=acct_demo" | json "d['object'].get('status', d['object']['object'])"
}
for _ in $(seq 1 100); do [ "$(mirrored invoice in_demo 2>/dev/null)" = paid ] && break; sleep 0.1; done
echo "\$ curl $gateway/stripe/objects/invoice/in_demo?account=acct_demo"
echo "invoice in_demo: $(mirrored invoice in_demo)"

# Wait for the worker, then show where each payment ended and how it got there.
expect() {  # id status dispute
  for _ in $(seq 1 100); do
    got=$(curl -s -H "$auth" "$gateway/payments/$1" | json "f\"{d['status']} {d['dispute_status']}\"")
    [ "$got" = "$2 $3" ] && return 0
    sleep 0.1
  done
  echo "demo: payment $1 is '$got', expected '$2 $3'" >&2
  return 1
}
cat > "$work/history.py" <<'PY'
import json, sys
p = json.load(sys.stdin)
print("status %s, paid %s, refunded %s %s, dispute %s" % (
    p["status"], p["paid_amount"], p["refunded_amount"], p["currency"], p["dispute_status"]))
for h in p["history"]:
    mark = "applied" if h["applied"] else "NOT applied"
    print("  %s  %18s -> %-18s %-11s %s" % (h["at"][:19], h["from_status"], h["to_status"], mark, h["reason"]))
for r in p.get("refunds", []):
    print("  refund %s %s: %s (origin %s)" % (r["amount"], r["currency"], r["status"], r["origin"]))
for d in p.get("disputes", []):
    print("  dispute %s: %s" % (d["provider_ref"], d["status"]))
PY
failed=0
expect "$stripe_id" refunded None || failed=1
expect "$xendit_id" paid None || failed=1
expect "$lost_id" paid None || failed=1
expect "$cancel_id" canceled None || failed=1
expect "$qpay_id" paid None || failed=1
expect "$jungle_id" paid lost || failed=1
[ "$(mirrored invoice in_demo)" = paid ] || { echo "demo: the mirrored invoice is not paid" >&2; failed=1; }
[ "$(mirrored customer cus_demo)" = customer ] || { echo "demo: the customer was not mirrored" >&2; failed=1; }

say "subscriptions: a monthly plan per currency, one subscription per provider"
admin="Authorization: Bearer demo_admin_token_0123"
post() { curl -s -X POST "$gateway$1" -H "$auth" -H 'content-type: application/json' -d "$2"; }
sub_field() { curl -s -H "$auth" "$gateway/subscriptions/$1" | json "$2"; }
wait_sub() {  # id python-condition-on-d what
  for _ in $(seq 1 100); do
    [ "$(curl -s -H "$auth" "$gateway/subscriptions/$1" | json "$2")" = True ] && return 0
    sleep 0.1
  done
  echo "demo: subscription $1 never $3" >&2; return 1
}
for plan in "pro-usd USD 1500" "pro-idr IDR 9900000" "pro-mnt MNT 2500000" "pro-brl BRL 4900"; do
  set -- $plan
  post /plans "{\"code\":\"$1\",\"name\":\"Pro\",\"amount\":$3,\"currency\":\"$2\",\"interval\":\"month\"}" \
    | json "'plan %s: %s %s a month' % (d['code'], d['amount'], d['currency'])"
done

say "a Stripe subscription: Checkout in subscription mode, then Stripe's events"
echo "\$ curl -X POST $gateway/subscriptions -d '{\"plan\":\"pro-usd\",\"provider\":\"stripe\",\"customer_ref\":\"user-1\"}'"
answer=$(post /subscriptions '{"plan":"pro-usd","provider":"stripe","customer_ref":"user-1"}')
echo "$answer" | json "'subscription %s: %s, pay at %s' % (d['id'], d['status'], d['checkout_url'])"
stripe_sub=$(json "d['id']" <<<"$answer")
fake "http://127.0.0.1:$stripe/_fake/pay/$(json "d['checkout_url'].rsplit('/',1)[1]" <<<"$answer")" >/dev/null
wait_sub "$stripe_sub" "d['status'] == 'active' and d['provider_ref'] is not None" activated || failed=1
stripe_ref=$(sub_field "$stripe_sub" "d['provider_ref']")
echo "# a month later Stripe charges the next period"
fake "http://127.0.0.1:$stripe/_fake/subscriptions/$stripe_ref/renew" >/dev/null
wait_sub "$stripe_sub" "len(d['payments']) == 2 and d['current_period_start'] != d['created_at']" renewed || failed=1

# Xendit, QPay, JunglePay: payhook asks for each period's payment itself.
pay_sub() {  # provider payment-id provider-ref: the customer pays
  case "$1" in
    xendit) fake "http://127.0.0.1:$xendit/_fake/pay/$3" >/dev/null ;;
    qpay) fake "http://127.0.0.1:$qpay/_fake/pay/$3" >/dev/null
          tok=$(curl -s "http://127.0.0.1:$qpay/_fake/callback-url/$3" | json "d['callback_url'].split('token=')[1]")
          simulate qpay paid --payment "$2" --token "$tok" >/dev/null ;;
    junglepay) fake "http://127.0.0.1:$jungle/_fake/pay/$3" >/dev/null ;;
  esac
}
subs=()
for spec in "xendit pro-idr {}" \
            "qpay pro-mnt {}" \
            'junglepay pro-brl {"customer_name":"Ana","customer_document":"12345678910"}'; do
  set -- $spec
  provider=$1; plan=$2; meta=$3
  say "a $provider subscription: payhook runs the schedule"
  answer=$(post /subscriptions "{\"plan\":\"$plan\",\"provider\":\"$provider\",\"customer_ref\":\"user-$provider\",\"customer_email\":\"ana@example.com.br\",\"metadata\":$meta}")
  echo "$answer" | json "'subscription %s: %s; first payment %s at %s' % (d['id'], d['status'], d['payment']['id'], d['payment']['checkout_url'] or d['payment']['qr_text'][:40])"
  sub=$(json "d['id']" <<<"$answer")
  pay_sub "$provider" "$(json "d['payment']['id']" <<<"$answer")" "$(json "d['payment']['provider_ref']" <<<"$answer")"
  wait_sub "$sub" "d['status'] == 'active'" activated || failed=1
  subs+=("$provider:$sub")
done
say "payhook's clock moves to three days before the periods end; the scheduler asks for the renewals"
end=$(sub_field "${subs[0]#*:}" "d['current_period_end']")
now=$(curl -s -X POST "$gateway/admin/clock" -H "$admin" -H 'content-type: application/json' -d '{"advance_secs":0}' | json "d['now']")
ahead=$(python3 -c "from datetime import datetime as D; f=lambda s: D.fromisoformat(s.replace('Z','+00:00')); print(int((f('$end')-f('$now')).total_seconds()) - 71*3600)")
echo "\$ curl -X POST $gateway/admin/clock -d '{\"advance_secs\":$ahead}'"
curl -s -X POST "$gateway/admin/clock" -H "$admin" -H 'content-type: application/json' -d "{\"advance_secs\":$ahead}"; echo
echo "\$ curl -X POST $gateway/admin/subscriptions/run"
curl -s -X POST "$gateway/admin/subscriptions/run" -H "$admin"; echo
for entry in "${subs[@]}"; do
  provider=${entry%%:*}; sub=${entry#*:}
  renewal=$(curl -s -H "$auth" "$gateway/subscriptions/$sub" | json "d['payments'][-1]['id'] if len(d['payments']) == 2 else ''")
  [ -n "$renewal" ] || { echo "demo: no renewal asked for the $provider subscription" >&2; failed=1; continue; }
  ref=$(curl -s -H "$auth" "$gateway/payments/$renewal" | json "d['provider_ref']")
  echo "# $provider: subscription.renewal_due for payment $renewal; the customer pays early"
  pay_sub "$provider" "$renewal" "$ref"
  wait_sub "$sub" "d['current_period_start'] == '$(sub_field "$sub" "d['current_period_end']")' or len([h for h in d['history'] if h['reason'].startswith('payment ') and h['applied']]) == 2" renewed || failed=1
done
cat > "$work/subscription.py" <<'PY'
import json, sys
s = json.load(sys.stdin)
print("%s %s: %s (access %s), period %s .. %s, %d payments" % (
    s["provider"], s["plan"], s["status"], s["access"], (s["current_period_start"] or "")[:19],
    (s["current_period_end"] or "")[:19], len(s["payments"])))
for h in s["history"]:
    mark = "applied" if h["applied"] else "NOT applied"
    print("  %s  %10s -> %-10s %-11s %s" % (h["at"][:19], h["from_status"], h["to_status"], mark, h["reason"]))
PY
for entry in "stripe:$stripe_sub" "${subs[@]}"; do
  sub=${entry#*:}
  say "subscription $sub"
  curl -s -H "$auth" "$gateway/subscriptions/$sub" | python3 "$work/subscription.py"
  [ "$(sub_field "$sub" "d['status']")" = active ] || { echo "demo: subscription $sub is not active" >&2; failed=1; }
done

for pair in "stripe $stripe_id" "xendit $xendit_id" "xendit-lost-callback $lost_id" "xendit-canceled $cancel_id" "qpay $qpay_id" "junglepay $jungle_id"; do
  set -- $pair
  say "$1 payment $2: history"
  curl -s -H "$auth" "$gateway/payments/$2" | python3 "$work/history.py"
done

say "webhook log: every request, with its outcome"
python3 - "$work/payhook.db" <<'EOF'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "SELECT provider, method, http_status, processing_result FROM webhook_logs ORDER BY id").fetchall()
for provider, method, status, result in rows:
    print(f"  {provider:<10} {method:<5} {status}  {result}")
EOF

if [ "$failed" = 0 ]; then say "demo: every payment ended where it should"; else say "demo: FAILED"; fi
exit "$failed"
