//! The store `database.url` names, opened (and migrated when configured to), as the
//! ports the services use.

use super::StartupError;
use crate::settings::{Settings, StoreKind};
use payhook_domain::ports::{
    DisputeStore, FanOut, ForensicLog, Outbox, PaymentStore, ReconcileQueue, RefundStore, Retention, StoreError,
    StoreHealth, WebhookInbox,
};
use payhook_postgres::{PgFanOut, PgStore};
use payhook_sqlite::SqliteStore;
use secrecy::ExposeSecret;
use std::sync::Arc;

/// Every store port, served by one store.
#[derive(Clone)]
pub struct Stores {
    pub forensic: Arc<dyn ForensicLog>,
    pub inbox: Arc<dyn WebhookInbox>,
    pub payments: Arc<dyn PaymentStore>,
    pub outbox: Arc<dyn Outbox>,
    pub health: Arc<dyn StoreHealth>,
    pub retention: Arc<dyn Retention>,
    pub reconcile: Arc<dyn ReconcileQueue>,
    pub disputes: Arc<dyn DisputeStore>,
    pub refunds: Arc<dyn RefundStore>,
    /// The Stripe mirror (`stripe_objects`).
    pub mirror: Arc<dyn payhook_domain::ports::StripeMirror>,
    /// Plans (`POST /plans`).
    pub plans: Arc<dyn payhook_domain::ports::PlanStore>,
    /// Subscriptions (`POST /subscriptions`, the scheduler).
    pub subscriptions: Arc<dyn payhook_domain::ports::SubscriptionStore>,
    /// Shares domain events with the other instances on the same store, where it can
    /// (Postgres); `None`: this instance's subscribers hear only its own relay.
    pub fan_out: Option<Arc<dyn FanOut>>,
}

impl Stores {
    /// Serves every port from one store (what both built-in stores do).
    pub fn from_one<S>(store: S) -> Self
    where
        S: ForensicLog
            + WebhookInbox
            + PaymentStore
            + Outbox
            + StoreHealth
            + Retention
            + ReconcileQueue
            + DisputeStore
            + RefundStore
            + payhook_domain::ports::StripeMirror
            + payhook_domain::ports::PlanStore
            + payhook_domain::ports::SubscriptionStore
            + 'static,
    {
        let store = Arc::new(store);
        Self {
            forensic: store.clone(),
            inbox: store.clone(),
            payments: store.clone(),
            outbox: store.clone(),
            health: store.clone(),
            retention: store.clone(),
            reconcile: store.clone(),
            disputes: store.clone(),
            refunds: store.clone(),
            mirror: store.clone(),
            plans: store.clone(),
            subscriptions: store,
            fan_out: None,
        }
    }

    /// Opens the store `database.url` names, migrating it first if configured to.
    /// Errors name the store's host, port and database (never its credentials).
    pub async fn open(settings: &Settings) -> Result<Self, StartupError> {
        let location = settings.store_location();
        let at = |source: StoreError| StartupError::Database {
            location: location.clone(),
            source,
        };
        let url = settings.database.url.expose_secret();
        let migrate = settings.auto_migrate()?;
        match settings.store_kind()? {
            StoreKind::Postgres => {
                if migrate {
                    PgStore::migrate(url).await.map_err(at)?;
                } else if PgStore::has_pending_migrations(url).await.map_err(at)? {
                    return Err(StartupError::PendingMigrations);
                }
                let store =
                    PgStore::connect_with(url, settings.pool_size()?, settings.statement_timeout()).map_err(at)?;
                let fan_out = PgFanOut::new(store.clone(), url);
                Ok(Self {
                    fan_out: Some(Arc::new(fan_out)),
                    ..Self::from_one(store)
                })
            }
            StoreKind::Sqlite => {
                if migrate {
                    SqliteStore::migrate(url).await.map_err(at)?;
                } else if SqliteStore::has_pending_migrations(url).await.map_err(at)? {
                    return Err(StartupError::PendingMigrations);
                }
                Ok(Self::from_one(
                    SqliteStore::connect_with(url, settings.pool_size()?, settings.statement_timeout()).map_err(at)?,
                ))
            }
        }
    }
}
