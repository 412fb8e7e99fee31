#!/usr/bin/env bash
# `make run`: the four fake provider APIs on 127.0.0.1:12111-12114, then payhook with
# config/dev.toml on 127.0.0.1:8080, in the foreground. Ctrl-C stops payhook
# gracefully, then the fakes. Usage: scripts/run.sh path/to/payhook path/to/payhook-fakes
set -euo pipefail
cd "$(dirname "$0")/.."

payhook=${1:?usage: scripts/run.sh path/to/payhook path/to/payhook-fakes}
fakes=${2:?usage: scripts/run.sh path/to/payhook path/to/payhook-fakes}
gateway=http://127.0.0.1:8080

fakes_pids=()
stop_fakes() { for pid in "${fakes_pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap stop_fakes EXIT

# The fakes call payhook back as the real providers would, signed with the secrets in
# config/dev.toml; each takes POST /_fake/pay/{provider_ref} to pay a payment.
fake() { "$fakes" "$@" & fakes_pids+=($!); }
fake stripe --port 12111 --key sk_test_payhook_fake \
  --callback-url "$gateway/webhooks/stripe" --callback-secret whsec_payhook_local_development_only
fake xendit --port 12112 --key sk_test_payhook_fake \
  --callback-url "$gateway/webhooks/xendit" --callback-secret xendit_local_development_only
fake qpay --port 12113 --client-id payhook-fake --client-secret payhook-fake-secret
fake junglepay --port 12114 --key sk_test_payhook_fake

cat <<'TXT'

  payhook on http://127.0.0.1:8080 (config/dev.toml, development only)
  merchant API key: dev_merchant_key_local_only   admin token: dev_admin_token_local_only
  fake providers:   stripe :12111  xendit :12112  qpay :12113  junglepay :12114
  Ctrl-C stops everything.

TXT
mkdir -p data
# Not exec: this script outlives payhook to stop the fakes. Ctrl-C reaches payhook
# (same process group), which drains and exits; then the trap stops the fakes.
"$payhook" --config config/dev.toml serve || status=$?
exit "${status:-0}"
