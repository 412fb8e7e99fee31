//! The store contract suite against the Postgres store, one fresh database per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_postgres::PgStore;
use payhook_testkit::postgres::{postgres_available, TestDb};

async fn fresh() -> Option<(PgStore, TestDb)> {
    if !postgres_available().await {
        return None;
    }
    let db = TestDb::create().await;
    PgStore::migrate(&db.url).await.unwrap();
    Some((PgStore::connect(&db.url, 8).unwrap(), db))
}

payhook_testkit::store_contract_tests!(fresh);
