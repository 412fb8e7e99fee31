//! Builds a running payhook from `Settings`: store, providers, services, HTTP server,
//! worker and outbox relay. `main` and the end-to-end tests start the same `Application`.

pub mod clock;
pub mod providers;
mod stores;
pub mod telemetry;

pub use stores::Stores;

use crate::api::credentials::MerchantKeys;
use crate::api::payment_requests::{PaymentRequests, GATEWAY_TIMEOUT};
use crate::api::{AppState, Listener};
use crate::processing::handoff;
use crate::processing::reconcile::{run_reconciler, Reconciler};
use crate::processing::worker::{run_worker, Processor, RetryPolicy};
use crate::publishing::bus::EventBus;
use crate::publishing::relay::{run_relay, OutboxRelay};
use crate::publishing::status_stream::{StreamHub, StreamLimits};
use crate::receiving::fallback_log::FallbackLog;
use crate::receiving::flood::{write_summaries, RejectionLimit};
use crate::receiving::group_commit::GroupCommit;
use crate::receiving::ingest::{ForensicRecords, IngestLimits, IngestService};
use crate::retention::{run_retention, Purger};
use crate::settings::{Settings, SettingsError};
use crate::startup::clock::SystemClock;
use crate::startup::providers::{ProviderError, Providers};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use payhook_domain::ports::{ClaimedEvent, Clock, EventPublisher, StoreError};
use payhook_domain::{ConnectOptions, OutboxMessage};
use payhook_outgoing_webhook::{OutgoingWebhook, OutgoingWebhookError};
use std::net::TcpListener;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

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
    #[error("cannot open the store at {location}: {source}")]
    Database { location: String, source: StoreError },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("the database has migrations this version needs and has not applied: run `payhook migrate` first, or set database.auto_migrate = true")]
    PendingMigrations,
    #[error(transparent)]
    Notify(#[from] OutgoingWebhookError),
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("{0}")]
    Usage(String),
}

pub struct Application {
    port: u16,
    internal_port: Option<u16>,
    servers: Vec<Server>,
    worker: JoinHandle<()>,
    relay: JoinHandle<()>,
    /// Follows the other instances' domain events, where the store shares them.
    fan_out: Option<JoinHandle<()>>,
    processor: Arc<Processor>,
    /// Writes the per-minute summaries of rate-limited requests.
    refusal_summaries: JoinHandle<()>,
    /// Purges what `retention.*` lets go.
    retention: JoinHandle<()>,
    /// Asks providers about open payments (`reconcile.enabled`).
    reconciler: Option<JoinHandle<()>>,
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

    /// Builds on given stores and providers, for embedding code and tests: the
    /// publishing stage first (so start-up can deliver what a previous run left),
    /// then the worker, the ingest path, and the HTTP server in front of them.
    pub async fn build_with(settings: Settings, stores: Stores, providers: Providers) -> Result<Self, StartupError> {
        install_crypto_provider();
        let adjustable = Arc::new(crate::startup::clock::AdjustableClock::default());
        let clock: Arc<dyn Clock> = if settings.admin.time_travel {
            tracing::warn!(
                "admin.time_travel is on: POST /admin/clock moves payhook's clock forward; never in production"
            );
            adjustable.clone()
        } else {
            Arc::new(SystemClock)
        };
        let retry = retry_policy(&settings);
        let batch_size = settings.worker_batch_size()?;
        let wake_worker = Arc::new(Notify::new());
        let wake_relay = Arc::new(Notify::new());

        // The relay retries with the worker's backoff, up to its own number of attempts.
        let relay_retry = RetryPolicy {
            max_attempts: settings.notify.max_attempts,
            ..retry.clone()
        };
        let publishing = Publishing::start(&settings, &stores, clock.clone(), relay_retry).await?;
        recover_previous_run(&stores, &publishing.relay, clock.as_ref()).await;

        // Both handoffs are bounded: what does not fit is stored for a claim instead.
        // Ingest to worker: room for eight batches, as a burst runs ahead of the worker.
        let lease = Duration::from_secs(settings.worker.lease_secs);
        let (to_worker, worker_intake) = handoff::channel(8 * batch_size as usize, lease, clock.clone());
        // Worker to relay: room for two of the worker's batches.
        let relay_lease = Duration::from_secs(settings.outbox.lease_secs);
        let (to_relay, relay_intake) = handoff::channel(2 * batch_size as usize, relay_lease, clock.clone());

        let tie_breaker = mirror_filler(&settings, &stores, &providers, clock.clone());
        let payment_requests = Arc::new({
            let requests = payment_requests(&stores, &providers, clock.clone());
            if settings.reconcile.enabled {
                requests.checked_by(settings.reconcile.schedule())
            } else {
                requests
            }
        });
        let subscriptions = Arc::new(crate::processing::subscribing::Subscriptions::new(
            stores.subscriptions.clone(),
            stores.plans.clone(),
            payment_requests.clone(),
            providers
                .units()
                .filter_map(|unit| Some((unit.provider, unit.subscriptions.clone()?)))
                .collect(),
            clock.clone(),
            settings.subscriptions.schedule(&settings.reconcile),
            wake_relay.clone(),
        ));
        let processor = Arc::new({
            let processor = Processor::new(
                stores.inbox.clone(),
                stores.payments.clone(),
                providers.units().filter_map(|unit| unit.payments.clone()).collect(),
                clock.clone(),
                retry,
                lease,
                wake_relay.clone(),
            )
            .recording_disputes_in(stores.disputes.clone())
            .settling_refunds_in(stores.refunds.clone())
            .mirroring_in(stores.mirror.clone())
            .subscribing_with(subscriptions.clone())
            .handing_domain_events_to(to_relay);
            match tie_breaker {
                Some(filler) => processor.breaking_ties_with(Arc::new(filler)),
                None => processor,
            }
        });
        let (stop, stopped) = watch::channel(false);
        let rejection_limit = Arc::new(RejectionLimit::new(
            NonZeroU32::new(settings.limits.rejected_per_ip_per_minute).unwrap_or(NonZeroU32::MIN),
            clock.clone(),
        ));
        let refusal_summaries = tokio::spawn(write_summaries(
            rejection_limit.clone(),
            stores.forensic.clone(),
            stopped.clone(),
        ));
        let retention = tokio::spawn(run_retention(
            Purger::new(stores.retention.clone(), settings.retention.policy(), clock.clone()),
            Duration::from_secs(settings.retention.interval_secs.max(1)),
            stopped.clone(),
        ));
        // Built whether or not it runs on a schedule: operators can ask now.
        let checker = Arc::new(
            reconciler(&settings, &stores, &providers, clock.clone(), wake_worker.clone())
                .scheduling_subscriptions(subscriptions.clone()),
        );
        let reconciler = settings.reconcile.enabled.then(|| {
            tokio::spawn(run_reconciler(
                checker.clone(),
                Duration::from_secs(settings.reconcile.interval_secs.max(1)),
                stopped.clone(),
            ))
        });
        let ingest = receiving(
            &settings,
            &stores,
            &providers,
            clock.clone(),
            to_worker,
            wake_worker.clone(),
            rejection_limit,
        );

        let (stop_relay, relay_stopped) = watch::channel(false);
        let worker = tokio::spawn(run_worker(
            processor.clone(),
            batch_size,
            settings.worker.concurrency,
            Duration::from_millis(settings.worker.poll_interval_ms),
            wake_worker.clone(),
            worker_intake,
            stopped,
        ));
        let relay = tokio::spawn(run_relay(
            publishing.relay,
            Duration::from_millis(settings.outbox.sweep_interval_ms),
            wake_relay.clone(),
            relay_intake,
            relay_stopped,
        ));

        let streams = StreamHub::new(StreamLimits {
            per_payment: settings.limits.streams_per_payment,
            total: settings.limits.streams_total,
            max_age: Duration::from_secs(settings.limits.stream_max_secs),
        });
        tokio::spawn(crate::publishing::status_stream::dispatch(
            publishing.bus.subscribe(),
            streams.clone(),
        ));
        let state = AppState {
            ingest,
            payments: stores.payments.clone(),
            disputes: stores.disputes.clone(),
            refunds: stores.refunds.clone(),
            mirror: stores.mirror.clone(),
            plans: stores.plans.clone(),
            payment_requests,
            subscriptions,
            clock_control: settings.admin.time_travel.then_some(adjustable),
            streams: streams.clone(),
            inbox: stores.inbox,
            outbox: stores.outbox,
            health: stores.health,
            max_body_bytes: settings.server.max_body_bytes,
            body_read_timeout: Duration::from_secs(settings.server.body_read_timeout_secs),
            admin_token: settings.admin.token.clone(),
            merchant_keys: merchant_keys(&settings),
            store_runtime: tokio::runtime::Handle::current(),
            wake_worker,
            wake_relay: wake_relay.clone(),
            metrics: crate::api::metrics::handle(),
            reconciler: checker,
            reconcile: stores.reconcile.clone(),
        };
        let state = web::Data::new(state);
        let (servers, port, internal_port) = match &settings.server.internal_bind {
            None => {
                let (server, port) = http_server(&settings, &settings.server.bind, Listener::Both, state)?;
                (vec![server], port, None)
            }
            Some(internal) => {
                let (public, port) = http_server(&settings, &settings.server.bind, Listener::Public, state.clone())?;
                let (internal, internal_port) = http_server(&settings, internal, Listener::Internal, state)?;
                tracing::info!(
                    port = internal_port,
                    "merchant API, admin API and /metrics on the internal listener only"
                );
                (vec![public, internal], port, Some(internal_port))
            }
        };
        Ok(Self {
            port,
            internal_port,
            servers,
            worker,
            relay,
            fan_out: publishing.follower,
            processor,
            refusal_summaries,
            retention,
            reconciler,
            stop,
            stop_relay,
            bus: publishing.bus,
            shutdown_timeout: Duration::from_secs(settings.server.shutdown_timeout_secs),
        })
    }

    /// The public listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The internal listener's port, when `server.internal_bind` is set.
    pub fn internal_port(&self) -> Option<u16> {
        self.internal_port
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
        let handles: Vec<ServerHandle> = self.servers.iter().map(Server::handle).collect();
        let signals = tokio::spawn(async move {
            let signal = stop_signal().await;
            tracing::info!(signal, "stopping: finishing in-flight requests");
            // Graceful: stop accepting, let in-flight requests finish within
            // server.shutdown_timeout_secs.
            futures_util::future::join_all(handles.iter().map(|handle| handle.stop(true))).await;
        });
        let served = futures_util::future::join_all(self.servers)
            .await
            .into_iter()
            .collect::<std::io::Result<Vec<()>>>()
            .map(|_| ());
        signals.abort();
        let _ = self.stop.send(true);
        let stopped = tokio::time::timeout(self.shutdown_timeout, async {
            let _ = self.worker.await;
            let _ = self.stop_relay.send(true);
            let _ = self.relay.await;
        })
        .await;
        let _ = self.stop_relay.send(true);
        let _ = self.refusal_summaries.await;
        let _ = self.retention.await;
        if let Some(reconciler) = self.reconciler {
            let _ = reconciler.await;
        }
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

/// Waits for SIGINT (Ctrl-C) or SIGTERM and names it.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = terminate.recv() => "SIGTERM",
            },
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops payhook");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}

/// Connects every provider the configuration enables.
/// What fills the Stripe mirror from Stripe's API, when Stripe has an `api_key`: at
/// the reconciler's call rate.
pub fn mirror_filler(
    settings: &Settings,
    stores: &Stores,
    providers: &Providers,
    clock: Arc<dyn Clock>,
) -> Option<crate::processing::mirror_fill::MirrorFiller> {
    let api = providers.get(payhook_domain::Provider::Stripe)?.objects.clone()?;
    Some(crate::processing::mirror_fill::MirrorFiller::new(
        api,
        stores.mirror.clone(),
        clock,
        NonZeroU32::new(settings.reconcile.max_calls_per_second).unwrap_or(NonZeroU32::MIN),
    ))
}

pub fn connect_providers(settings: &Settings) -> Result<Providers, ProviderError> {
    let options = ConnectOptions {
        api_timeout: GATEWAY_TIMEOUT,
    };
    Providers::connect(&settings.providers, &options)
}

/// One TLS crypto provider for the whole process, ring (it builds without cmake): every
/// HTTPS client payhook builds (reqwest is compiled without a provider) uses it. An
/// embedding program that installed its own keeps it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn retry_policy(settings: &Settings) -> RetryPolicy {
    let w = &settings.worker;
    RetryPolicy {
        max_attempts: w.max_attempts,
        backoff_base: Duration::from_millis(w.backoff_base_ms),
        backoff_max: Duration::from_millis(w.backoff_max_ms),
    }
}

/// The publishing stage before it runs: the in-process bus, the relay and its
/// subscribers, and the task following other instances' domain events.
struct Publishing {
    bus: EventBus,
    relay: Arc<OutboxRelay>,
    follower: Option<JoinHandle<()>>,
}

impl Publishing {
    async fn start(
        settings: &Settings,
        stores: &Stores,
        clock: Arc<dyn Clock>,
        retry: RetryPolicy,
    ) -> Result<Self, StartupError> {
        let bus = EventBus::new();
        // With a fan-out, the relay announces to every instance, and this instance's
        // bus hears it like the others do (from `instances::follow`), once.
        let (local, follower): (Arc<dyn EventPublisher>, _) = match &stores.fan_out {
            Some(fan_out) => {
                let listener = fan_out.listen().await?;
                let follower = tokio::spawn(crate::publishing::instances::follow(
                    fan_out.clone(),
                    listener,
                    Arc::new(bus.clone()),
                ));
                (fan_out.clone(), Some(follower))
            }
            None => (Arc::new(bus.clone()), None),
        };
        let mut subscribers: Vec<Arc<dyn EventPublisher>> = vec![local];
        if let (Some(url), Some(secret)) = (&settings.notify.url, &settings.notify.secret) {
            subscribers.push(Arc::new(OutgoingWebhook::new(url, secret, NOTIFY_TIMEOUT)?));
        }
        let relay = Arc::new(OutboxRelay::new(
            stores.outbox.clone(),
            subscribers,
            clock,
            retry,
            settings.outbox.batch_size,
            Duration::from_secs(settings.outbox.lease_secs),
        ));
        Ok(Self { bus, relay, follower })
    }
}

/// The receiving stage: the ingest service over every enabled provider's webhooks,
/// storing accepted events through group commit and handing them to the worker.
fn receiving(
    settings: &Settings,
    stores: &Stores,
    providers: &Providers,
    clock: Arc<dyn Clock>,
    to_worker: handoff::Handoff<ClaimedEvent>,
    wake_worker: Arc<Notify>,
    rejection_limit: Arc<RejectionLimit>,
) -> IngestService {
    let fallback = settings
        .fallback_log
        .enabled
        .then(|| FallbackLog::new(settings.fallback_log.dir.clone(), settings.fallback_log.name.clone()));
    let store_timeout = settings.statement_timeout();
    IngestService::new(
        providers.units().map(|unit| unit.webhooks.clone()).collect(),
        crate::startup::providers::redaction(),
        ForensicRecords {
            log: stores.forensic.clone(),
            fallback,
        },
        GroupCommit::start(stores.inbox.clone(), to_worker, wake_worker, store_timeout),
        stores.payments.clone(),
        clock,
        IngestLimits {
            store_timeout,
            rejection_limit,
        },
    )
}

/// `POST /payments` over every enabled provider that has a payment API.
fn payment_requests(stores: &Stores, providers: &Providers, clock: Arc<dyn Clock>) -> PaymentRequests {
    let gateways = providers
        .units()
        .filter_map(|unit| Some((unit.payments.clone()?, unit.webhooks.authentication())))
        .collect();
    PaymentRequests::new(stores.payments.clone(), gateways, clock)
}

/// The reconciler over the stores and every provider with a payment API.
pub fn reconciler(
    settings: &Settings,
    stores: &Stores,
    providers: &Providers,
    clock: Arc<dyn Clock>,
    wake_worker: Arc<Notify>,
) -> Reconciler {
    Reconciler::new(
        stores.reconcile.clone(),
        stores.inbox.clone(),
        stores.payments.clone(),
        providers
            .units()
            .filter_map(|unit| Some((unit.provider, unit.payments.clone()?)))
            .collect(),
        NonZeroU32::new(settings.reconcile.max_calls_per_second).unwrap_or(NonZeroU32::MIN),
        settings.reconcile.schedule(),
        clock,
        wake_worker,
    )
    .refunding_in(stores.refunds.clone())
}

/// The merchant keys, and a start-up line when there are none.
fn merchant_keys(settings: &Settings) -> MerchantKeys {
    let keys = MerchantKeys::new(&settings.api.keys);
    if keys.is_empty() {
        tracing::warn!("no api.keys configured: the merchant API (POST /payments, GET /payments/{{id}}) answers 404 merchant_api_disabled");
    }
    keys
}

/// An HTTP server on `addr` serving `listener`'s routes, and the port it got.
/// Clients must send their headers within `server.header_read_timeout_secs` (actix
/// answers 408 and closes); bodies are timed by the handlers that read them.
fn http_server(
    settings: &Settings,
    addr: &str,
    listener: Listener,
    state: web::Data<AppState>,
) -> Result<(Server, u16), StartupError> {
    let bind_error = |source| StartupError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let socket = TcpListener::bind(addr).map_err(bind_error)?;
    let port = socket.local_addr().map_err(bind_error)?.port();
    let routes = listener.routes();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(TracingLogger::<telemetry::RequestSpan>::new())
            .app_data(state.clone())
            .configure(routes.clone())
    })
    .client_request_timeout(Duration::from_secs(settings.server.header_read_timeout_secs))
    // actix-web stops gracefully on SIGTERM but forcibly on SIGINT (Ctrl-C);
    // `run_until_stopped` handles both signals itself, gracefully.
    .disable_signals()
    .listen(socket)
    .map_err(bind_error)?
    .shutdown_timeout(settings.server.shutdown_timeout_secs)
    .run();
    Ok((server, port))
}

/// What a previous run left: events leased by workers that died are due again, and
/// domain events committed but never delivered are delivered (within a time budget;
/// the relay goes on with the rest while serving).
async fn recover_previous_run(stores: &Stores, relay: &OutboxRelay, clock: &dyn Clock) {
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
