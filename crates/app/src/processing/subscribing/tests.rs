//! The schedule payhook runs for Xendit-style providers, over a real SQLite store and
//! a test clock (no sleeps): activation, renewal asked once and early enough, early
//! payment, lapse, grace, expiry, reactivation, refunds, cancellation, two instances.

use super::*;
use crate::api::payment_requests::PaymentRequests;
use chrono::TimeZone;
use payhook_domain::ports::{MockPaymentGateway, Outbox, PaymentStore, SubscriptionStore};
use payhook_domain::source::Authentication;
use payhook_domain::{Checkout, Currency, Interval, Money, PaymentChange};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

struct TestClock(Mutex<DateTime<Utc>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

impl TestClock {
    fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap() = at;
    }
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 31, 9, 0, 0).unwrap()
}

fn day(d: i64) -> Duration {
    Duration::days(d)
}

struct World {
    store: Arc<payhook_sqlite::SqliteStore>,
    clock: Arc<TestClock>,
    subscriptions: Subscriptions,
    /// Payment requests made at the provider.
    created: Arc<AtomicUsize>,
    /// How many of the next payment requests the provider fails (a 503).
    failing: Arc<AtomicUsize>,
}

/// A fake Xendit that answers every invoice request with `inv_{n}`, but fails the
/// next `failing` ones.
fn gateway(created: Arc<AtomicUsize>, failing: Arc<AtomicUsize>) -> MockPaymentGateway {
    let mut gateway = MockPaymentGateway::new();
    gateway.expect_provider().return_const(Provider::Xendit);
    gateway.expect_check().returning(|_| Ok(()));
    gateway.expect_create_checkout().returning(move |request| {
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(payhook_domain::GatewayError::Unavailable {
                provider: Provider::Xendit,
                message: "503".into(),
            });
        }
        let n = created.fetch_add(1, Ordering::SeqCst);
        Ok(Checkout {
            provider_ref: format!("inv_{n}"),
            checkout_url: Some(format!("https://checkout.example/{}", request.payment_id)),
            qr_text: None,
            expires_at: None,
            extras: serde_json::Value::Null,
            client_secret: None,
        })
    });
    gateway
}

async fn world(trial_days: u32) -> World {
    let dir = std::env::temp_dir().join(format!("payhook-subscribing-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/payhook.db", dir.display());
    payhook_sqlite::SqliteStore::migrate(&url).await.unwrap();
    let store = Arc::new(payhook_sqlite::SqliteStore::connect(&url, 2).unwrap());
    let clock = Arc::new(TestClock(Mutex::new(start())));
    let created = Arc::new(AtomicUsize::new(0));
    let plan = Plan {
        id: PlanId::from_uuid(uuid::Uuid::new_v4()),
        code: "pro".into(),
        name: "Pro".into(),
        amount: Money::new(99_000, Currency::parse("IDR").unwrap()).unwrap(),
        interval: Interval::Month,
        interval_count: 1,
        trial_days,
        stripe_price_id: None,
        active: true,
        created_at: start(),
    };
    store.create_plan(&plan).await.unwrap();
    let failing = Arc::new(AtomicUsize::new(0));
    let subscriptions = instance(&store, &clock, &created, &failing);
    World {
        store,
        clock,
        subscriptions,
        created,
        failing,
    }
}

/// One payhook instance over the world's store.
fn instance(
    store: &Arc<payhook_sqlite::SqliteStore>,
    clock: &Arc<TestClock>,
    created: &Arc<AtomicUsize>,
    failing: &Arc<AtomicUsize>,
) -> Subscriptions {
    let payments = Arc::new(PaymentRequests::new(
        store.clone(),
        vec![(
            Arc::new(gateway(created.clone(), failing.clone())) as Arc<dyn payhook_domain::ports::PaymentGateway>,
            Authentication::Provider,
        )],
        clock.clone(),
    ));
    Subscriptions::new(
        store.clone(),
        store.clone(),
        payments,
        Vec::new(),
        clock.clone(),
        Schedule {
            renew_before: Duration::hours(72),
            grace: Duration::hours(72),
            pending_recheck: Duration::minutes(10),
            give_up: Duration::hours(168),
        },
        Arc::new(Notify::new()),
    )
}

fn request() -> SubscriptionRequest {
    SubscriptionRequest {
        plan: "pro".into(),
        provider: Provider::Xendit,
        customer_ref: "user-1".into(),
        customer_email: Some("u@example.com".into()),
        metadata: serde_json::json!({}),
        success_url: None,
        cancel_url: None,
    }
}

impl World {
    async fn at(&self, at: DateTime<Utc>) -> usize {
        self.clock.set(at);
        self.subscriptions.run_due().await.unwrap()
    }

    async fn subscription(&self, id: SubscriptionId) -> Subscription {
        self.store.subscription(id).await.unwrap().unwrap()
    }

    async fn payments(&self, id: SubscriptionId) -> Vec<Payment> {
        self.store.subscription_payments(id).await.unwrap()
    }

    /// The payment is paid at the clock's time, and the worker's hook runs.
    async fn pay(&self, payment: &Payment) {
        let now = self.clock.now();
        let paid = payhook_testkit::contract::apply_change(
            &*self.store,
            payment,
            &format!("evt_paid_{}", payment.id),
            PaymentChange::paid(None),
            now,
        )
        .await;
        self.subscriptions.after_payment(&paid).await;
    }

    /// Every domain event about subscriptions stored so far, by topic, oldest first.
    async fn topics(&self) -> Vec<String> {
        let far = self.clock.now() + day(3650);
        self.store
            .claim_unpublished(far, 1000, far)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.topic)
            .filter(|t| t.starts_with("subscription."))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_payment_activates_and_each_renewal_is_asked_for_once_before_the_end() {
    let w = world(0).await;
    let opened = w.subscriptions.open(request(), Some("sub-key")).await.unwrap();
    let id = opened.subscription.id;
    assert_eq!(opened.subscription.status, SubscriptionStatus::Pending);
    let first = opened.payment.expect("the first payment").payment;
    assert_eq!(first.subscription_id, Some(id));
    assert_eq!(w.created.load(Ordering::SeqCst), 1);
    // The same key answers the same subscription, and asks the provider nothing.
    let again = w.subscriptions.open(request(), Some("sub-key")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.subscription.id, id);
    assert_eq!(w.created.load(Ordering::SeqCst), 1);

    w.clock.set(start() + Duration::hours(1));
    w.pay(&first).await;
    let active = w.subscription(id).await;
    assert_eq!(active.status, SubscriptionStatus::Active);
    let paid_at = start() + Duration::hours(1);
    assert_eq!(active.current_period_start, Some(paid_at));
    // 31 January + 1 month: the last day of February.
    assert_eq!(
        active.current_period_end,
        Some(Utc.with_ymd_and_hms(2026, 2, 28, 10, 0, 0).unwrap())
    );

    // Rounds every day up to four days before the end: no renewal asked yet.
    for d in 1..=24 {
        w.at(start() + day(d)).await;
    }
    assert_eq!(w.payments(id).await.len(), 1, "renewal asked too early");
    // 72 hours before the end: asked once, however many rounds run.
    let renew_at = active.current_period_end.unwrap() - Duration::hours(72);
    w.at(renew_at).await;
    w.at(renew_at + Duration::hours(1)).await;
    w.at(renew_at + Duration::hours(2)).await;
    let payments = w.payments(id).await;
    assert_eq!(payments.len(), 2, "one renewal payment");
    assert_eq!(w.created.load(Ordering::SeqCst), 2);
    assert_eq!(w.topics().await, ["subscription.activated", "subscription.renewal_due"]);

    // Paid two days early: the next period runs from the old end, to 31 March.
    w.clock.set(renew_at + day(1));
    w.pay(&payments[1]).await;
    let renewed = w.subscription(id).await;
    assert_eq!(renewed.status, SubscriptionStatus::Active);
    assert_eq!(renewed.current_period_start, active.current_period_end);
    assert_eq!(
        renewed.current_period_end,
        Some(Utc.with_ymd_and_hms(2026, 3, 31, 10, 0, 0).unwrap())
    );
    assert_eq!(
        w.topics().await,
        [
            "subscription.activated",
            "subscription.renewal_due",
            "subscription.renewed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unpaid_renewal_lapses_then_expires_and_a_late_payment_reactivates() {
    let w = world(0).await;
    let opened = w.subscriptions.open(request(), None).await.unwrap();
    let id = opened.subscription.id;
    w.pay(&opened.payment.unwrap().payment).await;
    let end = w.subscription(id).await.current_period_end.unwrap();
    w.at(end - Duration::hours(72)).await;
    let renewal = w.payments(id).await.pop().unwrap();
    // Not before the end: still active.
    w.at(end - Duration::seconds(1)).await;
    assert_eq!(w.subscription(id).await.status, SubscriptionStatus::Active);
    w.at(end).await;
    let lapsed = w.subscription(id).await;
    assert_eq!(lapsed.status, SubscriptionStatus::PastDue);
    assert!(lapsed.status.grants_access(), "access through the grace time");
    w.at(end + Duration::hours(71)).await;
    assert_eq!(w.subscription(id).await.status, SubscriptionStatus::PastDue);
    w.at(end + Duration::hours(72)).await;
    assert_eq!(w.subscription(id).await.status, SubscriptionStatus::Expired);
    // Paid ten days after the end: active again from the payment.
    let late = end + day(10);
    w.clock.set(late);
    w.pay(&renewal).await;
    let back = w.subscription(id).await;
    assert_eq!(back.status, SubscriptionStatus::Active);
    assert_eq!(back.current_period_start, Some(late));
    assert_eq!(
        back.current_period_end,
        Some(Utc.with_ymd_and_hms(2026, 4, 10, 9, 0, 0).unwrap())
    );
    let topics = w.topics().await;
    assert_eq!(
        topics,
        [
            "subscription.activated",
            "subscription.renewal_due",
            "subscription.past_due",
            "subscription.expired",
            "subscription.activated"
        ]
    );
    // A new period counted from the payment: its renewal is a new request.
    w.at(back.current_period_end.unwrap() - Duration::hours(72)).await;
    assert_eq!(w.payments(id).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_ask_for_each_renewal_once() {
    let w = world(0).await;
    let other = instance(&w.store, &w.clock, &w.created, &w.failing);
    let opened = w.subscriptions.open(request(), None).await.unwrap();
    let id = opened.subscription.id;
    w.pay(&opened.payment.unwrap().payment).await;
    let end = w.subscription(id).await.current_period_end.unwrap();
    w.clock.set(end - Duration::hours(71));
    // Both run their round at the same moment; the claim and the payment's
    // idempotency key leave one renewal between them.
    let (a, b) = tokio::join!(w.subscriptions.run_due(), other.run_due());
    a.unwrap();
    b.unwrap();
    // And both settle it directly too (the worker's hook on each instance).
    let (a, b) = tokio::join!(w.subscriptions.settle(id), other.settle(id));
    a.unwrap();
    b.unwrap();
    assert_eq!(w.payments(id).await.len(), 2);
    assert_eq!(w.created.load(Ordering::SeqCst), 2);
    let renewal_due = w
        .topics()
        .await
        .iter()
        .filter(|t| *t == "subscription.renewal_due")
        .count();
    assert_eq!(renewal_due, 1);
}

/// A full refund of the payment that bought the current period ends access now
/// (`expired`), so a refunded customer does not keep what they got their money back for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refunded_subscription_payment_ends_access_now() {
    let w = world(0).await;
    let opened = w.subscriptions.open(request(), None).await.unwrap();
    let id = opened.subscription.id;
    let first = opened.payment.unwrap().payment;
    w.pay(&first).await;
    // Half the money back: the customer keeps what is left of the period.
    w.clock.set(start() + day(2));
    let paid = w.store.payment(first.id).await.unwrap().unwrap();
    let half = payhook_testkit::contract::apply_change(
        &*w.store,
        &paid,
        "evt_refunded_half",
        PaymentChange::Refund {
            refunded_total: paid.amount.amount_minor() / 2,
            currency: paid.amount.currency(),
        },
        start() + day(2),
    )
    .await;
    assert_eq!(half.status, PaymentStatus::PartiallyRefunded);
    w.subscriptions.after_payment(&half).await;
    assert_eq!(
        w.subscription(id).await.status,
        SubscriptionStatus::Active,
        "a partial refund keeps access"
    );
    let refunded_at = start() + day(5);
    w.clock.set(refunded_at);
    let paid = w.store.payment(first.id).await.unwrap().unwrap();
    let refunded = payhook_testkit::contract::apply_change(
        &*w.store,
        &paid,
        "evt_refunded",
        PaymentChange::Refund {
            refunded_total: paid.amount.amount_minor(),
            currency: paid.amount.currency(),
        },
        refunded_at,
    )
    .await;
    assert_eq!(refunded.status, PaymentStatus::Refunded);
    w.subscriptions.after_payment(&refunded).await;
    let s = w.subscription(id).await;
    assert_eq!(s.status, SubscriptionStatus::Expired);
    assert!(!s.status.grants_access());
    assert_eq!(s.current_period_end, Some(refunded_at));
    // Settled again (the scheduler): the refund is applied once.
    w.subscriptions.settle(id).await.unwrap();
    let history = w.store.subscription_history(id).await.unwrap();
    assert_eq!(history.iter().filter(|h| h.reason.contains("refunded")).count(), 1);
    assert_eq!(w.topics().await, ["subscription.activated", "subscription.expired"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_at_period_end_keeps_access_then_cancels_and_asks_no_renewal() {
    let w = world(0).await;
    let opened = w.subscriptions.open(request(), None).await.unwrap();
    let id = opened.subscription.id;
    w.pay(&opened.payment.unwrap().payment).await;
    let s = w.subscriptions.cancel(id, true).await.unwrap();
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert!(s.cancel_at_period_end);
    let end = s.current_period_end.unwrap();
    w.at(end - Duration::hours(1)).await;
    assert_eq!(w.payments(id).await.len(), 1, "no renewal for a subscription ending");
    w.at(end).await;
    assert_eq!(w.subscription(id).await.status, SubscriptionStatus::Canceled);
    assert!(matches!(
        w.subscriptions.cancel(id, false).await,
        Err(SubscribeError::NotCancelable { .. })
    ));
    // Immediate cancel of another: canceled now.
    let other = w.subscriptions.open(request(), None).await.unwrap();
    let now = w.subscriptions.cancel(other.subscription.id, false).await.unwrap();
    assert_eq!(now.status, SubscriptionStatus::Canceled);
    assert_eq!(now.canceled_at, Some(w.clock.now()));
}

/// A crash between the payment's commit and its subscription's settling loses
/// nothing: the scheduler applies the payment at the subscription's next due time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_the_worker_did_not_apply_is_applied_by_the_scheduler() {
    let w = world(0).await;
    let opened = w.subscriptions.open(request(), None).await.unwrap();
    let id = opened.subscription.id;
    let first = opened.payment.unwrap().payment;
    let paid_at = start() + Duration::minutes(2);
    payhook_testkit::contract::apply_change(&*w.store, &first, "evt_paid", PaymentChange::paid(None), paid_at).await;
    // No hook ran. Before the pending re-check nothing happens; at it, activation,
    // with the period counted from the payment, not from the check.
    w.at(start() + Duration::minutes(9)).await;
    assert_eq!(w.subscription(id).await.status, SubscriptionStatus::Pending);
    w.at(start() + Duration::minutes(10)).await;
    let s = w.subscription(id).await;
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert_eq!(s.current_period_start, Some(paid_at));
}

/// A plan with a trial: trialing at once, the first payment asked for before the trial
/// ends; paid, the first period starts when the trial ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_comes_first_and_its_first_payment_is_asked_for_before_it_ends() {
    let w = world(14).await;
    let opened = w.subscriptions.open(request(), None).await.unwrap();
    assert!(opened.payment.is_none());
    let id = opened.subscription.id;
    assert_eq!(opened.subscription.status, SubscriptionStatus::Trialing);
    let trial_end = start() + day(14);
    assert_eq!(opened.subscription.current_period_end, Some(trial_end));
    w.at(trial_end - Duration::hours(73)).await;
    assert!(w.payments(id).await.is_empty());
    w.at(trial_end - Duration::hours(72)).await;
    let first = w.payments(id).await.pop().expect("the first payment");
    w.clock.set(trial_end - day(1));
    w.pay(&first).await;
    let s = w.subscription(id).await;
    assert_eq!(s.status, SubscriptionStatus::Active);
    assert_eq!(s.current_period_start, Some(trial_end));
}

/// A provider outage when a payment is asked for does not cost the customer their
/// subscription: the first payment is asked again on a retry of the same request, a
/// renewal at the scheduler's next look ten minutes later, each under a new key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_the_provider_failed_to_create_is_asked_for_again() {
    let w = world(0).await;
    w.failing.store(1, Ordering::SeqCst);
    let refused = w.subscriptions.open(request(), Some("sub-key")).await;
    assert!(matches!(
        refused,
        Err(SubscribeError::Payment(CreateError::Provider { .. }))
    ));
    let opened = w.subscriptions.open(request(), Some("sub-key")).await.unwrap();
    assert!(opened.replayed);
    let first = opened.payment.expect("asked again").payment;
    assert_eq!(first.status, PaymentStatus::Pending);
    let id = opened.subscription.id;
    w.pay(&first).await;
    assert_eq!(w.subscription(id).await.status, SubscriptionStatus::Active);

    let end = w.subscription(id).await.current_period_end.unwrap();
    w.failing.store(1, Ordering::SeqCst);
    w.at(end - Duration::hours(72)).await;
    let payments = w.payments(id).await;
    assert!(
        payments.last().unwrap().failure_reason.is_some(),
        "the failed renewal is kept"
    );
    assert!(!w.topics().await.contains(&"subscription.renewal_due".to_owned()));
    w.at(end - Duration::hours(72) + Duration::minutes(9)).await;
    assert_eq!(w.payments(id).await.len(), payments.len(), "not before the next look");
    w.at(end - Duration::hours(72) + Duration::minutes(10)).await;
    let renewal = w.payments(id).await.pop().unwrap();
    assert_eq!(
        (renewal.status, renewal.failure_reason.is_none()),
        (PaymentStatus::Pending, true)
    );
    assert_eq!(
        w.topics()
            .await
            .iter()
            .filter(|t| *t == "subscription.renewal_due")
            .count(),
        1
    );
}
