//! The one place payment providers are registered, and the set of enabled ones.
//!
//! Each provider crate implements `payhook_domain::Connector`: its configuration
//! type, the secret names its deliveries carry, and one constructor giving its
//! webhooks, payment API and simulator. Adding a provider is its crate and one line
//! in [`PROVIDERS`] (plus its `Provider` variant); everything else here treats every
//! provider the same way.

use crate::settings::ProviderTables;
use payhook_domain::connector::{ConnectOptions, Connector, ProviderUnit, SampleDelivery, SampleRequest};
use payhook_domain::source::WebhookSource;
use payhook_domain::{GatewayError, Provider, Redaction, SimulateError, Simulator};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every provider payhook can speak to.
pub const PROVIDERS: &[Registration] = &[
    Registration::of::<payhook_stripe::Stripe>(),
    Registration::of::<payhook_xendit::Xendit>(),
    Registration::of::<payhook_qpay::QPay>(),
    Registration::of::<payhook_junglepay::JunglePay>(),
];

/// One provider, as the application knows it before reading any configuration.
pub struct Registration {
    pub provider: Provider,
    secret_headers: &'static [&'static str],
    secret_query_params: &'static [&'static str],
    connect: fn(config::Value, &ConnectOptions) -> Result<ProviderUnit, ProviderError>,
    check: fn(config::Value) -> Result<(), ProviderError>,
    config_keys: fn() -> &'static [&'static str],
}

impl Registration {
    pub const fn of<C: Connector>() -> Self {
        Self {
            provider: C::PROVIDER,
            secret_headers: C::SECRET_HEADERS,
            secret_query_params: C::SECRET_QUERY_PARAMS,
            connect: connect::<C>,
            check: check::<C>,
            config_keys: crate::settings::keys::fields_of::<C::Config>,
        }
    }

    /// The keys of its `[providers.<name>]` table (besides `enabled`).
    pub fn config_keys(&self) -> &'static [&'static str] {
        (self.config_keys)()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider's configuration is incomplete or wrong; the message names the key.
    #[error("{0}")]
    Config(String),
    #[error("cannot set up {provider}'s API client: {source}")]
    Gateway { provider: Provider, source: GatewayError },
}

fn config_of<C: Connector>(table: config::Value) -> Result<C::Config, ProviderError> {
    let name = C::PROVIDER.as_str();
    serde_path_to_error::deserialize(table).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // A missing field is named in the message, at the path of the table (serde
        // says "missing field `x`", the config crate "missing configuration field \"x\"").
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|r| r.split_once('`'))
            .or_else(|| {
                inner
                    .strip_prefix("missing configuration field \"")
                    .and_then(|r| r.split_once('"'))
            });
        let message = match missing {
            Some((field, _)) => format!(
                "providers.{name}.{field} is required when providers.{name}.enabled is true: \
                 set it or disable {name}"
            ),
            None if path == "." || path.is_empty() => format!("providers.{name}: {inner}"),
            None => format!("providers.{name}.{path}: {inner}"),
        };
        ProviderError::Config(message)
    })
}

fn connect<C: Connector>(table: config::Value, options: &ConnectOptions) -> Result<ProviderUnit, ProviderError> {
    C::connect(config_of::<C>(table)?, options).map_err(|source| ProviderError::Gateway {
        provider: C::PROVIDER,
        source,
    })
}

fn check<C: Connector>(table: config::Value) -> Result<(), ProviderError> {
    config_of::<C>(table).map(|_| ())
}

fn registration(name: &str) -> Result<&'static Registration, ProviderError> {
    PROVIDERS.iter().find(|r| r.provider.as_str() == name).ok_or_else(|| {
        let known: Vec<&str> = PROVIDERS.iter().map(|r| r.provider.as_str()).collect();
        ProviderError::Config(format!(
            "providers.{name}: payhook knows no provider called {name:?} (known: {})",
            known.join(", ")
        ))
    })
}

/// Checks every enabled provider's configuration, so a missing secret stops
/// start-up with the key's name.
pub fn check_tables(tables: &ProviderTables) -> Result<(), ProviderError> {
    for (name, table) in tables.enabled()? {
        (registration(&name)?.check)(table)?;
    }
    Ok(())
}

/// What the forensic log redacts: the HTTP credentials, and every registered
/// provider's secret names, enabled or not (a request to a disabled provider's
/// endpoint may carry them too).
pub fn redaction() -> Redaction {
    PROVIDERS.iter().fold(Redaction::default(), |redaction, r| {
        redaction.with(r.secret_headers, r.secret_query_params)
    })
}

/// The keys a provider's configuration type reads (besides `enabled`), for tests and
/// docs that must list every key.
pub fn config_fields(provider: Provider) -> Vec<String> {
    registration(provider.as_str())
        .map(|r| r.config_keys().iter().map(|k| (*k).to_owned()).collect())
        .unwrap_or_default()
}

/// The enabled providers, each as its unit.
#[derive(Clone, Debug, Default)]
pub struct Providers {
    units: BTreeMap<Provider, ProviderUnit>,
}

impl Providers {
    /// Connects every provider the configuration enables.
    pub fn connect(tables: &ProviderTables, options: &ConnectOptions) -> Result<Self, ProviderError> {
        let mut units = BTreeMap::new();
        for (name, table) in tables.enabled()? {
            let unit = (registration(&name)?.connect)(table, options)?;
            units.insert(unit.provider, unit);
        }
        Ok(Self { units })
    }

    /// Connects one provider from its configuration, enabled or not: `payhook
    /// simulate` signs as the configured provider would.
    pub fn connect_one(
        tables: &ProviderTables,
        provider: Provider,
        options: &ConnectOptions,
    ) -> Result<ProviderUnit, ProviderError> {
        (registration(provider.as_str())?.connect)(tables.table(provider.as_str()), options)
    }

    pub fn get(&self, provider: Provider) -> Option<&ProviderUnit> {
        self.units.get(&provider)
    }

    pub fn units(&self) -> impl Iterator<Item = &ProviderUnit> {
        self.units.values()
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.units.keys().map(Provider::as_str).collect()
    }

    /// Serves `source` as its provider's webhooks, in place of the configured one
    /// (or as a webhook-only provider): for embedding code and tests.
    pub fn with_webhooks(mut self, source: Arc<dyn WebhookSource>) -> Self {
        let provider = source.provider();
        match self.units.get_mut(&provider) {
            Some(unit) => unit.webhooks = source,
            None => {
                self.units.insert(
                    provider,
                    ProviderUnit {
                        provider,
                        webhooks: source,
                        payments: None,
                        simulator: Arc::new(NoSamples),
                        objects: None,
                        subscriptions: None,
                    },
                );
            }
        }
        self
    }
}

/// The simulator of a provider added by [`Providers::with_webhooks`].
struct NoSamples;

impl Simulator for NoSamples {
    fn events(&self) -> &'static [&'static str] {
        &[]
    }

    fn sample(&self, request: &SampleRequest) -> Result<SampleDelivery, SimulateError> {
        Err(SimulateError::Missing(format!(
            "this provider was added without a simulator; cannot build {:?}",
            request.event
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_is_registered_once() {
        let mut registered: Vec<Provider> = PROVIDERS.iter().map(|r| r.provider).collect();
        registered.sort_by_key(|p| p.as_str());
        registered.dedup();
        assert_eq!(registered.len(), Provider::ALL.len());
    }

    #[test]
    fn the_configuration_keys_come_from_the_provider() {
        let stripe = config_fields(Provider::Stripe);
        assert!(
            stripe.contains(&"webhook_secrets".to_owned()) && stripe.contains(&"api_base_url".to_owned()),
            "{stripe:?}"
        );
        assert!(config_fields(Provider::Qpay).contains(&"callback_base_url".to_owned()));
    }

    #[test]
    fn a_missing_key_is_named_with_its_path() {
        let table = config::Value::new(None, config::ValueKind::Table(Default::default()));
        let err = check::<payhook_qpay::QPay>(table).unwrap_err().to_string();
        assert!(err.starts_with("providers.qpay.client_id is required"), "{err}");
    }

    #[test]
    fn the_redaction_covers_every_providers_secrets() {
        let r = redaction();
        assert_eq!(r.query("payment_id=1&token=abc"), "payment_id=1&token=[redacted]");
        let request = payhook_domain::WebhookRequest::new(
            "nobody",
            "POST",
            "/webhooks/nobody",
            "",
            [
                ("Stripe-Signature", "t=1,v1=aa"),
                ("x-callback-token", "tok"),
                ("accept", "*/*"),
            ]
            .map(|(n, v)| (n.to_owned(), v.to_owned())),
            Vec::new(),
            None,
            chrono::Utc::now(),
            &r,
        );
        let values: Vec<&str> = request.headers.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, ["[redacted]", "[redacted]", "*/*"]);
    }
}
