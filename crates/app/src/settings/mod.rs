//! Typed configuration, loaded in layers: `config/default.toml` (compiled in), then
//! the file named by `--config`/`PAYHOOK_CONFIG`, then `PAYHOOK__SECTION__KEY`
//! environment variables. Every key must be one a settings type reads ([`keys`]), and
//! validation turns unsafe combinations into start-up errors.

pub mod keys;

use crate::startup::providers::ProviderError;
use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

const DEFAULTS: &str = include_str!("../../../../config/default.toml");

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot load configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub worker: WorkerSettings,
    pub outbox: OutboxSettings,
    pub fallback_log: FallbackLogSettings,
    pub admin: AdminSettings,
    pub notify: NotifySettings,
    pub api: ApiSettings,
    pub limits: LimitsSettings,
    pub retention: RetentionSettings,
    pub reconcile: ReconcileSettings,
    pub subscriptions: SubscriptionSettings,
    #[serde(default)]
    pub providers: ProviderTables,
}

/// The schedule payhook runs for subscriptions on providers without their own
/// (Xendit, QPay, JunglePay).
#[derive(Debug, Clone, Deserialize)]
pub struct SubscriptionSettings {
    /// How long before a period ends its renewal payment is asked for.
    pub renew_before_hours: u64,
    /// How long a subscription whose renewal is unpaid keeps access (`past_due`).
    pub grace_hours: u64,
}

impl SubscriptionSettings {
    pub fn schedule(&self, reconcile: &ReconcileSettings) -> crate::processing::subscribing::Schedule {
        let hours = |h: u64| chrono::Duration::hours(i64::try_from(h).unwrap_or(1_000_000));
        crate::processing::subscribing::Schedule {
            renew_before: hours(self.renew_before_hours),
            grace: hours(self.grace_hours),
            pending_recheck: chrono::Duration::seconds(
                i64::try_from(reconcile.pending_after_secs).unwrap_or(i64::MAX / 1000),
            ),
            give_up: hours(reconcile.give_up_after_hours),
        }
    }
}

/// Asking providers about payments whose outcome has not been heard of.
#[derive(Debug, Clone, Deserialize)]
pub struct ReconcileSettings {
    pub enabled: bool,
    /// Time between two rounds of due checks (one also runs at start-up).
    pub interval_secs: u64,
    /// From a payment's creation to its first check; later waits are three times the last.
    pub pending_after_secs: u64,
    /// No check is made later than this after creation.
    pub give_up_after_hours: u64,
    /// Calls to each provider's API per second, at most.
    pub max_calls_per_second: u32,
}

impl ReconcileSettings {
    pub fn schedule(&self) -> payhook_domain::ReconcileSchedule {
        payhook_domain::ReconcileSchedule {
            pending_after: chrono::Duration::seconds(i64::try_from(self.pending_after_secs).unwrap_or(i64::MAX / 1000)),
            factor: payhook_domain::ReconcileSchedule::FACTOR,
            give_up_after: chrono::Duration::hours(i64::try_from(self.give_up_after_hours).unwrap_or(1_000_000)),
        }
    }
}

/// How long records are kept, in days (0: for ever), and how often old ones are purged.
#[derive(Debug, Clone, Deserialize)]
pub struct RetentionSettings {
    /// `webhook_logs`: every inbound request with its raw body (personal data).
    pub forensic_days: u32,
    /// `webhook_events` that are processed or ignored (pending and dead ones are kept).
    pub inbox_days: u32,
    /// Delivered `outbox` messages (dead and undelivered ones are kept).
    pub outbox_days: u32,
    /// Time between two purges of what has grown old since (one also runs at start-up).
    pub interval_secs: u64,
}

impl RetentionSettings {
    pub fn policy(&self) -> payhook_domain::RetentionPolicy {
        payhook_domain::RetentionPolicy {
            forensic_days: self.forensic_days,
            inbox_days: self.inbox_days,
            outbox_days: self.outbox_days,
        }
    }
}

/// The merchant API's credentials.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiSettings {
    /// Bearer keys of the merchant API, any of which is accepted (list the old and
    /// the new one while rotating). None: the merchant API answers 404.
    #[serde(default, deserialize_with = "payhook_domain::connector::config::secrets_or_none")]
    pub keys: Vec<SecretString>,
}

/// What one client may hold.
#[derive(Debug, Clone, Deserialize)]
pub struct LimitsSettings {
    /// Webhook requests failing authentication one address may make per minute
    /// before the rest get 429 (authenticated requests are never limited).
    pub rejected_per_ip_per_minute: u32,
    pub streams_per_payment: usize,
    pub streams_total: usize,
    /// A status stream is closed after this long; the browser reconnects.
    pub stream_max_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutboxSettings {
    /// How often undelivered domain events are looked for, besides right after a commit.
    pub sweep_interval_ms: u64,
    pub batch_size: u32,
    pub lease_secs: u64,
}

/// Where forensic records go when the store refuses them.
#[derive(Debug, Clone, Deserialize)]
pub struct FallbackLogSettings {
    pub enabled: bool,
    pub dir: std::path::PathBuf,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AdminSettings {
    /// Bearer token of the admin API; without one the admin API does not exist (404).
    pub token: Option<SecretString>,
    /// Lets `POST /admin/clock` move payhook's clock forward (demos and tests of
    /// renewals); never in production.
    #[serde(default)]
    pub time_travel: bool,
}

/// The optional outgoing webhook: every domain event POSTed to the merchant.
#[derive(Debug, Clone, Deserialize)]
pub struct NotifySettings {
    pub url: Option<String>,
    /// Standard Webhooks signing secret (`whsec_` + base64).
    pub secret: Option<SecretString>,
    /// Delivery attempts of one domain event before it is dead.
    pub max_attempts: i32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    /// The public listener: webhooks, the browser's status routes, the probes.
    pub bind: String,
    /// When set, the merchant API, the admin API and `/metrics` are served only
    /// here (and not on `bind`).
    pub internal_bind: Option<String>,
    pub max_body_bytes: usize,
    /// A client must send a request's headers within this (else 408).
    pub header_read_timeout_secs: u64,
    /// A client must send a request's body within this once its headers are in (else 408).
    pub body_read_timeout_secs: u64,
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// May carry a password, so it is a secret.
    pub url: SecretString,
    /// Unset: chosen for the store, see [`Settings::pool_size`].
    pub pool_size: Option<usize>,
    pub auto_migrate: Option<bool>,
    /// The longest a statement or a wait for a pooled connection may take; then
    /// the request it serves answers 503.
    pub statement_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    pub concurrency: usize,
    /// Unset: chosen for the store, see [`Settings::worker_batch_size`].
    pub batch_size: Option<u32>,
    pub poll_interval_ms: u64,
    pub lease_secs: u64,
    pub max_attempts: i32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

/// The `[providers.<name>]` tables as configured. Each enabled one is read by its
/// provider crate's own configuration type (`crate::startup::providers`), which says what is
/// required. `Debug` shows only which are enabled: the tables hold secrets.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct ProviderTables(BTreeMap<String, config::Value>);

impl ProviderTables {
    /// The tables of the enabled providers, by name, without their `enabled` key.
    pub fn enabled(&self) -> Result<Vec<(String, config::Value)>, ProviderError> {
        let mut enabled = Vec::new();
        for (name, table) in &self.0 {
            let mut table = table
                .clone()
                .into_table()
                .map_err(|e| ProviderError::Config(format!("providers.{name} must be a table: {e}")))?;
            let on = match table.remove("enabled") {
                Some(flag) => flag
                    .into_bool()
                    .map_err(|e| ProviderError::Config(format!("providers.{name}.enabled: {e}")))?,
                None => false,
            };
            if on {
                enabled.push((name.clone(), config::Value::new(None, config::ValueKind::Table(table))));
            }
        }
        Ok(enabled)
    }

    /// The table of one provider, enabled or not, without its `enabled` key (empty
    /// when not configured at all).
    pub fn table(&self, name: &str) -> config::Value {
        let mut table = self
            .0
            .get(name)
            .and_then(|t| t.clone().into_table().ok())
            .unwrap_or_default();
        table.remove("enabled");
        config::Value::new(None, config::ValueKind::Table(table))
    }

    /// Whether the provider of that name is enabled (an unreadable flag is not).
    /// The names of the enabled providers, in order.
    pub fn enabled_names(&self) -> Vec<String> {
        self.enabled()
            .map(|tables| tables.into_iter().map(|(name, _)| name).collect())
            .unwrap_or_default()
    }

    pub fn is_enabled(&self, name: &str) -> bool {
        self.enabled().is_ok_and(|tables| tables.iter().any(|(n, _)| n == name))
    }
}

impl std::fmt::Debug for ProviderTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.keys().map(String::as_str).collect();
        f.debug_struct("ProviderTables")
            .field("configured", &names)
            .finish_non_exhaustive()
    }
}

/// Which store `database.url` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Postgres,
    Sqlite,
}

impl Settings {
    /// Loads and validates the layered configuration. `file` is the optional
    /// operator file; `env` supplies the `PAYHOOK__…` variables (the process
    /// environment in production, a fixed map in tests).
    pub fn load(file: Option<&Path>, env: Option<config::Map<String, String>>) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).required(true));
        }
        let environment = Environment::with_prefix("PAYHOOK")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(env);
        let merged = builder.add_source(environment).build()?;
        keys::check_known(&merged.cache.clone().into_table()?)?;
        let settings: Settings = merged.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |m: String| Err(SettingsError::Invalid(m));
        crate::startup::providers::check_tables(&self.providers).map_err(|e| SettingsError::Invalid(e.to_string()))?;
        if self.server.max_body_bytes == 0 {
            return invalid("server.max_body_bytes must be positive".into());
        }
        if self.server.header_read_timeout_secs == 0 || self.server.body_read_timeout_secs == 0 {
            return invalid(
                "server.header_read_timeout_secs and server.body_read_timeout_secs must be positive".into(),
            );
        }
        if self.database.statement_timeout_ms == 0 {
            return invalid("database.statement_timeout_ms must be positive".into());
        }
        if self.api.keys.iter().any(|k| k.expose_secret().len() < 16) {
            return invalid("every api.keys entry must be at least 16 characters".into());
        }
        if self.limits.streams_per_payment == 0 || self.limits.streams_total == 0 || self.limits.stream_max_secs == 0 {
            return invalid(
                "limits.streams_per_payment, limits.streams_total and limits.stream_max_secs must be positive".into(),
            );
        }
        if self.subscriptions.renew_before_hours > 24 * 366 || self.subscriptions.grace_hours > 24 * 366 {
            return invalid(
                "subscriptions.renew_before_hours and subscriptions.grace_hours must be at most a year".into(),
            );
        }
        if self.reconcile.interval_secs == 0 || self.reconcile.max_calls_per_second == 0 {
            return invalid("reconcile.interval_secs and reconcile.max_calls_per_second must be positive".into());
        }
        if self.reconcile.pending_after_secs > 10 * 365 * 86_400 || self.reconcile.give_up_after_hours > 10 * 365 * 24 {
            return invalid(
                "reconcile.pending_after_secs and reconcile.give_up_after_hours must be under ten years".into(),
            );
        }
        if self.limits.rejected_per_ip_per_minute == 0 {
            return invalid("limits.rejected_per_ip_per_minute must be positive".into());
        }
        if self.database.pool_size == Some(0) {
            return invalid("database.pool_size must be at least 1".into());
        }
        if self.worker.max_attempts < 1 || self.worker.concurrency == 0 || self.worker.batch_size == Some(0) {
            return invalid("worker.max_attempts, worker.concurrency and worker.batch_size must be at least 1".into());
        }
        if self.worker.backoff_base_ms == 0 || self.worker.backoff_max_ms < self.worker.backoff_base_ms {
            return invalid("worker.backoff_base_ms must be positive and at most worker.backoff_max_ms".into());
        }
        if self.notify.max_attempts < 1 {
            return invalid("notify.max_attempts must be at least 1".into());
        }
        if self.admin.token.as_ref().is_some_and(|t| t.expose_secret().len() < 16) {
            return invalid("admin.token must be at least 16 characters (it guards replay of payments)".into());
        }
        match (&self.notify.url, &self.notify.secret) {
            (Some(_), None) => {
                return invalid(
                    "notify.url is set but notify.secret is not: outgoing webhooks are always signed".into(),
                )
            }
            (Some(url), Some(_)) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                return invalid(format!("notify.url must be an http(s) URL, got {url:?}"));
            }
            _ => {}
        }
        if self.fallback_log.enabled && self.fallback_log.name.trim().is_empty() {
            return invalid("fallback_log.name must not be empty".into());
        }
        self.store_kind().map(|_| ())
    }

    /// `database.statement_timeout_ms` as a duration.
    pub fn statement_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.database.statement_timeout_ms)
    }

    pub fn store_kind(&self) -> Result<StoreKind, SettingsError> {
        let url = self.database.url.expose_secret();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StoreKind::Postgres)
        } else if url.starts_with("sqlite://") {
            Ok(StoreKind::Sqlite)
        } else {
            Err(SettingsError::Invalid(
                "database.url must start with postgres://, postgresql:// or sqlite://".into(),
            ))
        }
    }

    /// Where the store is, for logs and errors: `postgres host:port/database` or
    /// `sqlite path`, never the user or password.
    pub fn store_location(&self) -> String {
        let url = self.database.url.expose_secret();
        match self.store_kind() {
            Ok(StoreKind::Sqlite) => format!("sqlite {}", url.trim_start_matches("sqlite://")),
            Ok(StoreKind::Postgres) => {
                let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
                let rest = rest.split('?').next().unwrap_or(rest);
                // The credentials end at the last '@' before the path.
                let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
                let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
                let host = if host.is_empty() { "localhost" } else { host };
                let host = if host.contains(':') && !host.ends_with(']') {
                    host.to_owned()
                } else {
                    format!("{host}:5432")
                };
                format!("postgres {host}/{path}")
            }
            Err(_) => "an unknown store".to_owned(),
        }
    }

    /// Events the worker claims per poll. Default: 512 on Postgres, where applying
    /// many under one commit is what keeps the worker up with ingest; 256 on SQLite,
    /// where a batch's transaction holds the database's only write lock and webhooks
    /// queue behind it.
    pub fn worker_batch_size(&self) -> Result<u32, SettingsError> {
        Ok(match (self.worker.batch_size, self.store_kind()?) {
            (Some(size), _) => size,
            (None, StoreKind::Postgres) => 512,
            (None, StoreKind::Sqlite) => 256,
        })
    }

    /// Connections to the store. Default: 10 on Postgres; 1 on SQLite, which takes
    /// one writer at a time: with more connections, waiting writers sleep in SQLite's
    /// busy handler (up to 100 ms a step) instead of queuing, and under load that put
    /// 0.7 to 1.6 s on the slowest webhook acknowledgements. With one, the pool is a
    /// first-come-first-served queue, and SQLite's reads are in-process microseconds.
    pub fn pool_size(&self) -> Result<usize, SettingsError> {
        Ok(match (self.database.pool_size, self.store_kind()?) {
            (Some(size), _) => size,
            (None, StoreKind::Postgres) => 10,
            (None, StoreKind::Sqlite) => 1,
        })
    }

    /// Whether `payhook serve` applies migrations first. Default: on for the embedded
    /// store (zero setup), off for Postgres, where `payhook migrate` is a deploy step.
    pub fn auto_migrate(&self) -> Result<bool, SettingsError> {
        Ok(self
            .database
            .auto_migrate
            .unwrap_or(self.store_kind()? == StoreKind::Sqlite))
    }
}

#[cfg(test)]
mod tests;
