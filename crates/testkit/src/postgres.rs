//! Throw-away Postgres databases for tests, and the rule for when Postgres is absent.

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The Postgres server tests create their databases on (`PAYHOOK_TEST_DATABASE_URL`).
pub fn admin_url() -> String {
    std::env::var("PAYHOOK_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `PAYHOOK_REQUIRE_POSTGRES=1` (CI sets it): an unreachable Postgres fails the tests
/// instead of skipping the Postgres half.
pub fn postgres_required() -> bool {
    std::env::var("PAYHOOK_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

/// Whether the Postgres half of the tests runs. Panics, with the reason, when Postgres
/// is required but unreachable; says so on stderr when it is skipped.
pub async fn postgres_available() -> bool {
    let url = admin_url();
    match AsyncPgConnection::establish(&url).await {
        Ok(_) => true,
        Err(e) if postgres_required() => panic!(
            "Postgres is required (PAYHOOK_REQUIRE_POSTGRES=1) but not reachable at {url}: {e}.\n\
             Start it (pg_ctlcluster 15 main start) or point PAYHOOK_TEST_DATABASE_URL at one."
        ),
        Err(e) => {
            eprintln!("SKIPPED (Postgres unreachable at {url}: {e}); set PAYHOOK_REQUIRE_POSTGRES=1 to fail instead");
            false
        }
    }
}

/// A database created for one test and dropped (with its connections) when it goes.
pub struct TestDb {
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDb {
    /// An empty database; the caller runs the store's migrations.
    pub async fn create() -> Self {
        let admin_url = admin_url();
        let mut admin = AsyncPgConnection::establish(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("Postgres is not reachable at {admin_url}: {e}"));
        let name = format!("payhook_test_{}", uuid::Uuid::new_v4().simple());
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("PAYHOOK_TEST_DATABASE_URL must name a database: {admin_url}"),
        };
        Self { url, name, admin_url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside the test's runtime; the clean-up gets a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut admin) = AsyncPgConnection::establish(&admin_url).await {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}
