use super::*;
use chrono::{DateTime, TimeZone, Utc};
use payhook_domain::ports::{
    Admission, MockClock, MockPaymentGateway, MockPaymentStore, MockReconcileQueue, MockWebhookInbox,
};
use payhook_domain::{Currency, GatewayError, InboxId, Money, PaymentChange, PaymentId, PaymentStatus};
use std::sync::Mutex;

fn created() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap()
}

fn schedule() -> ReconcileSchedule {
    ReconcileSchedule {
        pending_after: chrono::Duration::seconds(600),
        factor: ReconcileSchedule::FACTOR,
        give_up_after: chrono::Duration::hours(168),
    }
}

fn open_payment(provider_ref: Option<&str>) -> Payment {
    Payment {
        account: String::new(),
        id: PaymentId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap(),
        provider: Provider::Xendit,
        provider_ref: provider_ref.map(str::to_owned),
        merchant_ref: None,
        amount: Money::new(15_000_000, Currency::parse("IDR").unwrap()).unwrap(),
        status: PaymentStatus::Pending,
        paid_amount: 0,
        refunded_amount: 0,
        dispute_status: None,
        checkout_url: None,
        qr_text: None,
        customer_email: None,
        description: None,
        metadata: serde_json::json!({}),
        created_at: created(),
        updated_at: created(),
        paid_at: None,
        expires_at: None,
        failure_reason: None,
        checkout_extras: None,
        subscription_id: None,
        version: 1,
    }
}

/// Every `schedule_check` a queue was given: payment, checks made, next due.
type Scheduled = Arc<Mutex<Vec<(PaymentId, u32, Option<DateTime<Utc>>)>>>;

/// A queue that hands out `due` once, then nothing, and records every schedule_check.
fn queue(due: Vec<DueCheck>, scheduled: Scheduled) -> MockReconcileQueue {
    let due = Mutex::new(Some(due));
    let mut queue = MockReconcileQueue::new();
    queue
        .expect_claim_due_checks()
        .returning(move |_, _, _| Ok(due.lock().unwrap().take().unwrap_or_default()));
    queue.expect_schedule_check().returning(move |id, checks, next| {
        scheduled.lock().unwrap().push((id, checks, next));
        Ok(())
    });
    queue
}

fn reconciler(queue: MockReconcileQueue, inbox: MockWebhookInbox, gateway: Option<MockPaymentGateway>) -> Reconciler {
    reconciler_over(queue, inbox, MockPaymentStore::new(), gateway)
}

fn reconciler_over(
    queue: MockReconcileQueue,
    inbox: MockWebhookInbox,
    payments: MockPaymentStore,
    gateway: Option<MockPaymentGateway>,
) -> Reconciler {
    let mut clock = MockClock::new();
    clock
        .expect_now()
        .return_const(created() + chrono::Duration::minutes(10));
    let gateways = gateway
        .map(|g| vec![(Provider::Xendit, Arc::new(g) as Arc<dyn PaymentGateway>)])
        .unwrap_or_default();
    Reconciler::new(
        Arc::new(queue),
        Arc::new(inbox),
        Arc::new(payments),
        gateways,
        NonZeroU32::new(100).unwrap(),
        schedule(),
        Arc::new(clock),
        Arc::new(Notify::new()),
    )
}

fn answering(found: Result<ProviderPaymentStatus, GatewayError>) -> MockPaymentGateway {
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_fetch_status()
        .withf(|reference| reference == "inv_1")
        .times(1)
        .return_once(move |_| found);
    gateway
}

#[tokio::test]
async fn a_change_the_provider_reports_is_stored_as_an_event_then_the_next_check_is_scheduled() {
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let payment = open_payment(Some("inv_1"));
    let stored = Arc::new(Mutex::new(Vec::new()));
    let mut inbox = MockWebhookInbox::new();
    let into = stored.clone();
    inbox.expect_admit().times(1).returning(move |request, event| {
        into.lock().unwrap().push((request.clone(), event.clone()));
        Ok(Admission::Accepted(InboxId(1)))
    });
    let reconciler = reconciler(
        queue(
            vec![DueCheck {
                payment: payment.clone(),
                checks: 0,
            }],
            scheduled.clone(),
        ),
        inbox,
        Some(answering(Ok(ProviderPaymentStatus::new(
            PaymentStatus::Paid,
            Some(15_000_000),
        )))),
    );

    let report = reconciler.run_once().await.unwrap();
    assert_eq!((report.checked, report.drifted, report.failed), (1, 1, 0));
    let stored = stored.lock().unwrap();
    let (request, event) = &stored[0];
    assert_eq!(event.event_type, "reconciled");
    assert_eq!(
        event.event_id.as_str(),
        format!("reconcile:{}:paid:15000000:-:-", payment.id)
    );
    assert_eq!(event.payment.payment_id, Some(payment.id));
    assert_eq!(
        event.change,
        PaymentChange::Status {
            to: PaymentStatus::Paid,
            paid_amount: Some(15_000_000)
        }
    );
    assert_eq!(request.path, "/reconcile/xendit");
    assert!(
        String::from_utf8_lossy(&request.body).contains("\"inv_1\""),
        "the answer is kept"
    );
    assert_eq!(
        *scheduled.lock().unwrap(),
        vec![(payment.id, 1, Some(created() + chrono::Duration::minutes(40)))],
        "asked again 30 min after the first check's due time"
    );
}

#[tokio::test]
async fn an_answer_that_says_nothing_new_stores_nothing() {
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let payment = open_payment(Some("inv_1"));
    let mut inbox = MockWebhookInbox::new();
    inbox.expect_admit().never();
    let reconciler = reconciler(
        queue(
            vec![DueCheck {
                payment: payment.clone(),
                checks: 2,
            }],
            scheduled.clone(),
        ),
        inbox,
        Some(answering(Ok(ProviderPaymentStatus::new(PaymentStatus::Pending, None)))),
    );
    let report = reconciler.run_once().await.unwrap();
    assert_eq!((report.checked, report.drifted), (1, 0));
    assert_eq!(
        *scheduled.lock().unwrap(),
        vec![(payment.id, 3, schedule().due_after(created(), 3))]
    );
}

#[tokio::test]
async fn a_provider_that_fails_is_asked_again_on_schedule_not_at_once() {
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let payment = open_payment(Some("inv_1"));
    let mut inbox = MockWebhookInbox::new();
    inbox.expect_admit().never();
    let reconciler = reconciler(
        queue(
            vec![DueCheck {
                payment: payment.clone(),
                checks: 0,
            }],
            scheduled.clone(),
        ),
        inbox,
        Some(answering(Err(GatewayError::Unavailable {
            provider: Provider::Xendit,
            message: "502 from the provider".into(),
        }))),
    );
    let report = reconciler.run_once().await.unwrap();
    assert_eq!((report.checked, report.failed), (0, 1));
    assert_eq!(
        *scheduled.lock().unwrap(),
        vec![(payment.id, 1, Some(created() + chrono::Duration::minutes(40)))]
    );
}

#[tokio::test]
async fn without_an_api_nothing_is_asked_and_the_check_moves_on() {
    for (payment, gateway) in [(open_payment(Some("inv_1")), None), (open_payment(None), None)] {
        let scheduled = Arc::new(Mutex::new(Vec::new()));
        let mut inbox = MockWebhookInbox::new();
        inbox.expect_admit().never();
        let reconciler = reconciler(
            queue(
                vec![DueCheck {
                    payment: payment.clone(),
                    checks: 0,
                }],
                scheduled.clone(),
            ),
            inbox,
            gateway,
        );
        assert_eq!(reconciler.run_once().await.unwrap().skipped, 1);
        assert_eq!(scheduled.lock().unwrap().len(), 1);
    }
}

/// The cadence on tokio's paused clock: a round at once, then one per interval.
#[tokio::test(start_paused = true)]
async fn rounds_run_at_start_then_every_interval_until_stopped() {
    let rounds = Arc::new(Mutex::new(0));
    let counted = rounds.clone();
    let mut queue = MockReconcileQueue::new();
    queue.expect_claim_due_checks().returning(move |_, _, _| {
        *counted.lock().unwrap() += 1;
        Ok(Vec::new())
    });
    let reconciler = reconciler(queue, MockWebhookInbox::new(), None);
    let (stop, stopped) = watch::channel(false);
    let job = tokio::spawn(run_reconciler(Arc::new(reconciler), Duration::from_secs(60), stopped));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*rounds.lock().unwrap(), 1, "a round at start-up");
    tokio::time::sleep(Duration::from_secs(58)).await;
    assert_eq!(*rounds.lock().unwrap(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(*rounds.lock().unwrap(), 2);
    stop.send(true).unwrap();
    job.await.unwrap();
}

/// A clock the test moves by hand.
struct TestClock(Mutex<DateTime<Utc>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// What the closing note reports: 1,000 payments that never settle, on the default
/// schedule, checked through a real store, with rounds every 60 s of a test clock over
/// their first day. Each is asked 5 times (10 min, 40 min, 2 h 10, 6 h 40, 20 h 10):
/// 5,000 calls, as `ReconcileSchedule::checks_within` computes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_payments_that_never_settle_cost_five_thousand_calls_in_their_first_day() {
    use payhook_domain::ports::PaymentStore;
    let dir = std::env::temp_dir().join(format!("payhook-reconcile-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/payhook.db", dir.display());
    payhook_sqlite::SqliteStore::migrate(&url).await.unwrap();
    let store = Arc::new(payhook_sqlite::SqliteStore::connect(&url, 1).unwrap());
    for n in 0..1000 {
        store
            .create_payment(&payhook_domain::NewPayment {
                account: String::new(),
                id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
                provider: Provider::Xendit,
                provider_ref: Some(format!("inv_{n}")),
                merchant_ref: None,
                amount: Money::new(10_000, Currency::parse("IDR").unwrap()).unwrap(),
                customer_email: None,
                description: None,
                metadata: serde_json::json!({}),
                created_at: created(),
                client_token_hash: None,
                callback_token_hash: None,
                idempotency: None,
                next_reconcile_at: schedule().first_due(created()),
            })
            .await
            .unwrap();
    }
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_fetch_status().returning(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(ProviderPaymentStatus::new(PaymentStatus::Pending, None))
    });
    let clock = Arc::new(TestClock(Mutex::new(created())));
    let reconciler = Reconciler::new(
        store.clone(),
        Arc::new(MockWebhookInbox::new()),
        store.clone(),
        vec![(Provider::Xendit, Arc::new(gateway) as Arc<dyn PaymentGateway>)],
        NonZeroU32::new(u32::MAX).unwrap(),
        schedule(),
        clock.clone(),
        Arc::new(Notify::new()),
    );
    let day_end = created() + chrono::Duration::hours(24);
    while clock.now() <= day_end {
        reconciler.run_once().await.unwrap();
        let next = clock.now() + chrono::Duration::seconds(60);
        *clock.0.lock().unwrap() = next;
    }
    let made = calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(made, 5_000);
    assert_eq!(
        made,
        1000 * schedule().checks_within(chrono::Duration::hours(24)) as usize
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn expiring_at(minutes: i64) -> Payment {
    Payment {
        account: String::new(),
        expires_at: Some(created() + chrono::Duration::minutes(minutes)),
        ..open_payment(Some("inv_1"))
    }
}

/// Runs one round over `payment` (the clock at 10 min after creation) with the
/// provider answering `found`; gives what was stored and what was scheduled.
async fn round_over(
    payment: Payment,
    found: ProviderPaymentStatus,
) -> (
    Vec<(WebhookRequest, WebhookEvent)>,
    Vec<(PaymentId, u32, Option<DateTime<Utc>>)>,
) {
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let stored = Arc::new(Mutex::new(Vec::new()));
    let into = stored.clone();
    let mut inbox = MockWebhookInbox::new();
    inbox.expect_admit().returning(move |request, event| {
        into.lock().unwrap().push((request.clone(), event.clone()));
        Ok(Admission::Accepted(InboxId(1)))
    });
    let reconciler = reconciler(
        queue(vec![DueCheck { payment, checks: 0 }], scheduled.clone()),
        inbox,
        Some(answering(Ok(found))),
    );
    reconciler.run_once().await.unwrap();
    let stored = stored.lock().unwrap().clone();
    let scheduled = scheduled.lock().unwrap().clone();
    (stored, scheduled)
}

#[tokio::test]
async fn past_its_expiry_and_not_paid_at_the_provider_a_payment_expires_and_is_not_asked_again() {
    let payment = expiring_at(5);
    let (stored, scheduled) = round_over(
        payment.clone(),
        ProviderPaymentStatus::new(PaymentStatus::Pending, None),
    )
    .await;
    assert_eq!(stored.len(), 1);
    let event = &stored[0].1;
    assert_eq!(event.event_type, "expired", "the history reason");
    assert_eq!(event.event_id.as_str(), format!("expire:{}", payment.id));
    assert_eq!(
        event.change,
        PaymentChange::Status {
            to: PaymentStatus::Expired,
            paid_amount: None
        }
    );
    assert_eq!(scheduled, vec![(payment.id, 1, None)]);
}

#[tokio::test]
async fn past_its_expiry_but_paid_at_the_provider_a_payment_is_paid_not_expired() {
    let payment = expiring_at(5);
    let (stored, scheduled) = round_over(
        payment.clone(),
        ProviderPaymentStatus::new(PaymentStatus::Paid, Some(15_000_000)),
    )
    .await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].1.event_type, "reconciled");
    assert!(matches!(
        stored[0].1.change,
        PaymentChange::Status {
            to: PaymentStatus::Paid,
            ..
        }
    ));
    assert_eq!(scheduled, vec![(payment.id, 1, None)]);
}

#[tokio::test]
async fn a_payment_that_expires_before_its_next_check_is_asked_when_it_expires() {
    let payment = expiring_at(20);
    let (stored, scheduled) = round_over(
        payment.clone(),
        ProviderPaymentStatus::new(PaymentStatus::Pending, None),
    )
    .await;
    assert!(stored.is_empty());
    assert_eq!(
        scheduled,
        vec![(payment.id, 1, Some(created() + chrono::Duration::minutes(20)))],
        "at its expiry, not at the 40-minute check"
    );
}

#[tokio::test]
async fn past_its_expiry_without_an_answer_a_payment_is_not_expired_and_is_asked_again() {
    let payment = expiring_at(5);
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let mut inbox = MockWebhookInbox::new();
    inbox.expect_admit().never();
    let reconciler = reconciler(
        queue(
            vec![DueCheck {
                payment: payment.clone(),
                checks: 0,
            }],
            scheduled.clone(),
        ),
        inbox,
        Some(answering(Err(GatewayError::Unavailable {
            provider: Provider::Xendit,
            message: "timed out".into(),
        }))),
    );
    reconciler.run_once().await.unwrap();
    assert_eq!(
        *scheduled.lock().unwrap(),
        vec![(payment.id, 1, Some(created() + chrono::Duration::minutes(40)))]
    );
}

/// A payment opened 10 minutes ago whose creation never got its answer recorded.
fn interrupted() -> Payment {
    open_payment(None)
}

fn due(payment: Payment) -> Vec<DueCheck> {
    vec![DueCheck { payment, checks: 0 }]
}

/// The provider had made the payment before payhook stopped: its checkout is recorded
/// (adopted), then it is checked like any other payment, in the same round.
#[tokio::test]
async fn an_interrupted_creation_the_provider_made_is_adopted_then_checked() {
    let payment = interrupted();
    let id = payment.id;
    let mut gateway = MockPaymentGateway::new();
    gateway
        .expect_find_checkout()
        .withf(move |asked| *asked == id)
        .times(1)
        .returning(|_| {
            Ok(Some(payhook_domain::Checkout {
                provider_ref: "inv_1".into(),
                checkout_url: Some("https://checkout.example/inv_1".into()),
                qr_text: None,
                expires_at: None,
                extras: serde_json::Value::Null,
                client_secret: None,
            }))
        });
    gateway
        .expect_fetch_status()
        .withf(|reference| reference == "inv_1")
        .times(1)
        .returning(|_| Ok(ProviderPaymentStatus::new(PaymentStatus::Pending, None)));
    let mut payments = MockPaymentStore::new();
    let adopted = Payment {
        account: String::new(),
        provider_ref: Some("inv_1".into()),
        ..payment.clone()
    };
    payments
        .expect_record_checkout()
        .withf(move |asked, checkout| *asked == id && checkout.provider_ref == "inv_1")
        .times(1)
        .return_once(move |_, _| Ok(adopted));
    let mut inbox = MockWebhookInbox::new();
    inbox.expect_admit().never();
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let reconciler = reconciler_over(queue(due(payment), scheduled.clone()), inbox, payments, Some(gateway));

    let report = reconciler.run_once().await.unwrap();
    assert_eq!((report.checked, report.drifted, report.skipped), (1, 0, 0));
    assert_eq!(
        *scheduled.lock().unwrap(),
        vec![(id, 1, Some(created() + chrono::Duration::minutes(40)))]
    );
}

/// The provider has no payment for it: a `creation_interrupted` event moves it to
/// failed through the worker, and it is not checked again.
#[tokio::test]
async fn an_interrupted_creation_the_provider_never_made_fails_through_the_inbox() {
    let payment = interrupted();
    let id = payment.id;
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_find_checkout().times(1).returning(|_| Ok(None));
    gateway.expect_fetch_status().never();
    let stored = Arc::new(Mutex::new(Vec::new()));
    let into = stored.clone();
    let mut inbox = MockWebhookInbox::new();
    inbox.expect_admit().times(1).returning(move |request, event| {
        into.lock().unwrap().push((request.clone(), event.clone()));
        Ok(Admission::Accepted(InboxId(1)))
    });
    let mut payments = MockPaymentStore::new();
    payments.expect_record_checkout().never();
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let reconciler = reconciler_over(queue(due(payment), scheduled.clone()), inbox, payments, Some(gateway));

    let report = reconciler.run_once().await.unwrap();
    assert_eq!((report.checked, report.drifted), (1, 1));
    let stored = stored.lock().unwrap();
    let (request, event) = &stored[0];
    assert_eq!(event.event_id.as_str(), format!("interrupted:{id}"));
    assert_eq!(event.event_type, CREATION_INTERRUPTED);
    assert_eq!(event.payment.payment_id, Some(id));
    assert_eq!(event.payment.provider_ref, None);
    assert_eq!(
        event.change,
        PaymentChange::Status {
            to: PaymentStatus::Failed,
            paid_amount: None
        }
    );
    assert_eq!(request.path, "/reconcile/xendit");
    assert_eq!(*scheduled.lock().unwrap(), vec![(id, 1, None)]);
}

/// A creation younger than the provider call's own limit may still get its answer in
/// a live process: nothing is asked, and it is looked at again once it cannot.
#[tokio::test]
async fn a_creation_still_in_flight_is_left_alone_until_it_cannot_be() {
    let mut payment = interrupted();
    // The clock reads created() + 10 min: opened 30 s before that.
    payment.created_at = created() + chrono::Duration::minutes(10) - chrono::Duration::seconds(30);
    let opened = payment.created_at;
    let id = payment.id;
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_find_checkout().never();
    gateway.expect_fetch_status().never();
    let mut inbox = MockWebhookInbox::new();
    inbox.expect_admit().never();
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let reconciler = reconciler(queue(due(payment), scheduled.clone()), inbox, Some(gateway));

    assert_eq!(reconciler.run_once().await.unwrap().skipped, 1);
    let wait = chrono::Duration::from_std(ABANDONED_AFTER).unwrap() + chrono::Duration::seconds(1);
    assert_eq!(*scheduled.lock().unwrap(), vec![(id, 0, Some(opened + wait))]);
}

/// The lookup itself failing (provider down) is counted and retried on the schedule.
#[tokio::test]
async fn a_lookup_the_provider_fails_is_tried_again_on_schedule() {
    let payment = interrupted();
    let id = payment.id;
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_find_checkout().times(1).returning(|_| {
        Err(GatewayError::Unavailable {
            provider: Provider::Xendit,
            message: "503".into(),
        })
    });
    let mut inbox = MockWebhookInbox::new();
    inbox.expect_admit().never();
    let scheduled = Arc::new(Mutex::new(Vec::new()));
    let reconciler = reconciler(queue(due(payment), scheduled.clone()), inbox, Some(gateway));

    assert_eq!(reconciler.run_once().await.unwrap().failed, 1);
    assert_eq!(
        *scheduled.lock().unwrap(),
        vec![(id, 1, Some(created() + chrono::Duration::minutes(40)))]
    );
}

/// A reconciler over a fresh SQLite store (queue, inbox, payments, refunds), asking
/// `gateway` as Stripe, on a test clock; the store, clock and a paid payment (2,500 EUR
/// cents, `pi_refunded`).
async fn refund_checker(
    gateway: MockPaymentGateway,
) -> (Reconciler, Arc<payhook_sqlite::SqliteStore>, Arc<TestClock>, Payment) {
    let dir = std::env::temp_dir().join(format!("payhook-refund-checks-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/payhook.db", dir.display());
    payhook_sqlite::SqliteStore::migrate(&url).await.unwrap();
    let store = Arc::new(payhook_sqlite::SqliteStore::connect(&url, 1).unwrap());
    let paid = payhook_testkit::contract::paid_payment(&*store, "pi_refunded").await;
    let clock = Arc::new(TestClock(Mutex::new(created())));
    let reconciler = Reconciler::new(
        store.clone(),
        store.clone(),
        store.clone(),
        vec![(Provider::Stripe, Arc::new(gateway) as Arc<dyn PaymentGateway>)],
        NonZeroU32::new(u32::MAX).unwrap(),
        schedule(),
        clock.clone(),
        Arc::new(Notify::new()),
    )
    .refunding_in(store.clone());
    (reconciler, store, clock, paid)
}

/// A refund of 1,000 of `paid`, reserved at `created()`; answered pending as `re_1`
/// when `answered`, else never answered.
async fn pending_refund(store: &payhook_sqlite::SqliteStore, paid: &Payment, answered: bool) -> payhook_domain::Refund {
    use payhook_domain::ports::RefundStore;
    use payhook_domain::{NewRefund, RefundId, RefundStatus, Reservation};
    let Reservation::New(refund) = store
        .reserve_refund(&NewRefund {
            id: RefundId::from_uuid(uuid::Uuid::new_v4()),
            payment_id: paid.id,
            amount: Some(1_000),
            reason: None,
            idempotency_key: None,
            created_at: created(),
        })
        .await
        .unwrap()
    else {
        panic!("reserved")
    };
    if !answered {
        return refund;
    }
    store
        .record_refund_answer(refund.id, Some("re_1".into()), RefundStatus::Pending, None, created())
        .await
        .unwrap()
}

/// Runs a round at each of `minutes` after `created()`.
async fn rounds_at(reconciler: &Reconciler, clock: &TestClock, minutes: &[i64]) {
    for m in minutes {
        *clock.0.lock().unwrap() = created() + chrono::Duration::minutes(*m);
        reconciler.run_once().await.unwrap();
    }
}

/// The refund check findings in the inbox: event id, type.
async fn refund_findings(store: &payhook_sqlite::SqliteStore) -> Vec<(String, String)> {
    let listed = store
        .list(&payhook_domain::InboxFilter {
            status: None,
            provider: None,
            limit: 100,
        })
        .await
        .unwrap();
    listed
        .into_iter()
        .filter(|e| e.event_id.starts_with("refund-check:"))
        .map(|e| (e.event_id, e.event_type))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_refund_whose_webhook_never_came_is_asked_about_on_the_schedule_and_settled() {
    use payhook_domain::{RefundReport, RefundStatus};
    let asked = Arc::new(Mutex::new(Vec::new()));
    let answers = Arc::new(Mutex::new(vec![RefundStatus::Succeeded, RefundStatus::Pending]));
    let mut gateway = MockPaymentGateway::new();
    let (into, from) = (asked.clone(), answers.clone());
    gateway.expect_fetch_refund().returning(move |lookup| {
        into.lock().unwrap().push(lookup.clone());
        Ok(RefundReport::One {
            provider_ref: lookup.refund_ref.clone(),
            refund_id: Some(lookup.refund_id),
            amount: lookup.amount.amount_minor(),
            currency: lookup.amount.currency(),
            status: from.lock().unwrap().pop().unwrap(),
        })
    });
    let (reconciler, store, clock, paid) = refund_checker(gateway).await;
    let refund = pending_refund(&store, &paid, true).await;

    // Not asked before the first wait (10 min); asked at 10 min (still pending: no
    // finding), not again before 40 min, then at 40 min (settled: a finding).
    rounds_at(&reconciler, &clock, &[0, 5, 9]).await;
    assert!(asked.lock().unwrap().is_empty(), "asked before the first wait");
    rounds_at(&reconciler, &clock, &[10, 20, 39]).await;
    assert_eq!(asked.lock().unwrap().len(), 1);
    assert!(
        refund_findings(&store).await.is_empty(),
        "a pending answer is no finding"
    );
    rounds_at(&reconciler, &clock, &[40]).await;
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2);
    assert_eq!(
        (
            asked[1].refund_id,
            asked[1].refund_ref.as_str(),
            asked[1].payment_ref.as_str()
        ),
        (refund.id, "re_1", "pi_refunded")
    );
    assert_eq!(asked[1].amount, refund.amount);
    assert_eq!(
        refund_findings(&store).await,
        vec![(format!("refund-check:{}:succeeded", refund.id), FINDING.to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_whose_provider_never_answered_is_sent_again_under_its_own_id() {
    use payhook_domain::ports::RefundStore;
    use payhook_domain::{ProviderRefund, RefundStatus};
    let sent = Arc::new(Mutex::new(Vec::new()));
    let mut gateway = MockPaymentGateway::new();
    let into = sent.clone();
    gateway.expect_refund().returning(move |request| {
        into.lock().unwrap().push(request.clone());
        Ok(ProviderRefund {
            provider_ref: "re_late".into(),
            status: RefundStatus::Pending,
            failure_reason: None,
        })
    });
    gateway.expect_fetch_refund().never();
    let (reconciler, store, clock, paid) = refund_checker(gateway).await;
    let refund = pending_refund(&store, &paid, false).await;

    rounds_at(&reconciler, &clock, &[0, 9]).await;
    assert!(sent.lock().unwrap().is_empty(), "a request may still be in flight");
    rounds_at(&reconciler, &clock, &[10]).await;
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].refund_id, sent[0].payment_ref.as_str(), sent[0].amount),
        (refund.id, "pi_refunded", refund.amount)
    );
    let now = store.refund(refund.id).await.unwrap().unwrap();
    assert_eq!(
        (now.status, now.provider_ref.as_deref()),
        (RefundStatus::Pending, Some("re_late"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refund_check_the_provider_fails_is_tried_again_on_schedule_and_none_after_the_limit() {
    use payhook_domain::ports::RefundStore;
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_fetch_refund().returning(move |_| {
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Err(GatewayError::Unavailable {
            provider: Provider::Stripe,
            message: "503".into(),
        })
    });
    let (reconciler, store, clock, paid) = refund_checker(gateway).await;
    let refund = pending_refund(&store, &paid, true).await;
    // A round every 10 minutes for 8 days: asked on the payments' schedule (10 min,
    // 40 min, 2 h 10, 6 h 40, 20 h 10, 60 h 40), then no more.
    let minutes: Vec<i64> = (0..=8 * 24 * 6).map(|n| n * 10).collect();
    rounds_at(&reconciler, &clock, &minutes).await;
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        schedule().checks_within(chrono::Duration::days(8)) as usize
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 6);
    let still = store.refund(refund.id).await.unwrap().unwrap();
    assert_eq!(
        still.status,
        payhook_domain::RefundStatus::Pending,
        "never settled without an answer"
    );
}
