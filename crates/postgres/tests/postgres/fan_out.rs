//! Domain events announced by one instance are heard by another on the same database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{TimeZone, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use payhook_domain::ports::{EventPublisher, FanOut, FanOutListener};
use payhook_domain::OutboxMessage;
use payhook_postgres::{PgFanOut, PgStore};
use payhook_testkit::postgres::{postgres_available, TestDb};
use std::time::Duration;

async fn instances() -> Option<(PgFanOut, PgFanOut, TestDb)> {
    if !postgres_available().await {
        return None;
    }
    let db = TestDb::create().await;
    PgStore::migrate(&db.url).await.unwrap();
    let one = PgFanOut::new(PgStore::connect(&db.url, 2).unwrap(), &db.url);
    let other = PgFanOut::new(PgStore::connect(&db.url, 2).unwrap(), &db.url);
    Some((one, other, db))
}

fn message(id: i64, payload: serde_json::Value) -> OutboxMessage {
    OutboxMessage {
        id,
        topic: "payment.paid".into(),
        payload,
        created_at: Utc.timestamp_opt(1_800_000_000, 0).single().unwrap(),
        attempts: 0,
    }
}

async fn hear(listener: &mut Box<dyn FanOutListener>) -> OutboxMessage {
    tokio::time::timeout(Duration::from_secs(10), listener.next())
        .await
        .expect("heard within 10 s")
        .unwrap()
}

/// Stores outbox message `id` with a 10 KB `metadata` (too large to announce inline),
/// as the relay would find it; returns that metadata.
async fn stored_large_message(db: &TestDb, id: i64) -> String {
    let big = "x".repeat(10_000);
    let mut conn = AsyncPgConnection::establish(&db.url).await.unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO outbox (id, topic, payload, created_at) \
         VALUES ({id}, 'payment.paid', '{{\"metadata\": \"{big}\"}}', '2027-01-15T08:00:00Z')"
    ))
    .await
    .unwrap();
    big
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_reaches_every_listening_instance_in_order() {
    let Some((one, other, _db)) = instances().await else {
        return;
    };
    let mut theirs = other.listen().await.unwrap();
    let mut ours = one.listen().await.unwrap();
    let first = message(1, serde_json::json!({ "payment_id": "p1", "status": "paid" }));
    let second = message(2, serde_json::json!({ "payment_id": "p1", "status": "refunded" }));
    one.publish(&first).await.unwrap();
    one.publish(&second).await.unwrap();
    assert_eq!(hear(&mut theirs).await, first);
    assert_eq!(hear(&mut theirs).await, second);
    assert_eq!(hear(&mut ours).await, first, "the announcing instance hears itself too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_announced_at_once_in_order_with_a_result_per_message() {
    let Some((one, other, db)) = instances().await else {
        return;
    };
    let big = stored_large_message(&db, 12).await;
    let mut theirs = other.listen().await.unwrap();
    let batch: Vec<_> = (10..15)
        .map(|id| match id {
            12 => message(id, serde_json::json!({ "metadata": big })),
            _ => message(id, serde_json::json!({ "payment_id": format!("p{id}") })),
        })
        .collect();
    let results = one.publish_all(&batch).await;
    assert_eq!(results.len(), 5, "one result per message");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    for expected in &batch {
        assert_eq!(&hear(&mut theirs).await, expected, "heard in the order announced");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_announcement_fails_every_message_in_it() {
    let Some((one, _other, db)) = instances().await else {
        return;
    };
    drop(db); // the database is gone: nothing can be announced
    let results = one
        .publish_all(&[message(1, serde_json::json!({})), message(2, serde_json::json!({}))])
        .await;
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(Result::is_err), "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_for_notify_is_read_back_from_the_outbox() {
    let Some((one, other, db)) = instances().await else {
        return;
    };
    let big = stored_large_message(&db, 7).await;
    let mut theirs = other.listen().await.unwrap();
    one.publish(&message(7, serde_json::json!({ "metadata": big })))
        .await
        .expect("announced by id: a NOTIFY payload is limited to 8,000 bytes");
    let heard = hear(&mut theirs).await;
    assert_eq!(heard.id, 7);
    assert_eq!(heard.payload["metadata"].as_str().map(str::len), Some(10_000));
}
