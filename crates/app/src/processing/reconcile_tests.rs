use super::*;
use chrono::{DateTime, TimeZone, Utc};
use payhook_domain::ports::{Admission, MockClock, MockPaymentGateway, MockReconcileQueue, MockWebhookInbox};
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
async fn without_an_api_or_a_reference_nothing_is_asked_and_the_check_moves_on() {
    for (payment, gateway) in [
        (open_payment(Some("inv_1")), None),
        (open_payment(None), Some(MockPaymentGateway::new())),
    ] {
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
