//! Unit tests of the processor against mocked ports.

use super::*;
use chrono::TimeZone;
use mockall::predicate::eq;
use payhook_domain::ports::{Committed, MockClock, MockPaymentStore, MockWebhookInbox};
use payhook_domain::{
    Currency, EventId, InboxId, Money, PaymentChange, PaymentDetails, PaymentRef, PaymentStatus, Provider,
};

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0).single().unwrap()
}

fn clock() -> Arc<MockClock> {
    let mut c = MockClock::new();
    c.expect_now().returning(now);
    Arc::new(c)
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
    }
}

fn usd(amount: i64) -> Money {
    Money::new(amount, Currency::parse("USD").unwrap()).unwrap()
}

fn payment(status: PaymentStatus) -> Payment {
    Payment {
        account: String::new(),
        id: PaymentId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap(),
        provider: Provider::Stripe,
        provider_ref: Some("pi_1".into()),
        merchant_ref: None,
        amount: usd(500),
        status,
        paid_amount: 0,
        refunded_amount: 0,
        dispute_status: None,
        checkout_url: None,
        qr_text: None,
        customer_email: None,
        description: None,
        metadata: serde_json::json!({}),
        created_at: now(),
        updated_at: now(),
        paid_at: None,
        expires_at: None,
        failure_reason: None,
        checkout_extras: None,
        subscription_id: None,
        version: 7,
    }
}

fn claimed(change: PaymentChange, reference: PaymentRef, details: Option<PaymentDetails>) -> ClaimedEvent {
    ClaimedEvent {
        id: InboxId(42),
        attempts: 0,
        event: WebhookEvent {
            mirror: None,
            subscription: None,
            provider: Provider::Stripe,
            event_id: EventId::parse("evt_1").unwrap(),
            event_type: "payment_intent.succeeded".into(),
            occurred_at: now(),
            payment: reference,
            change,
            details,
            confirm_with_provider: false,
        },
    }
}

fn by_ref() -> PaymentRef {
    PaymentRef {
        account: None,
        payment_id: None,
        provider_ref: Some("pi_1".into()),
        aliases: Vec::new(),
    }
}

/// What a store answers for a batch that wrote no domain events.
fn commits(commits: Vec<Commit>) -> Committed {
    Committed {
        commits,
        messages: Vec::new(),
    }
}

fn processor(inbox: MockWebhookInbox, store: MockPaymentStore) -> Processor {
    leasing_for(Duration::from_secs(30), inbox, store)
}

fn leasing_for(lease: Duration, inbox: MockWebhookInbox, store: MockPaymentStore) -> Processor {
    waking(Arc::new(Notify::new()), lease, inbox, store)
}

/// A processor that wakes the relay through `published`.
fn waking(published: Arc<Notify>, lease: Duration, inbox: MockWebhookInbox, store: MockPaymentStore) -> Processor {
    Processor::new(
        Arc::new(inbox),
        Arc::new(store),
        Vec::new(),
        clock(),
        policy(),
        lease,
        published,
    )
}

#[tokio::test]
async fn paid_event_commits_the_state_machines_decision() {
    let mut store = MockPaymentStore::new();
    store
        .expect_find_payment()
        .returning(|_, _| Ok(Some(payment(PaymentStatus::Pending))));
    store
        .expect_commit_application()
        .withf(|inbox, app| {
            *inbox == InboxId(42)
                && app.payment.status == PaymentStatus::Paid
                && app.payment.version == 7
                && app.history.len() == 1
                && app.publications.len() == 1
        })
        .times(1)
        .returning(|_, _| Ok(()));
    let p = processor(MockWebhookInbox::new(), store);
    let result = p
        .apply(&claimed(PaymentChange::paid(None), by_ref(), None))
        .await
        .unwrap();
    assert_eq!(result, ProcessingResult::Applied);
}

#[tokio::test]
async fn unknown_provider_payment_is_created_from_the_event() {
    let mut store = MockPaymentStore::new();
    store.expect_find_payment().returning(|_, _| Ok(None));
    store
        .expect_create_payment()
        .withf(|new| new.provider_ref.as_deref() == Some("pi_1") && new.amount == usd(500))
        .times(1)
        .returning(|_| Ok(payment(PaymentStatus::Pending)));
    store.expect_commit_application().times(1).returning(|_, _| Ok(()));
    let details = PaymentDetails {
        amount: usd(500),
        description: None,
        customer_email: None,
        metadata: serde_json::json!({}),
    };
    let p = processor(MockWebhookInbox::new(), store);
    p.apply(&claimed(PaymentChange::paid(None), by_ref(), Some(details)))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_payhook_payment_id_that_is_not_found_is_never_recreated() {
    let mut store = MockPaymentStore::new();
    store.expect_find_payment().returning(|_, _| Ok(None));
    store.expect_create_payment().never();
    let reference = PaymentRef {
        account: None,
        payment_id: Some(payment(PaymentStatus::Pending).id),
        provider_ref: Some("pi_1".into()),
        aliases: Vec::new(),
    };
    let details = PaymentDetails {
        amount: usd(500),
        description: None,
        customer_email: None,
        metadata: serde_json::json!({}),
    };
    let p = processor(MockWebhookInbox::new(), store);
    let err = p
        .apply(&claimed(PaymentChange::paid(None), reference, Some(details)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProcessError::PaymentNotFound { .. }), "{err}");
}

#[tokio::test]
async fn a_lost_race_is_recomputed_from_the_fresh_payment() {
    let mut store = MockPaymentStore::new();
    store
        .expect_find_payment()
        .returning(|_, _| Ok(Some(payment(PaymentStatus::Pending))));
    let mut fresh = payment(PaymentStatus::Paid);
    fresh.version = 8;
    store
        .expect_payment()
        .times(1)
        .returning(move |_| Ok(Some(fresh.clone())));
    let mut seq = mockall::Sequence::new();
    store
        .expect_commit_application()
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Err(StoreError::Conflict("payment".into())));
    store
        .expect_commit_application()
        .withf(|_, app| app.payment.version == 8 && app.result == ProcessingResult::StaleTransition)
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(()));
    let p = processor(MockWebhookInbox::new(), store);
    let late_failure = claimed(PaymentChange::status(PaymentStatus::Failed), by_ref(), None);
    assert_eq!(p.apply(&late_failure).await.unwrap(), ProcessingResult::StaleTransition);
}

#[tokio::test]
async fn failures_are_retried_with_backoff_then_dead_lettered() {
    let mut inbox = MockWebhookInbox::new();
    let mut event = claimed(PaymentChange::paid(None), by_ref(), None);
    event.attempts = 0;
    let mut last = event.clone();
    last.id = InboxId(43);
    last.attempts = 2; // the third failure is the last allowed attempt
    inbox
        .expect_claim_due()
        .times(1)
        .returning(move |_, _, _| Ok(vec![event.clone(), last.clone()]));
    inbox
        .expect_record_failure()
        .with(
            eq(InboxId(42)),
            mockall::predicate::function(|e: &str| e.starts_with("payment_not_found")),
            mockall::predicate::function(|at: &Option<DateTime<Utc>>| {
                at.is_some_and(|at| at > now() && at <= now() + chrono::Duration::milliseconds(1200))
            }),
        )
        .times(1)
        .returning(|_, _, _| Ok(()));
    inbox
        .expect_record_failure()
        .with(eq(InboxId(43)), mockall::predicate::always(), eq(None))
        .times(1)
        .returning(|_, _, _| Ok(()));
    let mut store = MockPaymentStore::new();
    store
        .expect_find_payments()
        .returning(|wanted| Ok(wanted.iter().map(|_| None).collect()));
    store.expect_find_payment().returning(|_, _| Ok(None));
    store.expect_commit_applications().never();
    let p = processor(inbox, store);
    assert_eq!(p.run_batch(10, 2).await.unwrap(), 2);
}

fn claimed_for(id: i64, provider_ref: &str, change: PaymentChange) -> ClaimedEvent {
    let mut c = claimed(
        change,
        PaymentRef {
            account: None,
            payment_id: None,
            provider_ref: Some(provider_ref.into()),
            aliases: Vec::new(),
        },
        Some(PaymentDetails {
            amount: usd(500),
            description: None,
            customer_email: None,
            metadata: serde_json::json!({}),
        }),
    );
    c.id = InboxId(id);
    c.event.event_id = EventId::parse(format!("evt_{id}")).unwrap();
    c
}

fn payment_with_ref(provider_ref: &str, id: &str) -> Payment {
    let mut p = payment(PaymentStatus::Pending);
    p.provider_ref = Some(provider_ref.into());
    p.id = PaymentId::parse(id).unwrap();
    p
}

const ID_A: &str = "00000000-0000-4000-8000-00000000000a";
const ID_B: &str = "00000000-0000-4000-8000-00000000000b";

fn batch_inbox(events: Vec<ClaimedEvent>) -> MockWebhookInbox {
    let mut inbox = MockWebhookInbox::new();
    inbox
        .expect_claim_due()
        .times(1)
        .returning(move |_, _, _| Ok(events.clone()));
    inbox
}

#[tokio::test]
async fn a_batch_is_looked_up_and_committed_together_new_payments_written_once() {
    let inbox = batch_inbox(vec![
        claimed_for(1, "pi_a", PaymentChange::paid(None)),
        claimed_for(2, "pi_new", PaymentChange::paid(None)),
        claimed_for(3, "pi_new2", PaymentChange::paid(None)),
    ]);
    let mut store = MockPaymentStore::new();
    store
        .expect_find_payments()
        .withf(|wanted| wanted.len() == 3)
        .times(1)
        .returning(|_| Ok(vec![Some(payment_with_ref("pi_a", ID_A)), None, None]));
    // The new payments are not inserted first: the commit writes them with the event applied.
    store.expect_create_payment().never();
    store
        .expect_commit_applications()
        .withf(|apps, _| {
            let versions: Vec<_> = apps.iter().map(|(_, a)| a.payment.version).collect();
            let refs: Vec<_> = apps.iter().map(|(_, a)| a.payment.provider_ref.as_deref()).collect();
            apps.iter().map(|(id, _)| id.0).collect::<Vec<_>>() == [1, 2, 3]
                && apps.iter().all(|(_, a)| a.payment.status == PaymentStatus::Paid)
                && versions
                    == [
                        payment_with_ref("pi_a", ID_A).version,
                        Payment::UNSTORED,
                        Payment::UNSTORED,
                    ]
                && refs == [Some("pi_a"), Some("pi_new"), Some("pi_new2")]
        })
        .times(1)
        .returning(|apps, _| Ok(commits(vec![Commit::Committed; apps.len()])));
    // Nothing goes one by one.
    store.expect_find_payment().never();
    store.expect_commit_application().never();
    let p = processor(inbox, store);
    assert_eq!(p.run_batch(10, 2).await.unwrap(), 3);
    assert!(p.in_flight_guard().is_empty(), "committed events are finished");
}

#[tokio::test]
async fn two_events_of_one_new_payment_write_it_once_then_apply_the_second() {
    let inbox = batch_inbox(vec![
        claimed_for(1, "pi_new", PaymentChange::paid(None)),
        claimed_for(2, "pi_new", PaymentChange::paid(None)),
    ]);
    let mut store = MockPaymentStore::new();
    store
        .expect_find_payments()
        .times(1)
        .returning(|_| Ok(vec![None, None]));
    store
        .expect_commit_applications()
        .withf(|apps, _| apps.len() == 1 && apps[0].0 .0 == 1 && apps[0].1.payment.version == Payment::UNSTORED)
        .times(1)
        .returning(|_, _| Ok(commits(vec![Commit::Committed])));
    // The second, one by one, finds the payment the batch stored.
    let mut stored = payment_with_ref("pi_new", ID_A);
    stored.status = PaymentStatus::Paid;
    stored.paid_amount = 500;
    store
        .expect_find_payment()
        .times(1)
        .returning(move |_, _| Ok(Some(stored.clone())));
    store.expect_create_payment().never();
    store
        .expect_commit_application()
        .withf(|inbox, app| inbox.0 == 2 && app.payment.version != Payment::UNSTORED)
        .times(1)
        .returning(|_, _| Ok(()));
    let p = processor(inbox, store);
    assert_eq!(p.run_batch(10, 1).await.unwrap(), 2);
}

/// A processor whose batch commits hand domain events to a relay with room for
/// `room`, and the relay's wake-up call.
fn handing_to_relay(
    store: MockPaymentStore,
    room: usize,
) -> (
    Processor,
    crate::processing::handoff::HandedOver<OutboxMessage>,
    Arc<Notify>,
) {
    let (to_relay, relay) = crate::processing::handoff::channel(room, Duration::from_secs(30), clock());
    let published = Arc::new(Notify::new());
    let inbox = batch_inbox(vec![claimed_for(1, "pi_a", PaymentChange::paid(None))]);
    let processor = waking(published.clone(), Duration::from_secs(30), inbox, store).handing_domain_events_to(to_relay);
    (processor, relay, published)
}

fn paid_store(expected_lease: Option<DateTime<Utc>>) -> MockPaymentStore {
    let mut store = MockPaymentStore::new();
    store
        .expect_find_payments()
        .returning(|_| Ok(vec![Some(payment_with_ref("pi_a", ID_A))]));
    store
        .expect_commit_applications()
        .withf(move |_, lease| *lease == expected_lease)
        .times(1)
        .returning(|apps, _| {
            Ok(Committed {
                commits: vec![Commit::Committed],
                messages: vec![OutboxMessage {
                    id: 41,
                    topic: apps[0].1.publications[0].topic.clone(),
                    payload: apps[0].1.publications[0].payload.clone(),
                    created_at: now(),
                    attempts: 0,
                }],
            })
        });
    store
}

#[tokio::test]
async fn a_batchs_domain_events_are_stored_leased_to_the_relay_and_handed_to_it() {
    let (processor, mut relay, published) =
        handing_to_relay(paid_store(Some(now() + chrono::Duration::seconds(30))), 8);
    assert_eq!(processor.run_batch(10, 2).await.unwrap(), 1);
    let handed = relay.take(10);
    assert_eq!(
        handed.iter().map(|m| (m.id, m.topic.as_str())).collect::<Vec<_>>(),
        [(41, "payment.paid")]
    );
    let woken = tokio::time::timeout(Duration::from_millis(50), published.notified()).await;
    assert!(woken.is_err(), "the relay need not claim what it was handed");
}

#[tokio::test]
async fn without_room_a_batchs_domain_events_are_stored_due_and_the_relay_is_woken() {
    let (processor, mut relay, published) = handing_to_relay(paid_store(None), 8);
    assert!(relay.close().is_empty(), "the relay stopped");
    assert_eq!(processor.run_batch(10, 2).await.unwrap(), 1);
    tokio::time::timeout(Duration::from_secs(5), published.notified())
        .await
        .expect("the relay is woken to claim them");
}

#[tokio::test]
async fn a_second_event_for_a_payment_and_a_stale_one_are_applied_one_by_one_after_the_batch() {
    let inbox = batch_inbox(vec![
        claimed_for(1, "pi_a", PaymentChange::paid(None)),
        claimed_for(
            2,
            "pi_a",
            PaymentChange::Refund {
                refunded_total: 500,
                currency: Currency::parse("USD").unwrap(),
            },
        ),
        claimed_for(3, "pi_b", PaymentChange::paid(None)),
    ]);
    let mut store = MockPaymentStore::new();
    // A refund writes rows of its own first, so it is never in a batch.
    store
        .expect_find_payments()
        .withf(|wanted| wanted.len() == 2)
        .times(1)
        .returning(|_| {
            Ok(vec![
                Some(payment_with_ref("pi_a", ID_A)),
                Some(payment_with_ref("pi_b", ID_B)),
            ])
        });
    let mut seq = mockall::Sequence::new();
    store
        .expect_commit_applications()
        .withf(|apps, _| apps.iter().map(|(id, _)| id.0).collect::<Vec<_>>() == [1, 3])
        .times(1)
        .in_sequence(&mut seq)
        .returning(|_, _| Ok(commits(vec![Commit::Committed, Commit::Stale])));
    // Then one by one, from a fresh read: the refund after the payment it refunds.
    let mut paid_a = payment_with_ref("pi_a", ID_A);
    paid_a.status = PaymentStatus::Paid;
    paid_a.paid_amount = 500;
    paid_a.version = 8;
    let mut paid_b = payment_with_ref("pi_b", ID_B);
    paid_b.version = 8;
    store.expect_find_payment().returning(move |_, r| {
        Ok(Some(if r.provider_ref.as_deref() == Some("pi_a") {
            paid_a.clone()
        } else {
            paid_b.clone()
        }))
    });
    store
        .expect_commit_application()
        .withf(|inbox, app| {
            (inbox.0 == 2 && app.payment.status == PaymentStatus::Refunded && app.payment.version == 8)
                || (inbox.0 == 3 && app.payment.status == PaymentStatus::Paid && app.payment.version == 8)
        })
        .times(2)
        .returning(|_, _| Ok(()));
    let p = processor(inbox, store);
    assert_eq!(p.run_batch(10, 1).await.unwrap(), 3);
    assert!(p.in_flight_guard().is_empty());
}

#[tokio::test]
async fn a_batch_the_store_refuses_is_applied_one_by_one() {
    let inbox = batch_inbox(vec![
        claimed_for(1, "pi_a", PaymentChange::paid(None)),
        claimed_for(2, "pi_b", PaymentChange::paid(None)),
    ]);
    let mut store = MockPaymentStore::new();
    store.expect_find_payments().times(1).returning(|_| {
        Ok(vec![
            Some(payment_with_ref("pi_a", ID_A)),
            Some(payment_with_ref("pi_b", ID_B)),
        ])
    });
    store
        .expect_commit_applications()
        .times(1)
        .returning(|_, _| Err(StoreError::Unavailable("connection reset".into())));
    store
        .expect_find_payment()
        .returning(|_, r| Ok(Some(payment_with_ref(r.provider_ref.as_deref().unwrap(), ID_A))));
    store.expect_commit_application().times(2).returning(|_, _| Ok(()));
    let p = processor(inbox, store);
    assert_eq!(p.run_batch(10, 2).await.unwrap(), 2);
}

#[tokio::test]
async fn events_to_confirm_with_the_provider_skip_the_batch() {
    let mut to_confirm = claimed_for(1, "pi_a", PaymentChange::paid(None));
    to_confirm.event.confirm_with_provider = true;
    let mut inbox = batch_inbox(vec![to_confirm]);
    inbox
        .expect_record_failure()
        .with(
            eq(InboxId(1)),
            mockall::predicate::function(|e: &str| e.contains("API client")),
            mockall::predicate::always(),
        )
        .times(1)
        .returning(|_, _, _| Ok(()));
    let mut store = MockPaymentStore::new();
    store.expect_find_payments().never();
    store.expect_commit_applications().never();
    store
        .expect_find_payment()
        .returning(|_, _| Ok(Some(payment_with_ref("pi_a", ID_A))));
    let p = processor(inbox, store);
    assert_eq!(p.run_batch(10, 2).await.unwrap(), 1);
}

#[tokio::test]
async fn events_left_unfinished_are_released_for_other_workers() {
    let mut inbox = MockWebhookInbox::new();
    inbox
        .expect_release()
        .withf(|ids| ids == [InboxId(42)])
        .times(1)
        .returning(|ids| Ok(ids.len() as u64));
    let p = processor(inbox, MockPaymentStore::new());
    p.in_flight_guard().insert(InboxId(42));
    assert_eq!(p.release_unfinished().await.unwrap(), 1);
    assert_eq!(p.release_unfinished().await.unwrap(), 0, "nothing left to release");
}

#[test]
fn backoff_doubles_is_capped_and_jittered() {
    let p = RetryPolicy {
        max_attempts: 10,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(10),
    };
    let delay = |attempts, jitter| (p.next_attempt(attempts, now(), jitter).unwrap() - now()).num_milliseconds();
    assert_eq!(delay(1, 0.0), 1000);
    assert_eq!(delay(2, 0.0), 2000);
    assert_eq!(delay(3, 0.0), 4000);
    assert_eq!(delay(5, 0.0), 10_000, "capped at backoff_max");
    assert_eq!(delay(1, 0.2), 1200);
    assert_eq!(delay(1, -0.2), 800);
    assert_eq!(delay(1, 5.0), 1200, "jitter is clamped");
    assert!(
        p.next_attempt(10, now(), 0.0).is_none(),
        "the last attempt dead-letters"
    );
}

/// A batch of six events to confirm at concurrency 1, with `lease`: the ids kept (each
/// fails, as no gateway is configured) and the ids given back for the next poll.
async fn confirmations_kept_with(lease: Duration) -> (Vec<i64>, Vec<i64>) {
    let events: Vec<ClaimedEvent> = (1..=6)
        .map(|id| {
            let mut c = claimed_for(id, &format!("pi_{id}"), PaymentChange::paid(None));
            c.event.confirm_with_provider = true;
            c
        })
        .collect();
    let mut inbox = batch_inbox(events);
    let (given_back, kept) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let released = given_back.clone();
    inbox.expect_release().returning(move |ids| {
        released.lock().unwrap().extend(ids.iter().map(|id| id.0));
        Ok(ids.len() as u64)
    });
    let failed = kept.clone();
    inbox.expect_record_failure().returning(move |id, _, _| {
        failed.lock().unwrap().push(id.0);
        Ok(())
    });
    let mut store = MockPaymentStore::new();
    store
        .expect_find_payment()
        .returning(|_, r| Ok(Some(payment_with_ref(r.provider_ref.as_deref().unwrap(), ID_A))));
    let p = leasing_for(lease, inbox, store);
    assert_eq!(p.run_batch(10, 1).await.unwrap(), 6);
    assert!(
        p.in_flight_guard().is_empty(),
        "given-back events are not left in flight"
    );
    let mut kept = kept.lock().unwrap().clone();
    kept.sort_unstable();
    let given_back = given_back.lock().unwrap().clone();
    (kept, given_back)
}

#[tokio::test]
async fn events_to_confirm_beyond_the_rounds_the_lease_holds_are_given_back_for_the_next_poll() {
    // The gateways' timeout is 30 s: a 60 s lease holds one round in its first three
    // quarters, a 180 s lease four (the most), a lease shorter than the timeout one.
    assert_eq!(
        confirmations_kept_with(Duration::from_secs(60)).await,
        (vec![1], vec![2, 3, 4, 5, 6])
    );
    assert_eq!(
        confirmations_kept_with(Duration::from_secs(180)).await,
        (vec![1, 2, 3, 4], vec![5, 6])
    );
    assert_eq!(
        confirmations_kept_with(Duration::from_secs(10)).await,
        (vec![1], vec![2, 3, 4, 5, 6])
    );
}

/// A handoff with `events` already handed over, as the ingest path leaves them.
fn handed_over(events: Vec<ClaimedEvent>) -> HandedOver<ClaimedEvent> {
    let (handoff, handed_over) = crate::processing::handoff::channel(16, Duration::from_secs(30), clock());
    handoff.reserve(events.len()).unwrap().hand_over(events);
    handed_over
}

#[tokio::test]
async fn handed_over_events_are_applied_without_claiming_them_back() {
    let mut inbox = MockWebhookInbox::new();
    // The one claim at start finds nothing: the events came through the handoff.
    inbox.expect_claim_due().times(1).returning(|_, _, _| Ok(Vec::new()));
    inbox.expect_release().never();
    let mut store = MockPaymentStore::new();
    store
        .expect_find_payments()
        .returning(|wanted| Ok(wanted.iter().map(|_| Some(payment_with_ref("pi_a", ID_A))).collect()));
    let (applied, mut applied_ids) = tokio::sync::mpsc::unbounded_channel();
    store.expect_commit_applications().times(1).returning(move |apps, _| {
        let _ = applied.send(apps.iter().map(|(id, _)| *id).collect::<Vec<_>>());
        Ok(commits(vec![Commit::Committed; apps.len()]))
    });
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(run_worker(
        Arc::new(processor(inbox, store)),
        10,
        2,
        Duration::from_secs(3600),
        Arc::new(Notify::new()),
        handed_over(vec![claimed_for(1, "pi_a", PaymentChange::paid(None))]),
        stopped,
    ));
    let applied = tokio::time::timeout(Duration::from_secs(5), applied_ids.recv()).await;
    assert_eq!(applied.unwrap(), Some(vec![InboxId(1)]));
    stop.send(true).unwrap();
    worker.await.unwrap();
}

#[tokio::test]
async fn events_still_in_the_handoff_when_the_worker_stops_are_released() {
    let mut inbox = MockWebhookInbox::new();
    inbox.expect_claim_due().never();
    inbox
        .expect_release()
        .withf(|ids| ids == [InboxId(5), InboxId(6)])
        .times(1)
        .returning(|ids| Ok(ids.len() as u64));
    let (_stop, stopped) = watch::channel(true);
    run_worker(
        Arc::new(processor(inbox, MockPaymentStore::new())),
        10,
        2,
        Duration::from_secs(3600),
        Arc::new(Notify::new()),
        handed_over(vec![
            claimed_for(5, "pi_a", PaymentChange::paid(None)),
            claimed_for(6, "pi_b", PaymentChange::paid(None)),
        ]),
        stopped,
    )
    .await;
}
