//! Diesel table definitions, matching migrations/postgres.

diesel::table! {
    webhook_logs (id) {
        id -> Int8,
        provider -> Text,
        received_at -> Timestamptz,
        method -> Text,
        path -> Text,
        query -> Text,
        headers -> Jsonb,
        raw_body -> Bytea,
        remote_addr -> Nullable<Text>,
        event_id -> Nullable<Text>,
        event_type -> Nullable<Text>,
        external_id -> Nullable<Text>,
        provider_status -> Nullable<Text>,
        amount -> Nullable<Int8>,
        http_status -> Nullable<Int4>,
        processing_result -> Nullable<Text>,
        processing_error -> Nullable<Text>,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_events (id) {
        id -> Int8,
        provider -> Text,
        event_id -> Text,
        event_type -> Text,
        payment_ref -> Nullable<Text>,
        payload -> Jsonb,
        status -> Text,
        result -> Nullable<Text>,
        attempts -> Int4,
        next_attempt_at -> Timestamptz,
        locked_until -> Nullable<Timestamptz>,
        last_error -> Nullable<Text>,
        received_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
        log_id -> Nullable<Int8>,
    }
}

diesel::table! {
    payments (id) {
        id -> Uuid,
        provider -> Text,
        provider_ref -> Nullable<Text>,
        merchant_ref -> Nullable<Text>,
        amount -> Int8,
        currency -> Text,
        status -> Text,
        paid_amount -> Int8,
        refunded_amount -> Int8,
        dispute_status -> Nullable<Text>,
        checkout_url -> Nullable<Text>,
        qr_text -> Nullable<Text>,
        callback_token_hash -> Nullable<Text>,
        client_token_hash -> Nullable<Text>,
        metadata -> Jsonb,
        customer_email -> Nullable<Text>,
        description -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        paid_at -> Nullable<Timestamptz>,
        expires_at -> Nullable<Timestamptz>,
        version -> Int8,
    }
}

diesel::table! {
    payment_status_history (id) {
        id -> Int8,
        payment_id -> Uuid,
        from_status -> Text,
        to_status -> Text,
        applied -> Bool,
        event_id -> Nullable<Text>,
        reason -> Text,
        at -> Timestamptz,
    }
}

diesel::table! {
    outbox (id) {
        id -> Int8,
        topic -> Text,
        payload -> Jsonb,
        created_at -> Timestamptz,
        published_at -> Nullable<Timestamptz>,
        attempts -> Int4,
    }
}

diesel::joinable!(payment_status_history -> payments (payment_id));
diesel::joinable!(webhook_events -> webhook_logs (log_id));
diesel::allow_tables_to_appear_in_same_query!(
    webhook_logs,
    webhook_events,
    payments,
    payment_status_history,
    outbox
);
