//! Realistic payloads for the micro-benchmarks in `benches/` (`make bench`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::json;

/// A `payment_intent.succeeded` event padded with realistic fields to about 2 KB,
/// the size of a typical Stripe delivery.
pub fn stripe_event_2kb() -> Vec<u8> {
    let mut body = serde_json::to_vec(&json!({
        "id": "evt_3QbenchAAAAAAAAAAAAAAAA", "object": "event", "api_version": "2024-06-20",
        "created": 1_800_000_000, "livemode": false, "pending_webhooks": 1, "type": "payment_intent.succeeded",
        "request": { "id": "req_benchAAAAAAAA", "idempotency_key": "3f0c3c7e-8d1a-4f5e-9b1d-2a7c6e5d4f3b" },
        "data": { "object": {
            "id": "pi_3QbenchAAAAAAAAAAAAAAAA", "object": "payment_intent", "amount": 12_500,
            "amount_capturable": 0, "amount_received": 12_500, "capture_method": "automatic_async",
            "client_secret": "pi_3Qbench_secret_AAAAAAAAAAAAAAAAAAAA", "confirmation_method": "automatic",
            "created": 1_800_000_000, "currency": "usd", "customer": "cus_benchAAAAAAAA",
            "description": "Order 2024-11-0042: 3 items", "latest_charge": "ch_3QbenchAAAAAAAAAAAAAAAA",
            "livemode": false, "metadata": { "order_id": "2024-11-0042", "payhook_payment_id": "0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11" },
            "payment_method": "pm_1QbenchAAAAAAAAAAAAAAAA",
            "payment_method_options": { "card": { "installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic" } },
            "payment_method_types": ["card"], "receipt_email": "customer@example.com", "status": "succeeded",
            "shipping": { "address": { "city": "Berlin", "country": "DE", "line1": "Torstraße 1", "line2": null, "postal_code": "10119", "state": null }, "name": "Ada Lovelace", "phone": null },
            "automatic_payment_methods": { "allow_redirects": "always", "enabled": true },
        } },
    }))
    .unwrap();
    // Pad with a metadata-like field to reach ~2 KB, as larger real events do.
    let pad = 2048usize.saturating_sub(body.len() + 16);
    body.truncate(body.len() - 1);
    body.extend_from_slice(format!(",\"zz_pad\":\"{}\"}}", "x".repeat(pad)).as_bytes());
    body
}

/// A Xendit invoice callback for a payhook payment.
pub fn xendit_callback() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": "65a1f0c2e4b0d1a2b3c4d5e6", "external_id": "0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11",
        "user_id": "5f1e2d3c4b5a69788796a5b4", "status": "PAID", "amount": 150000, "paid_amount": 150000,
        "currency": "IDR", "payment_method": "BANK_TRANSFER", "payment_channel": "BCA",
        "paid_at": "2026-11-20T08:15:30.123Z", "created": "2026-11-20T08:00:00.000Z",
        "updated": "2026-11-20T08:15:31.000Z", "payer_email": "budi@example.co.id", "description": "Order 77",
        "metadata": { "app": "payhook" },
    }))
    .unwrap()
}

/// A JunglePay `transaction` postback (the envelope with the transaction in `data`).
pub fn junglepay_postback() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": 686401, "type": "transaction", "objectId": "282", "url": "https://pay.example.com.br/webhooks/junglepay",
        "data": { "id": 282, "amount": 10000, "refundedAmount": 0, "installments": 1, "paymentMethod": "pix",
                  "status": "paid", "secureId": "a4594817-be48-4a23-81aa-4bb01f95fe78",
                  "createdAt": "2026-11-22T09:54:22.000Z", "updatedAt": "2026-11-22T09:55:01.000Z",
                  "customer": { "id": 1, "name": "Ana", "email": "ana@example.com.br",
                                "document": { "number": "12345678910", "type": "cpf" } } },
    }))
    .unwrap()
}

/// The query of a per-payment callback URL (QPay, JunglePay).
pub const CALLBACK_QUERY: &str =
    "payment_id=0f7d3a8e-5a4b-4f0e-9d7c-2b1f6e3a9c11&token=00112233445566778899aabbccddeeff";
