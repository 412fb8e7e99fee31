//! Admission racing another instance: a batch's statement that waited on another
//! transaction's insert of the same event cannot see that row in its own snapshot,
//! and must still answer with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::Utc;
use diesel::sql_types::{BigInt, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use payhook_domain::ports::{Admission, WebhookInbox};
use payhook_domain::{EventId, InboxId, PaymentChange, PaymentRef, Provider, WebhookEvent, WebhookRequest};
use payhook_postgres::PgStore;
use payhook_testkit::postgres::{postgres_available, TestDb};
use std::sync::Arc;
use std::time::Duration;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Logged {
    #[diesel(sql_type = Text)]
    event_id: String,
    #[diesel(sql_type = Text)]
    processing_result: String,
}

fn delivery(event_id: &str) -> (WebhookRequest, WebhookEvent) {
    let mut request = WebhookRequest::new(
        "stripe",
        "POST",
        "/webhooks/stripe",
        "",
        Vec::new(),
        format!("{{\"id\":\"{event_id}\"}}").into_bytes(),
        None,
        Utc::now(),
        &payhook_domain::Redaction::default(),
    );
    request.primary.event_id = Some(event_id.to_owned());
    let event = WebhookEvent {
        mirror: None,
        subscription: None,
        provider: Provider::Stripe,
        event_id: EventId::parse(event_id).unwrap(),
        event_type: "payment_intent.succeeded".to_owned(),
        occurred_at: Utc::now(),
        payment: PaymentRef {
            account: None,
            payment_id: None,
            provider_ref: Some("pi_raced".to_owned()),
            aliases: Vec::new(),
        },
        change: PaymentChange::paid(None),
        details: None,
        confirm_with_provider: false,
    };
    (request, event)
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(conn).await.unwrap().n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_another_instance_commits_while_the_batch_waits_on_it_is_answered_with_its_row() {
    if !postgres_available().await {
        return;
    }
    let db = TestDb::create().await;
    PgStore::migrate(&db.url).await.unwrap();
    let store = Arc::new(PgStore::connect(&db.url, 2).unwrap());
    let mut other = AsyncPgConnection::establish(&db.url).await.unwrap();
    other
        .batch_execute(
            "BEGIN; INSERT INTO webhook_events (provider, event_id, event_type, payload, next_attempt_at, received_at) \
             VALUES ('stripe', 'evt_raced', 'payment_intent.succeeded', '{}', now(), now())",
        )
        .await
        .unwrap();
    let admitting = tokio::spawn({
        let store = store.clone();
        async move {
            store
                .admit_all(&[delivery("evt_raced"), delivery("evt_fresh")], None)
                .await
        }
    });
    // The batch's statement now waits for the other transaction's unique key.
    let mut watcher = AsyncPgConnection::establish(&db.url).await.unwrap();
    let waiting = "SELECT count(*) AS n FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    tokio::time::timeout(Duration::from_secs(10), async {
        while count(&mut watcher, waiting).await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the admission waits on the uncommitted row");
    other.batch_execute("COMMIT").await.unwrap();

    let answers = admitting.await.unwrap().unwrap();
    let raced = count(
        &mut watcher,
        "SELECT id AS n FROM webhook_events WHERE event_id = 'evt_raced'",
    )
    .await;
    assert_eq!(answers[0], Admission::Duplicate(InboxId(raced)), "{answers:?}");
    assert!(matches!(answers[1], Admission::Accepted(_)), "{answers:?}");
    let logged: Vec<Logged> =
        diesel::sql_query("SELECT event_id, processing_result FROM webhook_logs ORDER BY event_id")
            .load(&mut watcher)
            .await
            .unwrap();
    let logged: Vec<_> = logged
        .iter()
        .map(|l| (l.event_id.as_str(), l.processing_result.as_str()))
        .collect();
    assert_eq!(logged, [("evt_fresh", "accepted"), ("evt_raced", "duplicate")]);
}
