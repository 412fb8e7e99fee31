//! The tables of ARCHITECTURE.md §4, in SQL types both backends map (see `types`).
//! Must match `migrations/postgres` and `migrations/sqlite`.

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Bytes, Instant, Json};

    webhook_logs (id) {
        id -> BigInt,
        provider -> Text,
        received_at -> Instant,
        method -> Text,
        path -> Text,
        query -> Text,
        headers -> Json,
        raw_body -> Bytes,
        remote_addr -> Nullable<Text>,
        event_id -> Nullable<Text>,
        event_type -> Nullable<Text>,
        external_id -> Nullable<Text>,
        provider_status -> Nullable<Text>,
        amount -> Nullable<BigInt>,
        http_status -> Nullable<Integer>,
        processing_result -> Nullable<Text>,
        processing_error -> Nullable<Text>,
        completed_at -> Nullable<Instant>,
        body_length -> Nullable<BigInt>,
        body_sha256 -> Nullable<Text>,
        refused_count -> Nullable<BigInt>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Instant, Json};

    webhook_events (id) {
        id -> BigInt,
        provider -> Text,
        event_id -> Text,
        event_type -> Text,
        payment_ref -> Nullable<Text>,
        payload -> Json,
        status -> Text,
        result -> Nullable<Text>,
        attempts -> Integer,
        next_attempt_at -> Instant,
        locked_until -> Nullable<Instant>,
        last_error -> Nullable<Text>,
        received_at -> Instant,
        processed_at -> Nullable<Instant>,
        log_id -> Nullable<BigInt>,
        account -> Text,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Instant, Json, Uuid};

    payments (id) {
        id -> Uuid,
        provider -> Text,
        provider_ref -> Nullable<Text>,
        merchant_ref -> Nullable<Text>,
        amount -> BigInt,
        currency -> Text,
        status -> Text,
        paid_amount -> BigInt,
        refunded_amount -> BigInt,
        dispute_status -> Nullable<Text>,
        checkout_url -> Nullable<Text>,
        qr_text -> Nullable<Text>,
        callback_token_hash -> Nullable<Text>,
        client_token_hash -> Nullable<Text>,
        metadata -> Json,
        customer_email -> Nullable<Text>,
        description -> Nullable<Text>,
        created_at -> Instant,
        updated_at -> Instant,
        paid_at -> Nullable<Instant>,
        expires_at -> Nullable<Instant>,
        version -> BigInt,
        idempotency_key -> Nullable<Text>,
        request_fingerprint -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        checkout_extras -> Nullable<Json>,
        next_reconcile_at -> Nullable<Instant>,
        reconcile_checks -> Integer,
        account -> Text,
        subscription_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Instant, Uuid};

    payment_status_history (id) {
        id -> BigInt,
        payment_id -> Uuid,
        from_status -> Text,
        to_status -> Text,
        applied -> Bool,
        event_id -> Nullable<Text>,
        reason -> Text,
        at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Instant, Json};

    outbox (id) {
        id -> BigInt,
        topic -> Text,
        payload -> Json,
        created_at -> Instant,
        published_at -> Nullable<Instant>,
        attempts -> Integer,
        next_attempt_at -> Instant,
        locked_until -> Nullable<Instant>,
        last_error -> Nullable<Text>,
        dead_at -> Nullable<Instant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::Uuid;

    payment_aliases (provider, alias) {
        provider -> Text,
        alias -> Text,
        payment_id -> Uuid,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Instant, Uuid};

    disputes (id) {
        id -> Uuid,
        payment_id -> Uuid,
        provider_ref -> Text,
        amount -> Nullable<BigInt>,
        currency -> Nullable<Text>,
        reason -> Nullable<Text>,
        status -> Text,
        evidence_due_by -> Nullable<Instant>,
        created_at -> Instant,
        updated_at -> Instant,
        closed_at -> Nullable<Instant>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Instant, Uuid};

    refunds (id) {
        id -> Uuid,
        payment_id -> Uuid,
        provider_ref -> Nullable<Text>,
        amount -> BigInt,
        currency -> Text,
        reason -> Nullable<Text>,
        status -> Text,
        origin -> Text,
        idempotency_key -> Nullable<Text>,
        failure_reason -> Nullable<Text>,
        created_at -> Instant,
        updated_at -> Instant,
        next_check_at -> Nullable<Instant>,
        checks -> Integer,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::Instant;

    stripe_objects (account, object_type, object_id) {
        account -> Text,
        object_type -> Text,
        object_id -> Text,
        data -> Text,
        livemode -> Bool,
        deleted -> Bool,
        customer -> Nullable<Text>,
        status_rank -> Integer,
        source_event_id -> Text,
        source_event_created -> BigInt,
        updated_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::Instant;

    stripe_backfills (account, object_type, since) {
        account -> Text,
        object_type -> Text,
        since -> BigInt,
        starting_after -> Nullable<Text>,
        stored -> BigInt,
        done -> Bool,
        updated_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Instant, Uuid};

    plans (id) {
        id -> Uuid,
        code -> Text,
        name -> Text,
        amount -> BigInt,
        currency -> Text,
        interval -> Text,
        interval_count -> Integer,
        trial_days -> Integer,
        stripe_price_id -> Nullable<Text>,
        active -> Bool,
        created_at -> Instant,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Instant, Json, Uuid};

    subscriptions (id) {
        id -> Uuid,
        plan_id -> Uuid,
        provider -> Text,
        account -> Text,
        provider_ref -> Nullable<Text>,
        customer_ref -> Text,
        customer_email -> Nullable<Text>,
        status -> Text,
        anchor -> Nullable<Instant>,
        periods -> Integer,
        current_period_start -> Nullable<Instant>,
        current_period_end -> Nullable<Instant>,
        cancel_at_period_end -> Bool,
        canceled_at -> Nullable<Instant>,
        metadata -> Json,
        idempotency_key -> Nullable<Text>,
        next_due_at -> Nullable<Instant>,
        created_at -> Instant,
        updated_at -> Instant,
        version -> BigInt,
        request_fingerprint -> Nullable<Text>,
        checkout_url -> Nullable<Text>,
        provider_event_created -> Nullable<BigInt>,
        provider_status_rank -> Nullable<Integer>,
        renewal_notified -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::types::{Instant, Uuid};

    subscription_history (id) {
        id -> BigInt,
        subscription_id -> Uuid,
        from_status -> Text,
        to_status -> Text,
        applied -> Bool,
        reason -> Text,
        at -> Instant,
    }
}

diesel::joinable!(subscriptions -> plans (plan_id));
diesel::joinable!(subscription_history -> subscriptions (subscription_id));
diesel::joinable!(refunds -> payments (payment_id));
diesel::joinable!(disputes -> payments (payment_id));
diesel::joinable!(payment_status_history -> payments (payment_id));
diesel::joinable!(payment_aliases -> payments (payment_id));
diesel::allow_tables_to_appear_in_same_query!(
    plans,
    subscriptions,
    subscription_history,
    disputes,
    refunds,
    webhook_logs,
    webhook_events,
    payments,
    payment_status_history,
    outbox,
    payment_aliases
);
