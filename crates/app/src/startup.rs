//! Builds a running payhook from `Settings`: store, providers, services, HTTP server
//! and worker. `main` and the end-to-end tests start the same `Application`.

use crate::clock::SystemClock;
use crate::http::{routes, AppState};
use crate::ingest::IngestService;
use crate::processing::{run_worker, Processor, RetryPolicy};
use crate::settings::{Settings, SettingsError, StoreKind};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use payhook_domain::ports::{
    Clock, ForensicLog, PaymentStore, StoreError, StoreHealth, WebhookInbox,
};
use payhook_domain::source::WebhookSource;
use payhook_postgres::PgStore;
use payhook_sqlite::SqliteStore;
use payhook_stripe::{SignatureVerifier, StripeWebhooks};
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the database has migrations this version needs and has not applied: run `payhook migrate` first, or set database.auto_migrate = true")]
    PendingMigrations,
}

/// Every store port, served by one store.
#[derive(Clone)]
pub struct Stores {
    pub forensic: Arc<dyn ForensicLog>,
    pub inbox: Arc<dyn WebhookInbox>,
    pub payments: Arc<dyn PaymentStore>,
    pub health: Arc<dyn StoreHealth>,
}

impl Stores {
    /// Serves every port from one store (what both built-in stores do).
    pub fn from_one<S>(store: S) -> Self
    where
        S: ForensicLog + WebhookInbox + PaymentStore + StoreHealth + 'static,
    {
        let store = Arc::new(store);
        Self {
            forensic: store.clone(),
            inbox: store.clone(),
            payments: store.clone(),
            health: store,
        }
    }

    /// Opens the store `database.url` names, migrating it first if configured to.
    pub async fn open(settings: &Settings) -> Result<Self, StartupError> {
        let url = settings.database.url.expose_secret();
        match settings.store_kind()? {
            StoreKind::Postgres => {
                if settings.auto_migrate()? {
                    PgStore::migrate(url).await?;
                } else if PgStore::has_pending_migrations(url).await? {
                    return Err(StartupError::PendingMigrations);
                }
                Ok(Self::from_one(PgStore::connect(
                    url,
                    settings.database.pool_size,
                )?))
            }
            StoreKind::Sqlite => {
                if settings.auto_migrate()? {
                    SqliteStore::migrate(url).await?;
                } else if SqliteStore::has_pending_migrations(url).await? {
                    return Err(StartupError::PendingMigrations);
                }
                Ok(Self::from_one(SqliteStore::connect(
                    url,
                    settings.database.pool_size,
                )?))
            }
        }
    }
}

/// The webhook sources the configuration enables.
fn enabled_sources(settings: &Settings) -> Vec<Arc<dyn WebhookSource>> {
    let mut sources: Vec<Arc<dyn WebhookSource>> = Vec::new();
    let stripe = &settings.providers.stripe;
    if stripe.enabled {
        let verifier =
            SignatureVerifier::new(stripe.webhook_secrets.clone(), stripe.tolerance_secs);
        sources.push(Arc::new(StripeWebhooks::new(verifier)));
    }
    sources
}

pub struct Application {
    port: u16,
    server: Server,
    worker: JoinHandle<()>,
    stop_worker: watch::Sender<bool>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let stores = Stores::open(&settings).await?;
        Self::build_with(settings, stores, Vec::new())
    }

    /// Builds on given stores; `extra_sources` add to (or replace, per provider) the
    /// configured webhook sources, for embedding code and tests.
    pub fn build_with(
        settings: Settings,
        stores: Stores,
        extra_sources: Vec<Arc<dyn WebhookSource>>,
    ) -> Result<Self, StartupError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let accepted = Arc::new(Notify::new());
        let mut sources = enabled_sources(&settings);
        sources.extend(extra_sources);
        let ingest = IngestService::new(
            sources,
            stores.forensic.clone(),
            stores.inbox.clone(),
            clock.clone(),
            accepted.clone(),
        );

        let w = &settings.worker;
        let policy = RetryPolicy {
            max_attempts: w.max_attempts,
            backoff_base: Duration::from_millis(w.backoff_base_ms),
            backoff_max: Duration::from_millis(w.backoff_max_ms),
        };
        let processor = Arc::new(Processor::new(
            stores.inbox.clone(),
            stores.payments.clone(),
            clock,
            policy,
            Duration::from_secs(w.lease_secs),
        ));
        let (stop_worker, stopped) = watch::channel(false);
        let worker = tokio::spawn(run_worker(
            processor,
            w.batch_size,
            w.concurrency,
            Duration::from_millis(w.poll_interval_ms),
            accepted,
            stopped,
        ));

        let state = web::Data::new(AppState {
            ingest,
            payments: stores.payments,
            health: stores.health,
            max_body_bytes: settings.server.max_body_bytes,
        });
        let addr = settings.server.bind.clone();
        let listener = TcpListener::bind(&addr).map_err(|source| StartupError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: addr.clone(),
                source,
            })?
            .port();
        let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes))
            .listen(listener)
            .map_err(|source| StartupError::Bind { addr, source })?
            .shutdown_timeout(settings.server.shutdown_timeout_secs)
            .run();
        Ok(Self {
            port,
            server,
            worker,
            stop_worker,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM/SIGINT: the server stops accepting and finishes in-flight
    /// requests, then the worker finishes its batch.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        let _ = self.stop_worker.send(true);
        if let Err(e) = self.worker.await {
            tracing::error!(error = %e, "worker task failed");
        }
        served
    }
}
