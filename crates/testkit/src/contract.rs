//! The store contract: behaviours every store must show, written once against the
//! ports. A store crate runs them all with [`crate::store_contract_tests!`], giving
//! it a function that returns a fresh, migrated store (or `None` to skip).

use chrono::{DateTime, Duration, TimeZone, Utc};
use payhook_domain::ports::{
    Admission, Commit, Committed, DisputeStore, ForensicLog, Outbox, PaymentStore, ReconcileQueue, RefundStore,
    Retention, StoreError, StoreHealth, WebhookInbox,
};
use payhook_domain::{
    Checkout, Currency, EventId, Idempotency, InboxFilter, InboxId, InboxStatus, Money, NewPayment, Opened, Outcome,
    Payment, PaymentChange, PaymentId, PaymentRef, PaymentStatus, ProcessingResult, Provider, Replay, ReplayFilter,
    Retained, TokenHashes, WebhookEvent, WebhookRequest,
};
use std::sync::Arc;

pub use crate::contract_subscriptions::*;

/// Everything a payhook store implements.
pub trait Store:
    ForensicLog
    + WebhookInbox
    + PaymentStore
    + Outbox
    + StoreHealth
    + Retention
    + ReconcileQueue
    + DisputeStore
    + RefundStore
    + payhook_domain::ports::StripeMirror
    + payhook_domain::ports::PlanStore
    + payhook_domain::ports::SubscriptionStore
    + 'static
{
}
impl<
        T: ForensicLog
            + WebhookInbox
            + PaymentStore
            + Outbox
            + StoreHealth
            + Retention
            + ReconcileQueue
            + DisputeStore
            + RefundStore
            + payhook_domain::ports::StripeMirror
            + payhook_domain::ports::PlanStore
            + payhook_domain::ports::SubscriptionStore
            + 'static,
    > Store for T
{
}

/// Generates one `#[tokio::test]` per contract case. `$fresh` is an async fn returning
/// `Option<(store, guard)>`: the guard lives as long as the test (a temp dir, a test
/// database); `None` skips the case (Postgres absent and not required).
#[macro_export]
macro_rules! store_contract_tests {
    ($fresh:path) => {
        $crate::store_contract_tests!(@cases $fresh;
            admits_an_event_once_and_flags_repeats,
            concurrent_admissions_of_one_event_make_one_row,
            admits_a_batch_in_order_with_repeats_inside_and_outside_it,
            records_rejected_requests,
            claims_due_events_once_until_the_lease_expires,
            stores_new_events_leased_for_a_handoff,
            failures_are_retried_when_due_then_dead,
            creates_payments_idempotently_and_finds_them,
            commits_an_application_with_history_and_marks_the_event_processed,
            refuses_a_commit_computed_from_a_stale_version,
            finds_payments_in_batches,
            commits_a_batch_of_applications_and_skips_stale_ones,
            writes_a_new_payment_once_with_its_first_event_applied,
            queues_again_a_repeated_event_to_confirm_that_changed_nothing,
            lists_events_newest_first_with_filters,
            replays_failed_dead_and_processed_events_but_not_pending_ones,
            releases_leases_of_stopped_and_crashed_workers,
            counts_events_by_status,
            delivers_outbox_messages_until_marked_published,
            gives_up_on_an_outbox_message_and_replays_it_on_demand,
            stores_a_commits_outbox_rows_leased_to_its_relay,
            finds_payments_by_the_aliases_their_events_named,
            opens_one_payment_per_idempotency_key,
            records_the_providers_answer_and_creation_failures,
            purges_what_retention_lets_go_and_keeps_the_rest,
            schedules_claims_and_clears_provider_checks,
            concurrent_claims_of_due_checks_never_overlap,
            lists_payments_newest_first_a_page_at_a_time_with_filters,
            keeps_disputes_as_rows_and_publishes_their_opening_and_closing,
            reserves_refunds_within_what_was_paid,
            concurrent_refund_reservations_never_exceed_the_payment,
            settles_refunds_by_what_the_provider_reports,
            schedules_claims_and_clears_refund_checks,
            mirrors_stripe_objects_newest_write_first_per_account,
            keeps_where_a_backfill_stands_with_its_pages,
            stores_plans_once_per_code,
            opens_one_subscription_per_key_and_per_provider_ref,
            saves_a_subscription_under_its_version_with_history_and_events,
            claims_due_subscriptions_once_until_the_lease_runs_out,
            links_payments_and_lists_subscriptions,
            answers_health_checks);
    };
    (@cases $fresh:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, _guard)) = $fresh().await else { return };
                $crate::contract::$case(std::sync::Arc::new(store)).await;
            }
        )*
    };
}

fn t0() -> DateTime<Utc> {
    // Whole microseconds: every store keeps at least that precision.
    Utc.timestamp_opt(1_800_000_000, 0).single().unwrap()
}

fn request(event_id: &str) -> WebhookRequest {
    let mut req = WebhookRequest::new(
        "stripe",
        "POST",
        "/webhooks/stripe",
        "",
        vec![("content-type".to_owned(), "application/json".to_owned())],
        format!("{{\"id\":\"{event_id}\"}}").into_bytes(),
        Some("127.0.0.1:5555".to_owned()),
        t0(),
        &payhook_domain::Redaction::default(),
    );
    req.primary.event_id = Some(event_id.to_owned());
    req
}

fn event(event_id: &str, provider_ref: &str, change: PaymentChange) -> WebhookEvent {
    WebhookEvent {
        mirror: None,
        subscription: None,
        provider: Provider::Stripe,
        event_id: EventId::parse(event_id).unwrap(),
        event_type: "payment_intent.succeeded".to_owned(),
        occurred_at: t0(),
        payment: PaymentRef {
            account: None,
            payment_id: None,
            provider_ref: Some(provider_ref.to_owned()),
            aliases: Vec::new(),
        },
        change,
        details: None,
        confirm_with_provider: false,
    }
}

fn new_payment(provider_ref: &str) -> NewPayment {
    NewPayment {
        account: String::new(),
        id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
        provider: Provider::Stripe,
        provider_ref: Some(provider_ref.to_owned()),
        merchant_ref: Some("order-1".to_owned()),
        amount: Money::new(1250, Currency::parse("EUR").unwrap()).unwrap(),
        customer_email: Some("a@example.com".to_owned()),
        description: None,
        metadata: serde_json::json!({ "k": "v" }),
        created_at: t0(),
        client_token_hash: None,
        callback_token_hash: None,
        idempotency: None,
        next_reconcile_at: None,
    }
}

async fn admit<S: Store>(store: &S, event_id: &str) -> InboxId {
    match store
        .admit(&request(event_id), &event(event_id, "pi_1", PaymentChange::paid(None)))
        .await
        .unwrap()
    {
        Admission::Accepted(id) => id,
        other => panic!("{event_id} was not new: {other:?}"),
    }
}

pub async fn admits_an_event_once_and_flags_repeats<S: Store>(store: Arc<S>) {
    let first = admit(&*store, "evt_a").await;
    let again = store
        .admit(&request("evt_a"), &event("evt_a", "pi_1", PaymentChange::paid(None)))
        .await
        .unwrap();
    assert_eq!(again, Admission::Duplicate(first));
    let other = admit(&*store, "evt_b").await;
    assert_ne!(other, first);
}

pub async fn admits_a_batch_in_order_with_repeats_inside_and_outside_it<S: Store>(store: Arc<S>) {
    let earlier = admit(&*store, "evt_old").await;
    let delivery = |id: &str| (request(id), event(id, "pi_1", PaymentChange::paid(None)));
    let batch = [
        delivery("evt_n1"),
        delivery("evt_old"),
        delivery("evt_n2"),
        delivery("evt_n1"),
    ];
    let answers = store.admit_all(&batch, None).await.unwrap();
    assert_eq!(answers.len(), 4, "one answer per delivery, in order");
    let Admission::Accepted(n1) = answers[0] else {
        panic!("{answers:?}")
    };
    assert_eq!(answers[1], Admission::Duplicate(earlier));
    assert!(matches!(answers[2], Admission::Accepted(n2) if n2 != n1));
    assert_eq!(answers[3], Admission::Duplicate(n1), "a repeat within the batch");
    let logged = store
        .list(&InboxFilter {
            limit: 10,
            ..InboxFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(logged.len(), 3, "three distinct events");
    assert!(store.admit_all(&[], None).await.unwrap().is_empty());
}

pub async fn concurrent_admissions_of_one_event_make_one_row<S: Store>(store: Arc<S>) {
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .admit(
                        &request("evt_race"),
                        &event("evt_race", "pi_1", PaymentChange::paid(None)),
                    )
                    .await
            })
        })
        .collect();
    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            Admission::Accepted(id) => accepted.push(id),
            Admission::Duplicate(id) => duplicates.push(id),
        }
    }
    assert_eq!(accepted.len(), 1, "exactly one admission wins");
    assert_eq!(duplicates.len(), 19);
    assert!(
        duplicates.iter().all(|d| *d == accepted[0]),
        "repeats name the stored row"
    );
    let claimed = store
        .claim_due(t0() + Duration::seconds(1), 100, t0() + Duration::seconds(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "one inbox row");
}

pub async fn records_rejected_requests<S: Store>(store: Arc<S>) {
    let outcome = Outcome {
        http_status: 401,
        result: ProcessingResult::InvalidSignature,
        error: Some("no v1 signature matches".into()),
    };
    let a = store.record(&request("evt_x"), &outcome).await.unwrap();
    let b = store.record(&request("evt_x"), &outcome).await.unwrap();
    assert!(b.0 > a.0, "every request gets its own row");
}

pub async fn claims_due_events_once_until_the_lease_expires<S: Store>(store: Arc<S>) {
    for id in ["evt_1", "evt_2", "evt_3"] {
        admit(&*store, id).await;
    }
    let now = t0() + Duration::seconds(1);
    let lease = now + Duration::seconds(60);
    let first = store.claim_due(now, 2, lease).await.unwrap();
    assert_eq!(first.len(), 2, "limit respected");
    assert_eq!(first[0].event.event_id.as_str(), "evt_1", "oldest first");
    let second = store.claim_due(now, 2, lease).await.unwrap();
    assert_eq!(second.len(), 1, "leased rows are not handed out twice");
    assert!(store.claim_due(now, 10, lease).await.unwrap().is_empty());
    let after_lease = store
        .claim_due(lease + Duration::seconds(1), 10, lease + Duration::seconds(61))
        .await
        .unwrap();
    assert_eq!(
        after_lease.len(),
        3,
        "a crashed worker's rows are due again once its lease ends"
    );
    assert_eq!(
        after_lease[0].event,
        event("evt_1", "pi_1", PaymentChange::paid(None)),
        "payload round-trips"
    );
}

/// Events admitted with a lease are the caller's until it ends, as if claimed; a
/// repeat in the same batch keeps the state it had.
pub async fn stores_new_events_leased_for_a_handoff<S: Store>(store: Arc<S>) {
    let earlier = admit(&*store, "evt_old").await;
    let lease = t0() + Duration::seconds(60);
    let batch = vec![
        (request("evt_new"), event("evt_new", "pi_2", PaymentChange::paid(None))),
        (request("evt_old"), event("evt_old", "pi_1", PaymentChange::paid(None))),
    ];
    let answers = store.admit_all(&batch, Some(lease)).await.unwrap();
    let Admission::Accepted(new) = answers[0] else {
        panic!("evt_new is new: {answers:?}")
    };
    assert_eq!(answers[1], Admission::Duplicate(earlier));
    let now = t0() + Duration::seconds(1);
    let claimed = store.claim_due(now, 10, now + Duration::seconds(120)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        [earlier],
        "the leased event is not claimed while its lease runs; the repeat is due as before"
    );
    let after = lease + Duration::seconds(1);
    let claimed = store.claim_due(after, 10, after + Duration::seconds(60)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| c.id).collect::<Vec<_>>(),
        [new],
        "due once its lease ends"
    );
    assert_eq!(claimed[0].event.event_id.as_str(), "evt_new");
}

pub async fn failures_are_retried_when_due_then_dead<S: Store>(store: Arc<S>) {
    let id = admit(&*store, "evt_fail").await;
    let now = t0() + Duration::seconds(1);
    assert_eq!(
        store
            .claim_due(now, 10, now + Duration::seconds(60))
            .await
            .unwrap()
            .len(),
        1
    );
    store
        .record_failure(id, "payment_not_found", Some(now + Duration::seconds(10)))
        .await
        .unwrap();
    assert!(
        store
            .claim_due(now, 10, now + Duration::seconds(60))
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let later = now + Duration::seconds(11);
    let retried = store.claim_due(later, 10, later + Duration::seconds(60)).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 1, "the failure was counted");
    store.record_failure(id, "payment_not_found", None).await.unwrap();
    let much_later = later + Duration::days(1);
    assert!(
        store.claim_due(much_later, 10, much_later).await.unwrap().is_empty(),
        "dead events are never claimed"
    );
    assert!(
        matches!(
            store.record_failure(id, "again", None).await,
            Err(StoreError::Corrupt(_))
        ),
        "a dead event takes no more failures"
    );
}

pub async fn creates_payments_idempotently_and_finds_them<S: Store>(store: Arc<S>) {
    let new = new_payment("pi_make");
    let created = store.create_payment(&new).await.unwrap();
    assert_eq!(created.id, new.id);
    assert_eq!(created.status, PaymentStatus::Pending);
    assert_eq!(created.amount, new.amount);
    assert_eq!(created.metadata, new.metadata);
    assert_eq!(created.created_at, t0());
    let racing = NewPayment {
        account: String::new(),
        id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
        ..new.clone()
    };
    assert_eq!(
        store.create_payment(&racing).await.unwrap().id,
        new.id,
        "one payment per provider reference"
    );

    let by_ref = PaymentRef {
        account: None,
        payment_id: None,
        provider_ref: Some("pi_make".into()),
        aliases: Vec::new(),
    };
    assert_eq!(
        store
            .find_payment(Provider::Stripe, &by_ref)
            .await
            .unwrap()
            .map(|p| p.id),
        Some(new.id)
    );
    let by_id = PaymentRef {
        account: None,
        payment_id: Some(new.id),
        provider_ref: None,
        aliases: Vec::new(),
    };
    assert_eq!(
        store
            .find_payment(Provider::Stripe, &by_id)
            .await
            .unwrap()
            .map(|p| p.id),
        Some(new.id)
    );
    assert!(
        store.find_payment(Provider::Xendit, &by_ref).await.unwrap().is_none(),
        "scoped to the provider"
    );
    assert!(store
        .payment(PaymentId::from_uuid(uuid::Uuid::new_v4()))
        .await
        .unwrap()
        .is_none());
}

pub async fn commits_an_application_with_history_and_marks_the_event_processed<S: Store>(store: Arc<S>) {
    let payment = store.create_payment(&new_payment("pi_1")).await.unwrap();
    let inbox = admit(&*store, "evt_paid").await;
    let now = t0() + Duration::seconds(1);
    let claimed = store.claim_due(now, 10, now + Duration::seconds(60)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let application = payment.apply(&claimed[0].event, now);
    store.commit_application(inbox, &application).await.unwrap();

    let stored = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(stored.status, PaymentStatus::Paid);
    assert_eq!(stored.paid_amount, 1250);
    assert_eq!(stored.paid_at, Some(now));
    assert_eq!(stored.version, payment.version + 1);
    let history = store.history(payment.id).await.unwrap();
    assert_eq!(history, application.history, "history round-trips");
    let later = now + Duration::days(1);
    assert!(
        store.claim_due(later, 10, later).await.unwrap().is_empty(),
        "processed events are not claimed again"
    );
}

pub async fn refuses_a_commit_computed_from_a_stale_version<S: Store>(store: Arc<S>) {
    let payment = store.create_payment(&new_payment("pi_1")).await.unwrap();
    let paid = admit(&*store, "evt_paid").await;
    let failed = admit(&*store, "evt_failed").await;
    let now = t0() + Duration::seconds(1);
    let a = payment.apply(&event("evt_paid", "pi_1", PaymentChange::paid(None)), now);
    let b = payment.apply(
        &event("evt_failed", "pi_1", PaymentChange::status(PaymentStatus::Failed)),
        now,
    );
    store.commit_application(paid, &a).await.unwrap();
    assert!(matches!(
        store.commit_application(failed, &b).await,
        Err(StoreError::Conflict(_))
    ));
    let stored = store.payment(payment.id).await.unwrap().unwrap();
    assert_eq!(stored.status, PaymentStatus::Paid, "the stale decision changed nothing");
    assert_eq!(store.history(payment.id).await.unwrap().len(), 1, "nor wrote history");
}

fn by_provider_ref(provider_ref: &str) -> PaymentRef {
    PaymentRef {
        account: None,
        payment_id: None,
        provider_ref: Some(provider_ref.to_owned()),
        aliases: Vec::new(),
    }
}

pub async fn finds_payments_in_batches<S: Store>(store: Arc<S>) {
    let existing = store.create_payment(&new_payment("pi_old")).await.unwrap();
    let a = store.create_payment(&new_payment("pi_a")).await.unwrap();
    let b = store.create_payment(&new_payment("pi_b")).await.unwrap();
    let by_id = PaymentRef {
        account: None,
        payment_id: Some(b.id),
        provider_ref: None,
        aliases: Vec::new(),
    };
    let found = store
        .find_payments(&[
            (Provider::Stripe, by_provider_ref("pi_a")),
            (Provider::Stripe, by_provider_ref("pi_unknown")),
            (Provider::Stripe, by_id.clone()),
            (Provider::Xendit, by_provider_ref("pi_a")),
            (Provider::Xendit, by_id),
            (Provider::Stripe, by_provider_ref("pi_old")),
        ])
        .await
        .unwrap();
    let found: Vec<Option<PaymentId>> = found.iter().map(|p| p.as_ref().map(|p| p.id)).collect();
    assert_eq!(
        found,
        [Some(a.id), None, Some(b.id), None, None, Some(existing.id)],
        "in the order asked, scoped to the provider"
    );
    assert!(store.find_payments(&[]).await.unwrap().is_empty());
}

pub async fn commits_a_batch_of_applications_and_skips_stale_ones<S: Store>(store: Arc<S>) {
    let first = store.create_payment(&new_payment("pi_1")).await.unwrap();
    let raced = store.create_payment(&new_payment("pi_2")).await.unwrap();
    let last = store.create_payment(&new_payment("pi_3")).await.unwrap();
    let now = t0() + Duration::seconds(1);
    let mut inbox = Vec::new();
    for (event_id, provider_ref) in [
        ("evt_1", "pi_1"),
        ("evt_2", "pi_2"),
        ("evt_3", "pi_3"),
        ("evt_2b", "pi_2"),
    ] {
        let e = event(event_id, provider_ref, PaymentChange::paid(None));
        match store.admit(&request(event_id), &e).await.unwrap() {
            Admission::Accepted(id) => inbox.push((id, e)),
            other => panic!("{event_id} was not new: {other:?}"),
        }
    }
    let claimed = store.claim_due(now, 10, now + Duration::seconds(60)).await.unwrap();
    assert_eq!(claimed.len(), 4);
    // Another worker moves the second payment first.
    let (raced_inbox, raced_event) = &inbox[3];
    store
        .commit_application(*raced_inbox, &raced.apply(raced_event, now))
        .await
        .unwrap();

    let mut charge = inbox[2].1.clone();
    charge.payment.aliases = vec!["ch_3".into()];
    let batch = vec![
        (inbox[0].0, first.apply(&inbox[0].1, now)),
        (inbox[1].0, raced.apply(&inbox[1].1, now)),
        (inbox[2].0, last.apply(&charge, now)),
    ];
    let committed = store.commit_applications(&batch, None).await.unwrap();
    assert_eq!(committed.commits, [Commit::Committed, Commit::Stale, Commit::Committed]);
    assert_eq!(
        committed.messages.iter().map(|m| &m.payload).collect::<Vec<_>>(),
        [&batch[0].1.publications[0].payload, &batch[2].1.publications[0].payload],
        "the domain events of the committed applications, in commit order"
    );

    for payment in [&first, &last] {
        let stored = store.payment(payment.id).await.unwrap().unwrap();
        assert_eq!(stored.status, PaymentStatus::Paid);
        assert_eq!(stored.version, payment.version + 1);
        assert_eq!(store.history(payment.id).await.unwrap().len(), 1);
    }
    let stored = store.payment(raced.id).await.unwrap().unwrap();
    assert_eq!(stored.version, raced.version + 1, "the stale one changed nothing");
    assert_eq!(store.history(raced.id).await.unwrap().len(), 1, "nor wrote history");
    assert_eq!(
        store
            .find_payment(Provider::Stripe, &by_provider_ref("ch_3"))
            .await
            .unwrap()
            .map(|p| p.id),
        Some(last.id),
        "aliases are remembered"
    );
    let outbox = store
        .claim_unpublished(now + Duration::days(1), 10, now + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(
        outbox.len(),
        3,
        "one domain event per committed change, the racing worker's included"
    );
    let committed_ids: Vec<i64> = committed.messages.iter().map(|m| m.id).collect();
    assert!(
        committed_ids.windows(2).all(|w| w[0] < w[1])
            && committed_ids.iter().all(|id| outbox.iter().any(|m| m.id == *id)),
        "answered with their outbox ids"
    );
    // The committed events are processed; the stale one is still leased to its worker.
    let processed = processed_ids(store.as_ref()).await;
    assert_eq!(processed, [inbox[0].0, inbox[2].0, inbox[3].0]);
    assert_eq!(
        store.commit_applications(&[], None).await.unwrap(),
        Committed::default()
    );
}

pub async fn writes_a_new_payment_once_with_its_first_event_applied<S: Store>(store: Arc<S>) {
    let existing = store.create_payment(&new_payment("pi_old")).await.unwrap();
    let now = t0() + Duration::seconds(1);
    let mut inbox = Vec::new();
    for (event_id, provider_ref) in [("evt_new", "pi_new"), ("evt_taken", "pi_taken"), ("evt_old", "pi_old")] {
        let mut e = event(event_id, provider_ref, PaymentChange::paid(None));
        e.payment.aliases = vec![format!("ch_{provider_ref}")];
        inbox.push((admit_event(store.as_ref(), event_id, &e).await, e));
    }
    // Another worker stores pi_taken after this one looked it up and found nothing.
    let taken_first = store.create_payment(&new_payment("pi_taken")).await.unwrap();
    let new = Payment::unstored(new_payment("pi_new"));
    let taken = Payment::unstored(new_payment("pi_taken"));
    let batch = vec![
        (inbox[0].0, new.apply(&inbox[0].1, now)),
        (inbox[1].0, taken.apply(&inbox[1].1, now)),
        (inbox[2].0, existing.apply(&inbox[2].1, now)),
    ];
    let committed = store.commit_applications(&batch, None).await.unwrap();
    assert_eq!(committed.commits, [Commit::Committed, Commit::Stale, Commit::Committed]);

    let stored = store.payment(new.id).await.unwrap().expect("the new payment is stored");
    assert_eq!(stored.status, PaymentStatus::Paid, "in its applied state");
    assert_eq!(stored.paid_amount, 1250);
    assert_eq!(stored.version, 1, "as a first write");
    assert_eq!(stored.merchant_ref.as_deref(), Some("order-1"));
    assert_eq!(stored.metadata, serde_json::json!({ "k": "v" }));
    assert_eq!(store.history(new.id).await.unwrap().len(), 1);

    assert!(
        store.payment(taken.id).await.unwrap().is_none(),
        "the stale one is not stored"
    );
    let kept = store.payment(taken_first.id).await.unwrap().unwrap();
    assert_eq!(
        (kept.status, kept.version),
        (PaymentStatus::Pending, 1),
        "nor did it touch the stored one"
    );
    assert!(store.history(taken_first.id).await.unwrap().is_empty());

    let old = store.payment(existing.id).await.unwrap().unwrap();
    assert_eq!((old.status, old.version), (PaymentStatus::Paid, existing.version + 1));
    let processed = processed_ids(store.as_ref()).await;
    assert_eq!(
        processed,
        [inbox[0].0, inbox[2].0],
        "the stale event is left for a retry"
    );
    for (alias, payment) in [
        ("ch_pi_new", Some(new.id)),
        ("ch_pi_taken", None),
        ("ch_pi_old", Some(existing.id)),
    ] {
        let found = store
            .find_payment(Provider::Stripe, &by_provider_ref(alias))
            .await
            .unwrap()
            .map(|p| p.id);
        assert_eq!(
            found, payment,
            "{alias}: aliases of the committed ones only, new payments' too"
        );
    }
}

pub async fn queues_again_a_repeated_event_to_confirm_that_changed_nothing<S: Store>(store: Arc<S>) {
    let payment = store.create_payment(&new_payment("inv_1")).await.unwrap();
    let now = t0() + Duration::seconds(1);
    let mut to_confirm = event("inv_1:PAID", "inv_1", PaymentChange::paid(Some(100)));
    to_confirm.confirm_with_provider = true;
    let signed = event("evt_signed", "inv_1", PaymentChange::paid(Some(100)));
    let mut inbox = Vec::new();
    for e in [&to_confirm, &signed] {
        inbox.push(admit_event(store.as_ref(), e.event_id.as_str(), e).await);
    }
    store.claim_due(now, 10, now + Duration::seconds(60)).await.unwrap();
    // Both paid in part: recorded, nothing changed.
    for (id, e) in inbox.iter().zip([&to_confirm, &signed]) {
        let current = store.payment(payment.id).await.unwrap().unwrap();
        let app = current.apply(e, now);
        assert_eq!(app.result, ProcessingResult::StaleTransition);
        store.commit_application(*id, &app).await.unwrap();
    }
    assert_eq!(processed_ids(store.as_ref()).await, inbox);

    // Delivered again: the one to confirm is due again, the signed one stays processed.
    for e in [&to_confirm, &signed] {
        let again = store.admit(&request(e.event_id.as_str()), e).await.unwrap();
        assert!(matches!(again, Admission::Duplicate(_)), "{again:?}");
    }
    assert_eq!(processed_ids(store.as_ref()).await, [inbox[1]]);
    let later = now + Duration::seconds(1);
    let due = store.claim_due(later, 10, later + Duration::seconds(60)).await.unwrap();
    assert_eq!(due.iter().map(|c| c.id).collect::<Vec<_>>(), [inbox[0]]);
    assert_eq!(due[0].attempts, 0);

    // Once it changed something, a repeat is only a duplicate.
    let mut paid = to_confirm.clone();
    paid.change = PaymentChange::paid(None);
    store
        .commit_application(
            inbox[0],
            &store.payment(payment.id).await.unwrap().unwrap().apply(&paid, later),
        )
        .await
        .unwrap();
    store.admit(&request("inv_1:PAID"), &to_confirm).await.unwrap();
    assert!(store
        .claim_due(later, 10, later + Duration::seconds(60))
        .await
        .unwrap()
        .is_empty());
}

/// The ids of the processed inbox events, in id order.
async fn processed_ids(store: &impl Store) -> Vec<InboxId> {
    let processed = store
        .list(&InboxFilter {
            status: Some(InboxStatus::Processed),
            provider: None,
            limit: 10,
        })
        .await
        .unwrap();
    let mut ids: Vec<InboxId> = processed.iter().map(|e| e.id).collect();
    ids.sort_by_key(|id| id.0);
    ids
}

async fn admit_event(store: &impl Store, event_id: &str, event: &WebhookEvent) -> InboxId {
    match store.admit(&request(event_id), event).await.unwrap() {
        Admission::Accepted(id) => id,
        other => panic!("{event_id} was not new: {other:?}"),
    }
}

async fn admit_for(store: &impl Store, provider: Provider, event_id: &str) -> InboxId {
    let mut e = event(event_id, "pi_1", PaymentChange::paid(None));
    e.provider = provider;
    match store.admit(&request(event_id), &e).await.unwrap() {
        Admission::Accepted(id) => id,
        other => panic!("{event_id} was not new: {other:?}"),
    }
}

pub async fn lists_events_newest_first_with_filters<S: Store>(store: Arc<S>) {
    let a = admit_for(&*store, Provider::Stripe, "evt_l1").await;
    let b = admit_for(&*store, Provider::Xendit, "evt_l2").await;
    let c = admit_for(&*store, Provider::Stripe, "evt_l3").await;
    store.record_failure(c, "boom", None).await.unwrap();
    let all = store
        .list(&InboxFilter {
            status: None,
            provider: None,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![c, b, a],
        "newest first"
    );
    assert_eq!(all[2].event_id, "evt_l1");
    assert_eq!(all[2].event_type, "payment_intent.succeeded");
    assert_eq!(all[2].payment_ref.as_deref(), Some("pi_1"));
    assert_eq!(all[2].received_at, t0());
    let stripe = store
        .list(&InboxFilter {
            status: None,
            provider: Some(Provider::Stripe),
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(stripe.iter().map(|e| e.id).collect::<Vec<_>>(), vec![c, a]);
    let pending_stripe = InboxFilter {
        status: Some(InboxStatus::Pending),
        provider: Some(Provider::Stripe),
        limit: 10,
    };
    assert_eq!(
        store
            .list(&pending_stripe)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        vec![a]
    );
    assert_eq!(
        store
            .list(&InboxFilter {
                status: None,
                provider: None,
                limit: 1
            })
            .await
            .unwrap()
            .len(),
        1
    );
}

pub async fn replays_failed_dead_and_processed_events_but_not_pending_ones<S: Store>(store: Arc<S>) {
    let now = t0() + Duration::seconds(1);
    let dead = admit(&*store, "evt_dead").await;
    let pending = admit(&*store, "evt_pending").await;
    let claimed = store.claim_due(now, 1, now + Duration::seconds(60)).await.unwrap();
    assert_eq!(claimed[0].id, dead);
    store.record_failure(dead, "gave up", None).await.unwrap();

    assert_eq!(store.replay(pending, now).await.unwrap(), Replay::AlreadyPending);
    assert_eq!(store.replay(InboxId(999_999), now).await.unwrap(), Replay::NotFound);
    let later = now + Duration::seconds(5);
    assert_eq!(store.replay(dead, later).await.unwrap(), Replay::Requeued);
    let due = store.claim_due(later, 10, later + Duration::seconds(60)).await.unwrap();
    let replayed = due
        .iter()
        .find(|c| c.id == dead)
        .expect("the replayed event is due again");
    assert_eq!(replayed.attempts, 0, "a replay starts a fresh set of attempts");

    // Processed events can be replayed too (the state machine makes that harmless).
    let payment = store.create_payment(&new_payment("pi_1")).await.unwrap();
    let app = payment.apply(&replayed.event, later);
    store.commit_application(dead, &app).await.unwrap();
    let after = later + Duration::seconds(120);
    assert_eq!(store.replay(dead, after).await.unwrap(), Replay::Requeued);

    let gone = admit(&*store, "evt_gone").await;
    let other = admit_for(&*store, Provider::Xendit, "evt_other").await;
    let all_due = store.claim_due(after, 10, after + Duration::seconds(60)).await.unwrap();
    assert!(all_due.len() >= 3);
    for id in [gone, other, pending, dead] {
        store.record_failure(id, "down", None).await.unwrap();
    }
    let dead_of = |provider| ReplayFilter {
        status: InboxStatus::Dead,
        provider,
        since: None,
    };
    // In batches: at most `limit` a call.
    assert_eq!(
        store
            .replay_batch(&dead_of(Some(Provider::Stripe)), after, 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .replay_batch(&dead_of(Some(Provider::Stripe)), after, 2)
            .await
            .unwrap(),
        1,
        "only the dead Stripe events"
    );
    assert_eq!(
        store
            .replay_batch(&dead_of(Some(Provider::Stripe)), after, 2)
            .await
            .unwrap(),
        0
    );
    let received_later = ReplayFilter {
        since: Some(after + Duration::days(1)),
        ..dead_of(None)
    };
    assert_eq!(
        store.replay_batch(&received_later, after, 10).await.unwrap(),
        0,
        "received before `since`"
    );
    assert_eq!(
        store.replay_batch(&dead_of(None), after, 10).await.unwrap(),
        1,
        "then the Xendit one"
    );
    let pending = ReplayFilter {
        status: InboxStatus::Pending,
        ..dead_of(None)
    };
    assert_eq!(store.replay_batch(&pending, after, 10).await.unwrap(), 0);
}

pub async fn releases_leases_of_stopped_and_crashed_workers<S: Store>(store: Arc<S>) {
    let a = admit(&*store, "evt_r1").await;
    let b = admit(&*store, "evt_r2").await;
    let now = t0() + Duration::seconds(1);
    let lease = now + Duration::seconds(60);
    assert_eq!(store.claim_due(now, 10, lease).await.unwrap().len(), 2);
    assert_eq!(store.release(&[a]).await.unwrap(), 1);
    let again = store.claim_due(now, 10, lease).await.unwrap();
    assert_eq!(
        again.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![a],
        "a released event is due at once"
    );
    assert_eq!(
        store.release_expired_leases(now).await.unwrap(),
        0,
        "leases still running are kept"
    );
    assert_eq!(
        store
            .release_expired_leases(lease + Duration::seconds(1))
            .await
            .unwrap(),
        2
    );
    let both = store.claim_due(now, 10, lease).await.unwrap();
    assert_eq!(both.iter().map(|c| c.id).collect::<Vec<_>>(), vec![a, b]);
}

pub async fn counts_events_by_status<S: Store>(store: Arc<S>) {
    admit(&*store, "evt_c1").await;
    let dead = admit(&*store, "evt_c2").await;
    admit(&*store, "evt_c3").await;
    store.record_failure(dead, "x", None).await.unwrap();
    let mut depth = store.depth().await.unwrap();
    depth.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(depth, vec![(InboxStatus::Dead, 1), (InboxStatus::Pending, 2)]);
}

pub async fn delivers_outbox_messages_until_marked_published<S: Store>(store: Arc<S>) {
    let payment = store.create_payment(&new_payment("pi_1")).await.unwrap();
    let inbox = admit(&*store, "evt_paid").await;
    let now = t0() + Duration::seconds(1);
    let app = payment.apply(&event("evt_paid", "pi_1", PaymentChange::paid(None)), now);
    store.commit_application(inbox, &app).await.unwrap();
    assert_eq!(store.backlog().await.unwrap(), 1);

    let lease = now + Duration::seconds(30);
    let first = store.claim_unpublished(now, 10, lease).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].topic, "payment.paid");
    assert_eq!(first[0].payload, app.publications[0].payload);
    assert!(
        store.claim_unpublished(now, 10, lease).await.unwrap().is_empty(),
        "leased to one relay"
    );
    // The relay died before marking it: once the lease ends it is delivered again.
    let redelivered = store
        .claim_unpublished(lease + Duration::seconds(1), 10, lease + Duration::seconds(31))
        .await
        .unwrap();
    assert_eq!(redelivered.iter().map(|m| m.id).collect::<Vec<_>>(), vec![first[0].id]);

    let id = first[0].id;
    let retry_at = lease + Duration::seconds(100);
    store
        .record_publish_failure(id, "subscriber down", Some(retry_at))
        .await
        .unwrap();
    assert!(store
        .claim_unpublished(retry_at - Duration::seconds(1), 10, retry_at)
        .await
        .unwrap()
        .is_empty());
    let retried = store
        .claim_unpublished(retry_at, 10, retry_at + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(retried[0].attempts, 1);
    store.mark_published(&[id], retry_at).await.unwrap();
    assert_eq!(store.backlog().await.unwrap(), 0);
    let much_later = retry_at + Duration::days(1);
    assert!(store
        .claim_unpublished(much_later, 10, much_later)
        .await
        .unwrap()
        .is_empty());
}

pub async fn gives_up_on_an_outbox_message_and_replays_it_on_demand<S: Store>(store: Arc<S>) {
    let payment = store.create_payment(&new_payment("pi_1")).await.unwrap();
    let inbox = admit(&*store, "evt_paid").await;
    let now = t0() + Duration::seconds(1);
    let app = payment.apply(&event("evt_paid", "pi_1", PaymentChange::paid(None)), now);
    store.commit_application(inbox, &app).await.unwrap();
    let claimed = store
        .claim_unpublished(now, 10, now + Duration::seconds(30))
        .await
        .unwrap();
    let id = claimed[0].id;

    // The last attempt failed: dead, kept, never claimed again on its own.
    store.record_publish_failure(id, "endpoint down", None).await.unwrap();
    let years_later = now + Duration::days(3650);
    assert!(store
        .claim_unpublished(years_later, 10, years_later)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.dead_count().await.unwrap(), 1);
    assert_eq!(store.backlog().await.unwrap(), 1, "undelivered still");
    let dead = store.list_undelivered(true, 10).await.unwrap();
    assert_eq!(dead.iter().map(|m| m.id).collect::<Vec<_>>(), vec![id]);
    assert_eq!(dead[0].last_error.as_deref(), Some("endpoint down"));
    assert!(dead[0].dead_at.is_some());
    assert!(store.list_undelivered(false, 10).await.unwrap().is_empty());

    // Replayed: due now, attempts counted afresh.
    let later = now + Duration::hours(1);
    assert_eq!(store.replay_message(id, later).await.unwrap(), Replay::Requeued);
    assert_eq!(store.dead_count().await.unwrap(), 0);
    let again = store
        .claim_unpublished(later, 10, later + Duration::seconds(30))
        .await
        .unwrap();
    assert_eq!(
        again.iter().map(|m| (m.id, m.attempts)).collect::<Vec<_>>(),
        vec![(id, 0)]
    );
    // Leased to a relay right now: in flight, not replayed.
    assert_eq!(store.replay_message(id, later).await.unwrap(), Replay::AlreadyPending);
    store.mark_published(&[id], later).await.unwrap();
    assert_eq!(
        store.replay_message(id, later + Duration::hours(1)).await.unwrap(),
        Replay::AlreadyPending
    );
    assert_eq!(store.replay_message(id + 1000, later).await.unwrap(), Replay::NotFound);
}

pub async fn stores_a_commits_outbox_rows_leased_to_its_relay<S: Store>(store: Arc<S>) {
    let payment = store.create_payment(&new_payment("pi_1")).await.unwrap();
    let inbox = admit(&*store, "evt_paid").await;
    let now = t0() + Duration::seconds(1);
    let app = payment.apply(&event("evt_paid", "pi_1", PaymentChange::paid(None)), now);
    let lease = now + Duration::seconds(30);
    let committed = store
        .commit_applications(&[(inbox, app.clone())], Some(lease))
        .await
        .unwrap();
    assert_eq!(committed.commits, [Commit::Committed]);
    let [message] = committed.messages.as_slice() else {
        panic!("one domain event: {:?}", committed.messages)
    };
    assert_eq!(
        (message.topic.as_str(), &message.payload, message.attempts),
        ("payment.paid", &app.publications[0].payload, 0)
    );
    assert_eq!(store.backlog().await.unwrap(), 1, "undelivered until marked");
    assert!(
        store.claim_unpublished(now, 10, lease).await.unwrap().is_empty(),
        "no relay claims it while it is leased to this one"
    );
    // This instance stopped before delivering it: once the lease ends any relay does.
    let claimed = store
        .claim_unpublished(lease + Duration::seconds(1), 10, lease + Duration::seconds(31))
        .await
        .unwrap();
    assert_eq!(claimed, std::slice::from_ref(message));
}

pub async fn finds_payments_by_the_aliases_their_events_named<S: Store>(store: Arc<S>) {
    let payment = store.create_payment(&new_payment("pi_1")).await.unwrap();
    let inbox = admit(&*store, "evt_charge").await;
    let mut charge = event("evt_charge", "pi_1", PaymentChange::paid(None));
    charge.payment.aliases = vec!["ch_1".into()];
    let now = t0() + Duration::seconds(1);
    store
        .commit_application(inbox, &payment.apply(&charge, now))
        .await
        .unwrap();

    let by_charge = PaymentRef {
        account: None,
        payment_id: None,
        provider_ref: Some("ch_1".into()),
        aliases: Vec::new(),
    };
    assert_eq!(
        store
            .find_payment(Provider::Stripe, &by_charge)
            .await
            .unwrap()
            .map(|p| p.id),
        Some(payment.id)
    );
    assert!(
        store
            .find_payment(Provider::Xendit, &by_charge)
            .await
            .unwrap()
            .is_none(),
        "scoped to the provider"
    );
    // Remembering the same alias again is harmless.
    let again = admit(&*store, "evt_charge_again").await;
    let fresh = store.payment(payment.id).await.unwrap().unwrap();
    store
        .commit_application(again, &fresh.apply(&charge, now))
        .await
        .unwrap();
}

pub async fn answers_health_checks<S: Store>(store: Arc<S>) {
    store.check().await.unwrap();
}

fn requested_payment(key: &str, fingerprint: &str) -> NewPayment {
    NewPayment {
        account: String::new(),
        provider_ref: None,
        client_token_hash: Some(format!("client-hash-{key}")),
        callback_token_hash: Some(format!("callback-hash-{key}")),
        idempotency: Some(Idempotency {
            key: key.to_owned(),
            fingerprint: fingerprint.to_owned(),
        }),
        ..new_payment("unused")
    }
}

pub async fn opens_one_payment_per_idempotency_key<S: Store>(store: Arc<S>) {
    // Ten requests with one key at once: exactly one opens a payment, the others get it back.
    let attempts = (0..10).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            let mut new = requested_payment("key-1", "fp-1");
            new.id = PaymentId::from_uuid(uuid::Uuid::new_v4());
            new.merchant_ref = Some(format!("attempt-{i}"));
            store.open_payment(&new).await.unwrap()
        })
    });
    let mut opened_ids = Vec::new();
    let mut new_count = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Opened::New(p) => {
                new_count += 1;
                opened_ids.push(p.id);
            }
            Opened::Existing { payment, fingerprint } => {
                assert_eq!(fingerprint, "fp-1");
                opened_ids.push(payment.id);
            }
        }
    }
    assert_eq!(new_count, 1, "one payment per key");
    assert!(opened_ids.windows(2).all(|w| w[0] == w[1]), "{opened_ids:?}");
    let hashes = store.token_hashes(opened_ids[0]).await.unwrap().unwrap();
    assert_eq!(
        hashes,
        TokenHashes {
            client: Some("client-hash-key-1".into()),
            callback: Some("callback-hash-key-1".into()),
        }
    );
    store.replace_client_token(opened_ids[0], "rotated").await.unwrap();
    assert_eq!(
        store
            .token_hashes(opened_ids[0])
            .await
            .unwrap()
            .unwrap()
            .client
            .as_deref(),
        Some("rotated")
    );
    assert_eq!(
        store
            .token_hashes(PaymentId::from_uuid(uuid::Uuid::new_v4()))
            .await
            .unwrap(),
        None
    );

    // Without a key, every request opens its own payment.
    let mut keyless = requested_payment("unused", "fp");
    keyless.idempotency = None;
    for _ in 0..2 {
        keyless.id = PaymentId::from_uuid(uuid::Uuid::new_v4());
        assert!(matches!(store.open_payment(&keyless).await.unwrap(), Opened::New(_)));
    }
}

pub async fn records_the_providers_answer_and_creation_failures<S: Store>(store: Arc<S>) {
    let Opened::New(opened) = store.open_payment(&requested_payment("key-a", "fp")).await.unwrap() else {
        panic!("a fresh key opens a payment");
    };
    assert!(opened.is_being_created());
    let checkout = Checkout {
        provider_ref: "inv_1".into(),
        checkout_url: Some("https://pay.example/inv_1".into()),
        qr_text: Some("000201qr".into()),
        expires_at: Some(t0() + Duration::hours(24)),
        extras: serde_json::json!({ "qr_image": "iVBORw0KGgo=" }),
        client_secret: None,
    };
    let answered = store.record_checkout(opened.id, &checkout).await.unwrap();
    assert_eq!(answered.provider_ref.as_deref(), Some("inv_1"));
    assert_eq!(answered.checkout_url, checkout.checkout_url);
    assert_eq!(answered.qr_text, checkout.qr_text);
    assert_eq!(answered.expires_at, checkout.expires_at);
    assert_eq!(answered.checkout_extras, Some(checkout.extras.clone()));
    assert!(!answered.is_being_created());

    let Opened::New(refused) = store.open_payment(&requested_payment("key-b", "fp")).await.unwrap() else {
        panic!("a fresh key opens a payment");
    };
    let failed = store
        .record_creation_failure(refused.id, "xendit refused the request: 400", t0())
        .await
        .unwrap();
    assert_eq!(failed.status, PaymentStatus::Failed);
    assert_eq!(
        failed.failure_reason.as_deref(),
        Some("xendit refused the request: 400")
    );
    assert!(!failed.is_being_created());
    let history = store.history(refused.id).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (history[0].from_status, history[0].to_status),
        (PaymentStatus::Pending, PaymentStatus::Failed)
    );
    assert!(history[0].applied && history[0].reason.contains("400"), "{history:?}");

    // A payment that a callback already moved on keeps its status.
    let Opened::New(raced) = store.open_payment(&requested_payment("key-c", "fp")).await.unwrap() else {
        panic!("a fresh key opens a payment");
    };
    let inbox = admit(&*store, "evt_raced").await;
    let mut paid_event = event("evt_raced", "unused", PaymentChange::paid(None));
    paid_event.payment.payment_id = Some(raced.id);
    store
        .commit_application(inbox, &raced.apply(&paid_event, t0()))
        .await
        .unwrap();
    let kept = store.record_creation_failure(raced.id, "timeout", t0()).await.unwrap();
    assert_eq!(
        kept.status,
        PaymentStatus::Paid,
        "a late failure does not undo a payment"
    );
    assert_eq!(kept.failure_reason.as_deref(), Some("timeout"));
    assert!(store
        .history(raced.id)
        .await
        .unwrap()
        .iter()
        .all(|h| h.to_status != PaymentStatus::Failed));
}

pub async fn purges_what_retention_lets_go_and_keeps_the_rest<S: Store>(store: Arc<S>) {
    let early = t0() + Duration::seconds(1);
    let late = t0() + Duration::days(50);
    let cutoff = t0() + Duration::days(10);

    // Four events, each with its forensic row (received at t0): three processed early
    // (one payment each, one outbox message each), one processed late.
    let mut messages = Vec::new();
    for (n, at) in [(1, early), (2, early), (3, early), (4, late)] {
        let reference = format!("pi_{n}");
        let payment = store.create_payment(&new_payment(&reference)).await.unwrap();
        let event_id = format!("evt_settled_{n}");
        let paid = event(&event_id, &reference, PaymentChange::paid(None));
        let Admission::Accepted(inbox) = store.admit(&request(&event_id), &paid).await.unwrap() else {
            panic!("{event_id} was not new")
        };
        store
            .commit_application(inbox, &payment.apply(&paid, at))
            .await
            .unwrap();
        let claimed = store
            .claim_unpublished(at, 10, at + Duration::seconds(30))
            .await
            .unwrap();
        // This event's message is the newest (earlier ones are claimed again once
        // their leases end).
        messages.push((claimed.iter().map(|m| m.id).max().unwrap(), at));
    }
    // Outbox: 1 and 4 delivered (early, late), 2 dead, 3 still retrying: only 1 may go.
    store.mark_published(&[messages[0].0], early).await.unwrap();
    store.mark_published(&[messages[3].0], late).await.unwrap();
    store
        .record_publish_failure(messages[1].0, "endpoint down", None)
        .await
        .unwrap();
    store
        .record_publish_failure(messages[2].0, "endpoint down", Some(late))
        .await
        .unwrap();
    // Inbox: a dead event and a pending one, both as old as the rest, are kept.
    let dead = admit(&*store, "evt_dead").await;
    store.record_failure(dead, "payment_not_found", None).await.unwrap();
    admit(&*store, "evt_pending").await;
    // A forensic row of a refused request, received late: too young to go.
    let mut young = request("evt_young");
    young.received_at = late;
    store
        .record(
            &young,
            &Outcome {
                http_status: 401,
                result: ProcessingResult::InvalidSignature,
                error: None,
            },
        )
        .await
        .unwrap();

    let purgeable = |kind| {
        let store = store.clone();
        async move { store.count_purgeable(kind, cutoff).await.unwrap() }
    };
    assert_eq!(purgeable(Retained::ForensicLog).await, 6, "every row received at t0");
    assert_eq!(purgeable(Retained::Inbox).await, 3, "the three processed early");
    assert_eq!(purgeable(Retained::Outbox).await, 1, "the one delivered early");

    // Small batches, oldest first, until nothing is left to purge.
    assert_eq!(store.purge(Retained::ForensicLog, cutoff, 4).await.unwrap(), 4);
    assert_eq!(store.purge(Retained::ForensicLog, cutoff, 4).await.unwrap(), 2);
    assert_eq!(store.purge(Retained::ForensicLog, cutoff, 4).await.unwrap(), 0);
    assert_eq!(store.purge(Retained::Inbox, cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.purge(Retained::Inbox, cutoff, 2).await.unwrap(), 1);
    assert_eq!(store.purge(Retained::Inbox, cutoff, 2).await.unwrap(), 0);
    assert_eq!(store.purge(Retained::Outbox, cutoff, 10).await.unwrap(), 1);
    for kind in Retained::ALL {
        assert_eq!(purgeable(kind).await, 0, "{kind:?}");
    }

    // What is left: the young forensic row; the late, dead and pending events (whose
    // forensic rows are gone: the inbox keeps working without them); the late, dead
    // and retrying messages.
    let all = |status| InboxFilter {
        status,
        provider: None,
        limit: 100,
    };
    let events: Vec<String> = store
        .list(&all(None))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id.to_string())
        .collect();
    assert_eq!(events, ["evt_pending", "evt_dead", "evt_settled_4"]);
    assert_eq!(
        store.replay(dead, t0() + Duration::days(100)).await.unwrap(),
        Replay::Requeued
    );
    assert_eq!(store.dead_count().await.unwrap(), 1);
    assert_eq!(store.backlog().await.unwrap(), 2, "the dead and the retrying message");
    assert_eq!(
        store
            .count_purgeable(Retained::Outbox, late + Duration::seconds(1))
            .await
            .unwrap(),
        1,
        "the late delivery, once old enough"
    );
    assert_eq!(
        store
            .count_purgeable(Retained::ForensicLog, late + Duration::seconds(1))
            .await
            .unwrap(),
        1,
        "the young forensic row, once old enough"
    );
}

fn scheduled(provider_ref: &str, due: Option<DateTime<Utc>>) -> NewPayment {
    NewPayment {
        account: String::new(),
        next_reconcile_at: due,
        ..new_payment(provider_ref)
    }
}

pub async fn schedules_claims_and_clears_provider_checks<S: Store>(store: Arc<S>) {
    let at = |secs: i64| t0() + Duration::seconds(secs);
    let first = store
        .create_payment(&scheduled("pi_first", Some(at(600))))
        .await
        .unwrap();
    let later = store
        .create_payment(&scheduled("pi_later", Some(at(1200))))
        .await
        .unwrap();
    store.create_payment(&scheduled("pi_never", None)).await.unwrap();
    // Scheduled, then paid by its callback before its check came due.
    let settled = store
        .create_payment(&scheduled("pi_paid", Some(at(600))))
        .await
        .unwrap();
    let inbox = admit(&*store, "evt_paid_early").await;
    let paid = event("evt_paid_early", "pi_paid", PaymentChange::paid(None));
    store
        .commit_application(inbox, &settled.apply(&paid, at(60)))
        .await
        .unwrap();

    assert_eq!(store.count_due_checks(at(599)).await.unwrap(), 0);
    assert_eq!(
        store.count_due_checks(at(600)).await.unwrap(),
        1,
        "the paid one is not due"
    );

    // Claimed once, held until the lease ends; the settled one leaves the schedule.
    let claimed = store.claim_due_checks(at(700), 10, at(760)).await.unwrap();
    assert_eq!(
        claimed.iter().map(|c| (c.payment.id, c.checks)).collect::<Vec<_>>(),
        vec![(first.id, 0)]
    );
    assert_eq!(claimed[0].payment.status, PaymentStatus::Pending);
    assert!(
        store.claim_due_checks(at(700), 10, at(760)).await.unwrap().is_empty(),
        "held"
    );
    let crashed = store.claim_due_checks(at(761), 10, at(821)).await.unwrap();
    assert_eq!(
        crashed.len(),
        1,
        "a checker that died leaves it due again after its lease"
    );

    // Checked: the next check is due later, its count kept.
    store.schedule_check(first.id, 1, Some(at(2400))).await.unwrap();
    let both = store.claim_due_checks(at(2400), 10, at(2460)).await.unwrap();
    let mut seen: Vec<_> = both.iter().map(|c| (c.payment.id, c.checks)).collect();
    seen.sort_by_key(|(id, _)| *id == first.id);
    assert_eq!(seen, vec![(later.id, 0), (first.id, 1)]);

    // No more checks: never claimed again; nor is the settled one, however late.
    store.schedule_check(first.id, 2, None).await.unwrap();
    store.schedule_check(later.id, 1, Some(at(5000))).await.unwrap();
    let years = at(10 * 365 * 86_400);
    let last = store.claim_due_checks(years, 10, years).await.unwrap();
    assert_eq!(last.iter().map(|c| c.payment.id).collect::<Vec<_>>(), vec![later.id]);
    assert_eq!(store.count_due_checks(years).await.unwrap(), 1, "held, still scheduled");
    store.schedule_check(later.id, 2, None).await.unwrap();
    assert_eq!(store.count_due_checks(years).await.unwrap(), 0);
}

/// Two checkers (two instances) claiming at once never get the same payment.
pub async fn concurrent_claims_of_due_checks_never_overlap<S: Store>(store: Arc<S>) {
    let due = t0() + Duration::seconds(600);
    for n in 0..40 {
        store
            .create_payment(&scheduled(&format!("pi_due_{n}"), Some(due)))
            .await
            .unwrap();
    }
    let lease = due + Duration::seconds(60);
    let claims = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_due_checks(due, 15, lease).await.unwrap() })
    });
    let mut ids: Vec<PaymentId> = Vec::new();
    for claim in claims {
        ids.extend(claim.await.unwrap().into_iter().map(|c| c.payment.id));
    }
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "a payment was claimed twice");
    assert_eq!(ids.len(), 40, "between them they took every due payment");
}

pub async fn lists_payments_newest_first_a_page_at_a_time_with_filters<S: Store>(store: Arc<S>) {
    use payhook_domain::{PageCursor, PaymentFilter};
    let at = |secs: i64| t0() + Duration::seconds(secs);
    let mut made = Vec::new();
    for n in 1..=5 {
        let mut new = new_payment(&format!("pi_list_{n}"));
        new.created_at = at(n);
        new.merchant_ref = Some(format!("order-{}", n % 2));
        new.customer_email = Some(format!("c{n}@example.com"));
        made.push(store.create_payment(&new).await.unwrap());
    }
    let ids = |page: &[Payment]| page.iter().map(|p| p.id).collect::<Vec<_>>();
    let page = |after: Option<&Payment>, limit: u32| {
        let store = store.clone();
        let after = after.map(|p| PageCursor {
            created_at: p.created_at,
            id: p.id,
        });
        async move {
            store
                .list_payments(&PaymentFilter {
                    after,
                    limit,
                    ..PaymentFilter::default()
                })
                .await
                .unwrap()
        }
    };
    let first = page(None, 2).await;
    assert_eq!(ids(&first), vec![made[4].id, made[3].id], "newest first");
    // A payment created while the client pages does not shift the pages.
    let mut late = new_payment("pi_list_late");
    late.created_at = at(60);
    late.merchant_ref = None;
    store.create_payment(&late).await.unwrap();
    let second = page(first.last(), 2).await;
    assert_eq!(ids(&second), vec![made[2].id, made[1].id]);
    let third = page(second.last(), 2).await;
    assert_eq!(ids(&third), vec![made[0].id]);
    assert!(page(third.last(), 2).await.is_empty());

    // Two payments created in the same microsecond: ordered by id, neither skipped.
    let mut twins = Vec::new();
    for n in 0..2 {
        let mut new = new_payment(&format!("pi_twin_{n}"));
        new.created_at = at(120);
        new.merchant_ref = None;
        twins.push(store.create_payment(&new).await.unwrap().id);
    }
    twins.sort_by_key(|id| id.as_uuid());
    let one = page(None, 1).await;
    let two = page(one.last(), 1).await;
    assert_eq!((one[0].id, two[0].id), (twins[1], twins[0]));

    let filtered = |filter: PaymentFilter| {
        let store = store.clone();
        async move {
            store
                .list_payments(&PaymentFilter { limit: 100, ..filter })
                .await
                .unwrap()
        }
    };
    let odd = filtered(PaymentFilter {
        merchant_ref: Some("order-1".into()),
        ..PaymentFilter::default()
    })
    .await;
    assert_eq!(ids(&odd), vec![made[4].id, made[2].id, made[0].id]);
    let by_email = filtered(PaymentFilter {
        customer_email: Some("c2@example.com".into()),
        ..PaymentFilter::default()
    })
    .await;
    assert_eq!(ids(&by_email), vec![made[1].id]);
    let inbox = admit(&*store, "evt_list_paid").await;
    let paid = event("evt_list_paid", "pi_list_3", PaymentChange::paid(None));
    store
        .commit_application(inbox, &made[2].apply(&paid, at(200)))
        .await
        .unwrap();
    let paid_only = filtered(PaymentFilter {
        status: Some(PaymentStatus::Paid),
        ..PaymentFilter::default()
    })
    .await;
    assert_eq!(ids(&paid_only), vec![made[2].id]);
    let xendit = filtered(PaymentFilter {
        provider: Some(Provider::Xendit),
        ..PaymentFilter::default()
    })
    .await;
    assert!(xendit.is_empty());
}

fn dispute(provider_ref: &str, status: &str, closed: bool) -> payhook_domain::DisputeReport {
    payhook_domain::DisputeReport {
        provider_ref: provider_ref.to_owned(),
        amount: Some(1500),
        currency: Some(Currency::parse("USD").unwrap()),
        reason: Some("fraudulent".to_owned()),
        status: status.to_owned(),
        evidence_due_by: Some(t0() + Duration::days(7)),
        closed,
    }
}

/// A dispute is a row: its first report opens it (`dispute.opened`), reports move it,
/// the closing one closes it (`dispute.closed`) for good; the same report again
/// changes and publishes nothing; several per payment, oldest first.
pub async fn keeps_disputes_as_rows_and_publishes_their_opening_and_closing<S: Store>(store: Arc<S>) {
    let payment = store.create_payment(&new_payment("pi_1")).await.unwrap();
    let topics = async |store: &S| -> Vec<String> {
        let far = t0() + Duration::days(30);
        let claimed = store.claim_unpublished(far, 100, far).await.unwrap();
        let ids: Vec<i64> = claimed.iter().map(|m| m.id).collect();
        store.mark_published(&ids, far).await.unwrap();
        claimed.into_iter().map(|m| m.topic).collect()
    };
    let opened = store
        .record_dispute(payment.id, &dispute("dp_1", "needs_response", false), t0())
        .await
        .unwrap();
    assert!(opened.opened && !opened.closed);
    assert_eq!(opened.dispute.amount, Some(1500));
    assert_eq!(opened.dispute.evidence_due_by, Some(t0() + Duration::days(7)));
    assert_eq!(topics(&store).await, vec!["dispute.opened"]);

    let again = store
        .record_dispute(
            payment.id,
            &dispute("dp_1", "needs_response", false),
            t0() + Duration::seconds(1),
        )
        .await
        .unwrap();
    assert!(!again.opened && !again.closed);
    assert_eq!(again.dispute.id, opened.dispute.id);
    let moved = store
        .record_dispute(
            payment.id,
            &dispute("dp_1", "under_review", false),
            t0() + Duration::seconds(2),
        )
        .await
        .unwrap();
    assert_eq!(moved.dispute.status, "under_review");
    assert!(topics(&store).await.is_empty(), "moves publish nothing");

    let closed = store
        .record_dispute(payment.id, &dispute("dp_1", "lost", true), t0() + Duration::seconds(3))
        .await
        .unwrap();
    assert!(closed.closed);
    assert_eq!(closed.dispute.closed_at, Some(t0() + Duration::seconds(3)));
    let late = store
        .record_dispute(
            payment.id,
            &dispute("dp_1", "under_review", false),
            t0() + Duration::seconds(4),
        )
        .await
        .unwrap();
    assert_eq!(late.dispute.status, "lost", "a closed dispute stays closed");
    assert_eq!(topics(&store).await, vec!["dispute.closed"]);

    store
        .record_dispute(
            payment.id,
            &dispute("dp_2", "warning_needs_response", false),
            t0() + Duration::seconds(5),
        )
        .await
        .unwrap();
    let all = store.disputes_of(payment.id).await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.provider_ref.as_str()).collect::<Vec<_>>(),
        vec!["dp_1", "dp_2"]
    );
    let other = store.create_payment(&new_payment("pi_2")).await.unwrap();
    assert!(store.disputes_of(other.id).await.unwrap().is_empty());

    // Racing first reports and a racing close: one row, opened once, closed once.
    let racing: Vec<_> = (0..10)
        .map(|n| {
            let store = store.clone();
            let closed = n == 5;
            tokio::spawn(async move {
                let status = if closed { "won" } else { "needs_response" };
                store
                    .record_dispute(other.id, &dispute("dp_3", status, closed), t0() + Duration::seconds(n))
                    .await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for handle in racing {
        // A racing first insert may lose on a store that refuses instead of waiting:
        // it is retried, as the worker retries a failed event.
        match handle.await.unwrap() {
            Ok(recorded) => outcomes.push(recorded),
            Err(StoreError::Unavailable(_) | StoreError::Conflict(_)) => {}
            Err(other) => panic!("{other}"),
        }
    }
    assert_eq!(outcomes.iter().filter(|r| r.opened).count(), 1);
    assert!(outcomes.iter().filter(|r| r.closed).count() <= 1);
    let rows = store.disputes_of(other.id).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].status, "won",
        "the close was not undone by a racing open report"
    );
}

/// A paid payment of 1250 (see [`new_payment`]), through the state machine.
/// A payment of `provider_ref` created and paid through the store's own ports.
/// Applies `change` to `payment` at `at` as an event `event_id` would (admitted, then
/// committed), for tests that need a payment to move; answers the payment after.
pub async fn apply_change<S: Store>(
    store: &S,
    payment: &Payment,
    event_id: &str,
    change: PaymentChange,
    at: DateTime<Utc>,
) -> Payment {
    let reference = payment.provider_ref.clone().unwrap_or_default();
    let mut event = event(event_id, &reference, change);
    event.provider = payment.provider;
    event.payment.payment_id = Some(payment.id);
    let inbox = match store.admit(&request(event_id), &event).await.unwrap() {
        Admission::Accepted(id) => id,
        other => panic!("{event_id} was not new: {other:?}"),
    };
    let current = store.payment(payment.id).await.unwrap().unwrap();
    let app = current.apply(&event, at);
    store.commit_application(inbox, &app).await.unwrap();
    store.payment(payment.id).await.unwrap().unwrap()
}

pub async fn paid_payment<S: Store>(store: &S, provider_ref: &str) -> Payment {
    let payment = store.create_payment(&new_payment(provider_ref)).await.unwrap();
    let event_id = format!("evt_paid_{provider_ref}");
    let inbox = admit(store, &event_id).await;
    let app = payment.apply(&event(&event_id, provider_ref, PaymentChange::paid(None)), t0());
    store.commit_application(inbox, &app).await.unwrap();
    store.payment(payment.id).await.unwrap().unwrap()
}

fn refund_of(payment: &Payment, amount: Option<i64>, key: Option<&str>) -> payhook_domain::NewRefund {
    payhook_domain::NewRefund {
        id: payhook_domain::RefundId::from_uuid(uuid::Uuid::new_v4()),
        payment_id: payment.id,
        amount,
        reason: Some("requested_by_customer".to_owned()),
        idempotency_key: key.map(str::to_owned),
        created_at: t0() + Duration::seconds(1),
    }
}

/// What is left to refund bounds each reservation; the whole remainder is the
/// default; a key answers its first refund; an unpaid payment has nothing to refund.
pub async fn reserves_refunds_within_what_was_paid<S: Store>(store: Arc<S>) {
    use payhook_domain::{RefundOrigin, RefundStatus, Reservation};
    let paid = paid_payment(&*store, "pi_refund").await;
    let amount = paid.amount.amount_minor();
    let Reservation::New(first) = store
        .reserve_refund(&refund_of(&paid, Some(300), Some("k1")))
        .await
        .unwrap()
    else {
        panic!("a refund of 300 of {amount} is reserved")
    };
    assert_eq!(
        (first.status, first.origin),
        (RefundStatus::Pending, RefundOrigin::Merchant)
    );
    assert_eq!(first.amount.amount_minor(), 300);
    assert_eq!(
        store
            .reserve_refund(&refund_of(&paid, Some(999), Some("k1")))
            .await
            .unwrap(),
        Reservation::Existing(first.clone()),
        "the same key answers the first refund"
    );
    assert_eq!(
        store
            .reserve_refund(&refund_of(&paid, Some(amount), None))
            .await
            .unwrap(),
        Reservation::Exceeds {
            available: amount - 300,
            currency: paid.amount.currency()
        }
    );
    for nothing in [0, -1] {
        assert!(matches!(
            store
                .reserve_refund(&refund_of(&paid, Some(nothing), None))
                .await
                .unwrap(),
            Reservation::Exceeds { .. }
        ));
    }
    let mut later = refund_of(&paid, None, None);
    later.created_at += Duration::seconds(1);
    let Reservation::New(rest) = store.reserve_refund(&later).await.unwrap() else {
        panic!("the rest is reserved by default")
    };
    assert_eq!(rest.amount.amount_minor(), amount - 300);
    assert!(matches!(
        store.reserve_refund(&refund_of(&paid, None, None)).await.unwrap(),
        Reservation::Exceeds { available: 0, .. }
    ));
    assert_eq!(store.refunds_of(paid.id).await.unwrap(), vec![first.clone(), rest]);
    assert_eq!(store.refund(first.id).await.unwrap(), Some(first));

    let unpaid = store.create_payment(&new_payment("pi_unpaid")).await.unwrap();
    assert_eq!(
        store.reserve_refund(&refund_of(&unpaid, None, None)).await.unwrap(),
        Reservation::NotRefundable(PaymentStatus::Pending)
    );
    let mut ghost = refund_of(&unpaid, None, None);
    ghost.payment_id = PaymentId::from_uuid(uuid::Uuid::new_v4());
    assert_eq!(store.reserve_refund(&ghost).await.unwrap(), Reservation::NoPayment);
}

/// Twenty refunds of 100 asked for at once on a payment of 1250: twelve are reserved,
/// the others refused, never more than was paid.
pub async fn concurrent_refund_reservations_never_exceed_the_payment<S: Store>(store: Arc<S>) {
    use payhook_domain::Reservation;
    let paid = paid_payment(&*store, "pi_race").await;
    let asks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            let ask = refund_of(&paid, Some(100), None);
            tokio::spawn(async move { store.reserve_refund(&ask).await })
        })
        .collect();
    let mut reserved = 0;
    for ask in asks {
        match ask.await.unwrap() {
            Ok(Reservation::New(_)) => reserved += 1,
            Ok(Reservation::Exceeds { .. }) => {}
            // A store may refuse a transaction that waited too long; the caller retries.
            Err(StoreError::Unavailable(_) | StoreError::Conflict(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    let total: i64 = store
        .refunds_of(paid.id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.amount.amount_minor())
        .sum();
    assert!(
        total <= paid.amount.amount_minor(),
        "refunds of {total} on {}",
        paid.amount.amount_minor()
    );
    assert_eq!(total, reserved * 100);
    assert_eq!(
        reserved,
        paid.amount.amount_minor() / 100,
        "every refund that fits is reserved"
    );
}

/// Pending refunds are due for a check from their creation, one claim at a time (a
/// claimed refund is leased); a settled refund is taken off the schedule; the next
/// check comes when scheduled, and none after `None`. A pending refund first seen in
/// the provider's events is checked too.
pub async fn schedules_claims_and_clears_refund_checks<S: Store>(store: Arc<S>) {
    use payhook_domain::{RefundReport, RefundStatus, Reservation};
    let paid = paid_payment(&*store, "pi_checked").await;
    let reserve = async |amount: i64| match store
        .reserve_refund(&refund_of(&paid, Some(amount), None))
        .await
        .unwrap()
    {
        Reservation::New(refund) => refund,
        other => panic!("{other:?}"),
    };
    let waiting = reserve(300).await;
    let settled = reserve(200).await;
    let at = t0() + Duration::seconds(5);
    store
        .record_refund_answer(waiting.id, Some("re_waiting".into()), RefundStatus::Pending, None, at)
        .await
        .unwrap();
    store
        .record_refund_answer(settled.id, Some("re_settled".into()), RefundStatus::Succeeded, None, at)
        .await
        .unwrap();
    let lease = at + Duration::minutes(5);
    let claim = async |now: DateTime<Utc>| {
        store
            .claim_due_refund_checks(now, 10, now + Duration::minutes(5))
            .await
            .unwrap()
    };

    assert!(claim(t0()).await.is_empty(), "not due before its creation");
    let due = claim(at).await;
    assert_eq!(due.len(), 1, "only the pending refund: {due:?}");
    assert_eq!(due[0].refund.id, waiting.id);
    assert_eq!(due[0].refund.provider_ref.as_deref(), Some("re_waiting"));
    assert_eq!(
        (due[0].provider, due[0].payment_ref.as_deref(), due[0].checks),
        (paid.provider, paid.provider_ref.as_deref(), 0)
    );
    assert!(claim(at).await.is_empty(), "a claimed refund is held");
    assert_eq!(claim(lease).await.len(), 1, "a lease that runs out leaves it due again");

    let next = t0() + Duration::hours(1);
    store.schedule_refund_check(waiting.id, 1, Some(next)).await.unwrap();
    assert!(claim(next - Duration::seconds(1)).await.is_empty());
    let due = claim(next).await;
    assert_eq!((due.len(), due[0].checks), (1, 1));
    store.schedule_refund_check(waiting.id, 2, None).await.unwrap();
    assert!(
        claim(t0() + Duration::days(3650)).await.is_empty(),
        "no check after None"
    );

    // A dashboard refund Stripe reports pending is asked about too.
    store
        .settle_refunds(
            paid.id,
            &RefundReport::One {
                provider_ref: "re_dashboard".into(),
                refund_id: None,
                amount: 100,
                currency: paid.amount.currency(),
                status: RefundStatus::Pending,
            },
            at,
        )
        .await
        .unwrap();
    let due = claim(t0() + Duration::days(1)).await;
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].refund.provider_ref.as_deref(), Some("re_dashboard"));

    // Settled while scheduled: taken off the schedule when it comes due.
    store
        .settle_refunds(
            paid.id,
            &RefundReport::One {
                provider_ref: "re_dashboard".into(),
                refund_id: None,
                amount: 100,
                currency: paid.amount.currency(),
                status: RefundStatus::Succeeded,
            },
            at,
        )
        .await
        .unwrap();
    assert!(claim(t0() + Duration::days(2)).await.is_empty());
}

/// The refund topics published since the last call (marking them delivered).
async fn refund_topics<S: Store>(store: &S) -> Vec<(String, i64)> {
    let far = t0() + Duration::days(30);
    let claimed = store.claim_unpublished(far, 100, far).await.unwrap();
    store
        .mark_published(&claimed.iter().map(|m| m.id).collect::<Vec<_>>(), far)
        .await
        .unwrap();
    claimed
        .into_iter()
        .filter(|m| m.topic.starts_with("refund."))
        .map(|m| (m.topic, m.payload["amount"].as_i64().unwrap_or_default()))
        .collect()
}

/// A provider's answer, a refund event, a cumulative total and a dashboard refund each
/// settle what they name, publish once, and never count a refund twice.
pub async fn settles_refunds_by_what_the_provider_reports<S: Store>(store: Arc<S>) {
    use payhook_domain::{RefundOrigin, RefundReport, RefundStatus, Reservation};
    let paid = paid_payment(&*store, "pi_settle").await;
    let eur = paid.amount.currency();
    refund_topics(&*store).await;
    let at = t0() + Duration::seconds(10);
    let reserve = async |amount: i64, offset: i64| {
        let mut ask = refund_of(&paid, Some(amount), None);
        ask.created_at += Duration::seconds(offset);
        match store.reserve_refund(&ask).await.unwrap() {
            Reservation::New(refund) => refund,
            other => panic!("{other:?}"),
        }
    };
    let first = reserve(300, 0).await;
    let second = reserve(200, 1).await;

    // The provider answered the first: pending, with its id.
    let answered = store
        .record_refund_answer(first.id, Some("re_1".into()), RefundStatus::Pending, None, at)
        .await
        .unwrap();
    assert_eq!(
        (answered.status, answered.provider_ref.as_deref()),
        (RefundStatus::Pending, Some("re_1"))
    );
    assert!(refund_topics(&*store).await.is_empty(), "pending publishes nothing");

    // Its event settles it, once.
    let one = RefundReport::One {
        provider_ref: "re_1".into(),
        refund_id: None,
        amount: 300,
        currency: eur,
        status: RefundStatus::Succeeded,
    };
    let settled = store.settle_refunds(paid.id, &one, at).await.unwrap();
    assert_eq!(settled.succeeded_total, 300);
    assert_eq!(refund_topics(&*store).await, vec![("refund.succeeded".to_owned(), 300)]);
    let again = store
        .settle_refunds(paid.id, &one, at + Duration::seconds(1))
        .await
        .unwrap();
    assert_eq!((again.succeeded_total, again.changed.len()), (300, 0));
    assert!(refund_topics(&*store).await.is_empty());

    // A total of 850: the pending 200 fits and succeeds, 350 was refunded at the provider.
    let total = RefundReport::Total {
        refunded_total: 850,
        currency: eur,
    };
    let settled = store
        .settle_refunds(paid.id, &total, at + Duration::seconds(2))
        .await
        .unwrap();
    assert_eq!(settled.succeeded_total, 850);
    let refunds = store.refunds_of(paid.id).await.unwrap();
    assert_eq!(
        refunds.iter().find(|r| r.id == second.id).unwrap().status,
        RefundStatus::Succeeded
    );
    let dashboard = refunds.iter().find(|r| r.origin == RefundOrigin::Provider).unwrap();
    assert_eq!(
        (dashboard.amount.amount_minor(), dashboard.provider_ref.as_deref()),
        (350, None)
    );
    let mut topics = refund_topics(&*store).await;
    topics.sort();
    assert_eq!(
        topics,
        vec![
            ("refund.succeeded".to_owned(), 200),
            ("refund.succeeded".to_owned(), 350)
        ]
    );

    // That dashboard refund's own event names it: no second refund of 350.
    let named = RefundReport::One {
        provider_ref: "re_dash".into(),
        refund_id: None,
        amount: 350,
        currency: eur,
        status: RefundStatus::Succeeded,
    };
    let settled = store
        .settle_refunds(paid.id, &named, at + Duration::seconds(3))
        .await
        .unwrap();
    assert_eq!(settled.succeeded_total, 850);
    assert_eq!(store.refunds_of(paid.id).await.unwrap().len(), 3);
    assert!(refund_topics(&*store).await.is_empty(), "naming publishes nothing");

    // A refund that failed at the provider, and money in another currency.
    let third = reserve(100, 2).await;
    let failed = store
        .record_refund_answer(
            third.id,
            Some("re_3".into()),
            RefundStatus::Failed,
            Some("insufficient_funds".into()),
            at,
        )
        .await
        .unwrap();
    assert_eq!(failed.failure_reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(refund_topics(&*store).await, vec![("refund.failed".to_owned(), 100)]);
    let foreign = RefundReport::Total {
        refunded_total: 5_000,
        currency: Currency::parse("USD").unwrap(),
    };
    let settled = store.settle_refunds(paid.id, &foreign, at).await.unwrap();
    assert_eq!((settled.succeeded_total, settled.changed.len()), (850, 0));
}

fn mirror_write(account: &str, id: &str, event: &str, created: i64, status: &str) -> payhook_domain::MirrorWrite {
    let data =
        format!(r#"{{"id":"{id}","object":"invoice","status":"{status}","customer":"cus_{account}x","n":"{event}"}}"#);
    payhook_domain::MirrorWrite::of(
        account,
        payhook_domain::StripeObjectType::Invoice,
        &data,
        false,
        event.into(),
        created,
    )
    .unwrap()
}

/// Writes replace a row only when newer (a later second, or the same second and a
/// later status); ties and replays are told apart; accounts never mix; events that
/// only update the mirror are marked processed with what happened.
pub async fn mirrors_stripe_objects_newest_write_first_per_account<S: Store>(store: Arc<S>) {
    use payhook_domain::{MirrorFilter, MirrorOutcome as O, StripeObjectType};
    let at = t0();
    let (e1, e2, e3, e4, e5) = (
        admit(&*store, "evt_m1").await,
        admit(&*store, "evt_m2").await,
        admit(&*store, "evt_m3").await,
        admit(&*store, "evt_m4").await,
        admit(&*store, "evt_m5").await,
    );
    let outcomes = store
        .apply_mirror_events(
            &[
                (e1, mirror_write("", "in_1", "evt_m1", 100, "open")),
                (e2, mirror_write("", "in_1", "evt_m2", 99, "paid")),
                (e3, mirror_write("", "in_1", "evt_m3", 100, "draft")),
                (e4, mirror_write("", "in_1", "evt_m4", 100, "open")),
                (e5, mirror_write("acct_1", "in_1", "evt_m5", 1, "draft")),
            ],
            at,
        )
        .await
        .unwrap();
    assert_eq!(outcomes, [O::Written, O::Older, O::Older, O::Tie, O::Written]);
    let results: Vec<(String, Option<String>)> = store
        .list(&InboxFilter {
            status: None,
            provider: None,
            limit: 10,
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event_id, e.result))
        .collect();
    assert!(
        results.contains(&("evt_m1".into(), Some("applied".into()))),
        "{results:?}"
    );
    assert!(
        results.contains(&("evt_m2".into(), Some("stale_transition".into()))),
        "{results:?}"
    );
    let stored = store
        .object("", StripeObjectType::Invoice, "in_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.source_event_id, "evt_m1");
    assert!(stored.data.contains("evt_m1"));
    assert_eq!(
        store
            .write_object(&mirror_write("", "in_1", "evt_m1", 100, "open"), at)
            .await
            .unwrap(),
        O::Same
    );
    // The same second, a later status: written.
    assert_eq!(
        store
            .write_object(&mirror_write("", "in_1", "evt_m6", 100, "paid"), at)
            .await
            .unwrap(),
        O::Written
    );
    let theirs = store
        .object("acct_1", StripeObjectType::Invoice, "in_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (theirs.account.as_str(), theirs.source_event_id.as_str()),
        ("acct_1", "evt_m5")
    );
    assert!(store
        .object("acct_2", StripeObjectType::Invoice, "in_1")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .object("", StripeObjectType::Customer, "in_1")
        .await
        .unwrap()
        .is_none());
    for n in 2..6 {
        store
            .write_object(&mirror_write("", &format!("in_{n}"), "evt_x", 1, "open"), at)
            .await
            .unwrap();
    }
    let page = |after: Option<&str>, customer: Option<&str>| MirrorFilter {
        account: String::new(),
        object_type: StripeObjectType::Invoice,
        customer: customer.map(str::to_owned),
        after: after.map(str::to_owned),
        limit: 2,
    };
    let ids = |objects: Vec<payhook_domain::MirroredObject>| -> Vec<String> {
        objects.into_iter().map(|o| o.object_id).collect()
    };
    assert_eq!(
        ids(store.list_objects(&page(None, None)).await.unwrap()),
        ["in_1", "in_2"]
    );
    assert_eq!(
        ids(store.list_objects(&page(Some("in_2"), None)).await.unwrap()),
        ["in_3", "in_4"]
    );
    assert_eq!(
        ids(store.list_objects(&page(None, Some("cus_x"))).await.unwrap()),
        ["in_1", "in_2"]
    );
    assert!(store
        .list_objects(&page(None, Some("cus_nobody")))
        .await
        .unwrap()
        .is_empty());
}

/// A backfill's page and where it then stands are stored together; per account, type
/// and `since`.
pub async fn keeps_where_a_backfill_stands_with_its_pages<S: Store>(store: Arc<S>) {
    use payhook_domain::{BackfillCursor, StripeObjectType};
    assert_eq!(
        store
            .backfill_cursor("", StripeObjectType::Invoice, None)
            .await
            .unwrap(),
        None
    );
    let cursor = BackfillCursor {
        account: String::new(),
        object_type: StripeObjectType::Invoice,
        since: None,
        starting_after: Some("in_2".into()),
        stored: 2,
        done: false,
    };
    let writes = [
        mirror_write("", "in_1", "backfill:1", 1, "open"),
        mirror_write("", "in_2", "backfill:1", 1, "open"),
    ];
    assert_eq!(store.save_backfill_page(&cursor, &writes, t0()).await.unwrap().len(), 2);
    assert_eq!(
        store
            .backfill_cursor("", StripeObjectType::Invoice, None)
            .await
            .unwrap(),
        Some(cursor.clone())
    );
    assert!(store
        .object("", StripeObjectType::Invoice, "in_2")
        .await
        .unwrap()
        .is_some());
    let done = BackfillCursor {
        done: true,
        stored: 3,
        starting_after: Some("in_3".into()),
        ..cursor.clone()
    };
    store
        .save_backfill_page(&done, &[mirror_write("", "in_3", "backfill:2", 2, "open")], t0())
        .await
        .unwrap();
    assert_eq!(
        store
            .backfill_cursor("", StripeObjectType::Invoice, None)
            .await
            .unwrap(),
        Some(done)
    );
    assert_eq!(
        store
            .backfill_cursor("acct_1", StripeObjectType::Invoice, None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .backfill_cursor("", StripeObjectType::Invoice, Some(5))
            .await
            .unwrap(),
        None
    );
}

/// A plan is stored whole, found by id and by code; a second plan with a taken code is
/// refused with the first.
pub async fn stores_plans_once_per_code<S: Store>(store: Arc<S>) {
    use payhook_domain::ports::PlanCreated;
    use payhook_domain::{Interval, Plan, PlanId};
    let plan = |code: &str, at: i64| Plan {
        id: PlanId::from_uuid(uuid::Uuid::new_v4()),
        code: code.into(),
        name: "Pro monthly".into(),
        amount: Money::new(9_900, Currency::parse("USD").unwrap()).unwrap(),
        interval: Interval::Month,
        interval_count: 1,
        trial_days: 14,
        stripe_price_id: Some("price_123".into()),
        active: true,
        created_at: t0() + Duration::seconds(at),
    };
    let pro = plan("pro-monthly", 1);
    assert_eq!(
        store.create_plan(&pro).await.unwrap(),
        PlanCreated::Created(pro.clone())
    );
    let again = plan("pro-monthly", 2);
    assert_eq!(
        store.create_plan(&again).await.unwrap(),
        PlanCreated::CodeTaken(pro.clone())
    );
    let basic = Plan {
        interval: Interval::Year,
        stripe_price_id: None,
        trial_days: 0,
        ..plan("basic", 3)
    };
    store.create_plan(&basic).await.unwrap();
    assert_eq!(store.plan(pro.id).await.unwrap(), Some(pro.clone()));
    assert_eq!(store.plan_by_code("basic").await.unwrap(), Some(basic.clone()));
    assert_eq!(store.plan(again.id).await.unwrap(), None);
    assert_eq!(store.plans().await.unwrap(), vec![pro, basic]);
}
