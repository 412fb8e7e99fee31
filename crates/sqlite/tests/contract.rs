//! The store contract suite against the SQLite store, one fresh file per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payhook_sqlite::SqliteStore;

/// Removes the test's database directory when the test ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn fresh() -> Option<(SqliteStore, TempDir)> {
    let dir = std::env::temp_dir().join(format!("payhook-contract-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/payhook.db", dir.display());
    SqliteStore::migrate(&url).await.unwrap();
    Some((SqliteStore::connect(&url, 4).unwrap(), TempDir(dir)))
}

payhook_testkit::store_contract_tests!(fresh);
