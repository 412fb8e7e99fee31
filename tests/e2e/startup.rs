//! Start-up refuses unsafe states with clear messages, and prepares the embedded store
//! by itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_app::{Application, StartupError};
use payhook_e2e::{postgres_available, settings, Backend, TestStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_an_unmigrated_postgres_database_is_refused() {
    if !postgres_available().await {
        return;
    }
    let db = TestStore::create(Backend::Postgres).await;
    let err = Application::build(settings(db.url(), &[]))
        .await
        .err()
        .expect("start-up must fail");
    assert!(matches!(err, StartupError::PendingMigrations), "{err}");
    assert!(err.to_string().contains("payhook migrate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmigrated_sqlite_file_is_refused_when_auto_migrate_is_off() {
    let db = TestStore::create(Backend::Sqlite).await;
    let off = [("PAYHOOK__DATABASE__AUTO_MIGRATE", "false")];
    let err = Application::build(settings(db.url(), &off))
        .await
        .err()
        .expect("start-up must fail");
    assert!(matches!(err, StartupError::PendingMigrations), "{err}");
}

async fn starts_ready_on_a_fresh_store(backend: Backend, overrides: &[(&str, &str)]) {
    let db = TestStore::create(backend).await;
    let app = Application::build(settings(db.url(), overrides)).await.unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let ready = reqwest::get(format!("{address}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_migrates_itself_by_default() {
    // No auto_migrate setting: the SQLite default is on, and the file and its
    // directory are created.
    starts_ready_on_a_fresh_store(Backend::Sqlite, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_migrate_prepares_a_fresh_postgres_database() {
    if !postgres_available().await {
        return;
    }
    starts_ready_on_a_fresh_store(Backend::Postgres, &[("PAYHOOK__DATABASE__AUTO_MIGRATE", "true")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_stops_start_up_with_its_reason() {
    let err = Application::build(settings("postgres://postgres@127.0.0.1:9/nothing", &[]))
        .await
        .err()
        .expect("start-up must fail");
    assert!(matches!(err, StartupError::Database { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.starts_with("cannot open the store at postgres 127.0.0.1:9/nothing: "),
        "{message}"
    );
    assert!(
        message.contains("cannot connect") && message.contains("127.0.0.1:9: "),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_delivers_domain_events_a_previous_run_left_undelivered() {
    use payhook_domain::ports::{Admission, Outbox, PaymentStore, WebhookInbox};
    use payhook_domain::{Currency, EventId, Money, NewPayment, PaymentChange, PaymentId, PaymentRef, Provider};
    let db = TestStore::create(Backend::Sqlite).await;
    // A previous run committed a payment change and died before delivering its event.
    payhook_sqlite::SqliteStore::migrate(db.url()).await.unwrap();
    let store = payhook_sqlite::SqliteStore::connect(db.url(), 1).unwrap();
    let now = chrono::Utc::now();
    let payment = store
        .create_payment(&NewPayment {
            account: String::new(),
            id: PaymentId::from_uuid(uuid::Uuid::new_v4()),
            provider: Provider::Stripe,
            provider_ref: Some("pi_left".into()),
            merchant_ref: None,
            amount: Money::new(500, Currency::parse("USD").unwrap()).unwrap(),
            customer_email: None,
            description: None,
            metadata: serde_json::json!({}),
            created_at: now,
            client_token_hash: None,
            callback_token_hash: None,
            idempotency: None,
            next_reconcile_at: None,
        })
        .await
        .unwrap();
    let event = payhook_domain::WebhookEvent {
        mirror: None,
        subscription: None,
        provider: Provider::Stripe,
        event_id: EventId::parse("evt_left").unwrap(),
        event_type: "payment_intent.succeeded".into(),
        occurred_at: now,
        payment: PaymentRef {
            account: None,
            payment_id: None,
            provider_ref: Some("pi_left".into()),
            aliases: Vec::new(),
        },
        change: PaymentChange::paid(None),
        details: None,
        confirm_with_provider: false,
    };
    let request = payhook_domain::WebhookRequest::new(
        "stripe",
        "POST",
        "/",
        "",
        vec![],
        vec![],
        None,
        now,
        &Default::default(),
    );
    let Admission::Accepted(inbox) = store.admit(&request, &event).await.unwrap() else {
        panic!("not new")
    };
    store
        .commit_application(inbox, &payment.apply(&event, now))
        .await
        .unwrap();
    assert_eq!(store.backlog().await.unwrap(), 1);

    let app = Application::build(settings(db.url(), &[])).await.unwrap();
    assert_eq!(store.backlog().await.unwrap(), 0, "delivered before the server listens");
    drop(app);
}
