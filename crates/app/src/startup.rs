//! Builds a running payhook from `Settings`: store, providers, services, HTTP server,
//! worker and outbox relay. `main` and the end-to-end tests start the same `Application`.

use crate::bus::EventBus;
use crate::clock::SystemClock;
use crate::fallback::FallbackLog;
use crate::group_commit::GroupCommit;
use crate::handoff;
use crate::http::{routes, AppState};
use crate::ingest::IngestService;
use crate::payments::{PaymentRequests, GATEWAY_TIMEOUT};
use crate::processing::{run_worker, Processor, RetryPolicy};
use crate::providers::{ProviderError, Providers};
use crate::relay::{run_relay, OutboxRelay};
use crate::settings::{Settings, SettingsError, StoreKind};
use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use payhook_domain::ports::{
    Clock, EventPublisher, FanOut, ForensicLog, Outbox, PaymentStore, StoreError, StoreHealth, WebhookInbox,
};
use payhook_domain::{ConnectOptions, OutboxMessage};
use payhook_notify::{NotifyError, NotifyWebhook};
use payhook_postgres::{PgFanOut, PgStore};
use payhook_sqlite::SqliteStore;
use secrecy::ExposeSecret;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

/// How long an outgoing webhook may take before the delivery counts as failed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long start-up spends delivering domain events left undelivered by a previous run.
const RECONCILE_BUDGET: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("the database has migrations this version needs and has not applied: run `payhook migrate` first, or set database.auto_migrate = true")]
    PendingMigrations,
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("{0}")]
    Usage(String),
}

/// Every store port, served by one store.
#[derive(Clone)]
pub struct Stores {
    pub forensic: Arc<dyn ForensicLog>,
    pub inbox: Arc<dyn WebhookInbox>,
    pub payments: Arc<dyn PaymentStore>,
    pub outbox: Arc<dyn Outbox>,
    pub health: Arc<dyn StoreHealth>,
    /// Shares domain events with the other instances on the same store, where it can
    /// (Postgres); `None`: this instance's subscribers hear only its own relay.
    pub fan_out: Option<Arc<dyn FanOut>>,
}

impl Stores {
    /// Serves every port from one store (what both built-in stores do).
    pub fn from_one<S>(store: S) -> Self
    where
        S: ForensicLog + WebhookInbox + PaymentStore + Outbox + StoreHealth + 'static,
    {
        let store = Arc::new(store);
        Self {
            forensic: store.clone(),
            inbox: store.clone(),
            payments: store.clone(),
            outbox: store.clone(),
            health: store,
            fan_out: None,
        }
    }

    /// Opens the store `database.url` names, migrating it first if configured to.
    pub async fn open(settings: &Settings) -> Result<Self, StartupError> {
        let url = settings.database.url.expose_secret();
        let migrate = settings.auto_migrate()?;
        match settings.store_kind()? {
            StoreKind::Postgres => {
                if migrate {
                    PgStore::migrate(url).await?;
                } else if PgStore::has_pending_migrations(url).await? {
                    return Err(StartupError::PendingMigrations);
                }
                let store = PgStore::connect(url, settings.pool_size()?)?;
                let fan_out = PgFanOut::new(store.clone(), url);
                Ok(Self {
                    fan_out: Some(Arc::new(fan_out)),
                    ..Self::from_one(store)
                })
            }
            StoreKind::Sqlite => {
                if migrate {
                    SqliteStore::migrate(url).await?;
                } else if SqliteStore::has_pending_migrations(url).await? {
                    return Err(StartupError::PendingMigrations);
                }
                Ok(Self::from_one(SqliteStore::connect(url, settings.pool_size()?)?))
            }
        }
    }
}

pub struct Application {
    port: u16,
    server: Server,
    worker: JoinHandle<()>,
    relay: JoinHandle<()>,
    /// Follows the other instances' domain events, where the store shares them.
    fan_out: Option<JoinHandle<()>>,
    processor: Arc<Processor>,
    stop: watch::Sender<bool>,
    /// The relay stops after the worker, so it delivers the worker's last commits.
    stop_relay: watch::Sender<bool>,
    bus: EventBus,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let stores = Stores::open(&settings).await?;
        let providers = connect_providers(&settings)?;
        Self::build_with(settings, stores, providers).await
    }

    /// Builds on given stores and providers, for embedding code and tests. Before
    /// the server listens, leases of crashed workers are released and undelivered
    /// domain events are delivered.
    pub async fn build_with(settings: Settings, stores: Stores, providers: Providers) -> Result<Self, StartupError> {
        install_crypto_provider();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let accepted = Arc::new(Notify::new());
        let published = Arc::new(Notify::new());
        let w = &settings.worker;
        let policy = RetryPolicy {
            max_attempts: w.max_attempts,
            backoff_base: Duration::from_millis(w.backoff_base_ms),
            backoff_max: Duration::from_millis(w.backoff_max_ms),
        };

        let bus = EventBus::new();
        // With a fan-out, the relay announces to every instance, and this instance's
        // bus hears it like the others do (from `fan_out::follow`), once.
        let (local, fan_out): (Arc<dyn EventPublisher>, _) = match &stores.fan_out {
            Some(fan_out) => {
                let listener = fan_out.listen().await?;
                let follower = tokio::spawn(crate::fan_out::follow(fan_out.clone(), listener, Arc::new(bus.clone())));
                (fan_out.clone(), Some(follower))
            }
            None => (Arc::new(bus.clone()), None),
        };
        let mut subscribers: Vec<Arc<dyn EventPublisher>> = vec![local];
        if let (Some(url), Some(secret)) = (&settings.notify.url, &settings.notify.secret) {
            subscribers.push(Arc::new(NotifyWebhook::new(url, secret, NOTIFY_TIMEOUT)?));
        }
        let relay = Arc::new(OutboxRelay::new(
            stores.outbox.clone(),
            subscribers,
            clock.clone(),
            policy.clone(),
            settings.outbox.batch_size,
            Duration::from_secs(settings.outbox.lease_secs),
        ));
        reconcile(&stores, &relay, clock.as_ref()).await;

        let sources = providers.units().map(|unit| unit.webhooks.clone()).collect();
        let fallback = settings
            .fallback_log
            .enabled
            .then(|| FallbackLog::new(settings.fallback_log.dir.clone(), settings.fallback_log.name.clone()));
        let batch_size = settings.worker_batch_size()?;
        let lease = Duration::from_secs(w.lease_secs);
        // Room for eight batches: in a burst ingest runs ahead of the worker, and what
        // does not fit is stored unleased and claimed back later (an UPDATE of each row).
        let (handoff, handed_over) = handoff::channel(8 * batch_size as usize, lease, clock.clone());
        let ingest = IngestService::new(
            sources,
            crate::providers::redaction(),
            stores.forensic.clone(),
            GroupCommit::start(stores.inbox.clone(), handoff, accepted.clone()),
            stores.payments.clone(),
            clock.clone(),
            fallback,
        );
        let payment_requests = PaymentRequests::new(
            stores.payments.clone(),
            providers
                .units()
                .filter_map(|unit| Some((unit.payments.clone()?, unit.webhooks.authentication())))
                .collect(),
            clock.clone(),
        );
        let gateways = providers.units().filter_map(|unit| unit.payments.clone()).collect();
        // The relay takes the domain events of the worker's commits in-process; room
        // for two of the worker's batches.
        let (to_relay, relay_handed_over) = handoff::channel(
            2 * batch_size as usize,
            Duration::from_secs(settings.outbox.lease_secs),
            clock.clone(),
        );
        let processor = Arc::new(
            Processor::new(
                stores.inbox.clone(),
                stores.payments.clone(),
                gateways,
                clock,
                policy,
                lease,
                published.clone(),
            )
            .handing_domain_events_to(to_relay),
        );
        let (stop, stopped) = watch::channel(false);
        let (stop_relay, relay_stopped) = watch::channel(false);
        let worker = tokio::spawn(run_worker(
            processor.clone(),
            batch_size,
            w.concurrency,
            Duration::from_millis(w.poll_interval_ms),
            accepted.clone(),
            handed_over,
            stopped,
        ));
        let relay = tokio::spawn(run_relay(
            relay,
            Duration::from_millis(settings.outbox.sweep_interval_ms),
            published,
            relay_handed_over,
            relay_stopped,
        ));

        let state = web::Data::new(AppState {
            ingest,
            payments: stores.payments,
            payment_requests,
            bus: bus.clone(),
            inbox: stores.inbox,
            outbox: stores.outbox,
            health: stores.health,
            max_body_bytes: settings.server.max_body_bytes,
            admin_token: settings.admin.token.clone(),
            accepted,
            metrics: crate::metrics::handle(),
        });
        let addr = settings.server.bind.clone();
        let bind_error = |source| StartupError::Bind {
            addr: addr.clone(),
            source,
        };
        let listener = TcpListener::bind(&addr).map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        let server = HttpServer::new(move || App::new().app_data(state.clone()).configure(routes))
            .listen(listener)
            .map_err(bind_error)?
            .shutdown_timeout(settings.server.shutdown_timeout_secs)
            .run();
        Ok(Self {
            port,
            server,
            worker,
            relay,
            fan_out,
            processor,
            stop,
            stop_relay,
            bus,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Domain events as they are delivered, for code in the same process.
    pub fn subscribe(&self) -> broadcast::Receiver<OutboxMessage> {
        self.bus.subscribe()
    }

    /// Serves until SIGTERM/SIGINT. Then: the server stops accepting and finishes
    /// in-flight requests; the worker finishes its batch, then the relay delivers
    /// what the worker handed it, within `server.shutdown_timeout_secs`; whatever the
    /// worker had not finished by then is released for other instances.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        let _ = self.stop.send(true);
        let stopped = tokio::time::timeout(self.shutdown_timeout, async {
            let _ = self.worker.await;
            let _ = self.stop_relay.send(true);
            let _ = self.relay.await;
        })
        .await;
        let _ = self.stop_relay.send(true);
        if stopped.is_err() {
            tracing::warn!("worker did not finish its batch in time; releasing its events");
        }
        if let Some(follower) = &self.fan_out {
            follower.abort();
        }
        match self.processor.release_unfinished().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "released unfinished events"),
            Err(e) => {
                tracing::error!(error = %e, "could not release unfinished events; their leases will expire")
            }
        }
        tracing::info!("payhook stopped");
        served
    }
}

/// Connects every provider the configuration enables.
pub fn connect_providers(settings: &Settings) -> Result<Providers, ProviderError> {
    let options = ConnectOptions {
        api_timeout: GATEWAY_TIMEOUT,
    };
    Providers::connect(&settings.providers, &options)
}

/// One TLS crypto provider for the whole process, ring (see DEPENDENCIES.md): every
/// HTTPS client payhook builds (reqwest is compiled without a provider) uses it. An
/// embedding program that installed its own keeps it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Start-up reconciliation: events leased by workers that died are due again, and
/// domain events committed but never delivered are delivered (within a time budget;
/// the relay goes on with the rest while serving).
async fn reconcile(stores: &Stores, relay: &OutboxRelay, clock: &dyn Clock) {
    match stores.inbox.release_expired_leases(clock.now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(released = n, "released expired leases of stopped workers"),
        Err(e) => tracing::warn!(error = %e, "could not release expired leases"),
    }
    let deliver = async {
        while let Ok(n) = relay.run_once().await {
            if n == 0 {
                break;
            }
        }
    };
    if tokio::time::timeout(RECONCILE_BUDGET, deliver).await.is_err() {
        tracing::warn!("undelivered domain events remain after start-up; the relay goes on with them");
    }
}
