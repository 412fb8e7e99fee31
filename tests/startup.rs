//! Start-up refuses unsafe states with clear messages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_app::{Application, StartupError};
use payhook_e2e::{settings, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_an_unmigrated_postgres_database_is_refused() {
    let db = TestDb::create_unmigrated().await;
    let err = Application::build(settings(&db.url, &[]))
        .await
        .err()
        .expect("start-up must fail");
    assert!(matches!(err, StartupError::PendingMigrations), "{err}");
    assert!(err.to_string().contains("payhook migrate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_migrate_prepares_a_fresh_database() {
    let db = TestDb::create_unmigrated().await;
    let app = Application::build(settings(
        &db.url,
        &[("PAYHOOK__DATABASE__AUTO_MIGRATE", "true")],
    ))
    .await
    .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let ready = reqwest::get(format!("{address}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 200);
    assert!(!payhook_postgres::PgStore::has_pending_migrations(&db.url)
        .await
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_stops_start_up_with_its_reason() {
    let err = Application::build(settings("postgres://postgres@127.0.0.1:9/nothing", &[]))
        .await
        .err()
        .expect("start-up must fail");
    assert!(matches!(err, StartupError::Store(_)), "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}
