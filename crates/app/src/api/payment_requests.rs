//! Payment requests: `POST /payments` opens a payment row, asks its provider for a
//! checkout, and answers with how the customer pays.
//!
//! The row is written before the provider is asked, so a callback that races the
//! provider's answer finds its payment, and so an `Idempotency-Key` has one row to
//! point at. The provider call runs in its own task: a caller who hangs up does not
//! leave a payment half-created.

use chrono::{DateTime, Utc};
use payhook_domain::ports::{Clock, PaymentGateway, PaymentStore, StoreError};
use payhook_domain::source::Authentication;
use payhook_domain::{
    CallbackToken, CheckoutRequest, ClientSecret, Currency, GatewayError, Idempotency, Money, NewPayment, Opened,
    Payment, PaymentId, Provider, CREATION_INTERRUPTED,
};
use rand::RngCore;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a provider may take to answer one API call.
pub const GATEWAY_TIMEOUT: Duration = Duration::from_secs(30);
/// A creation still unanswered after this died with its process (the provider call
/// itself gives up after `GATEWAY_TIMEOUT`).
pub const ABANDONED_AFTER: Duration = Duration::from_secs(2 * GATEWAY_TIMEOUT.as_secs());

const MAX_TEXT: usize = 1000;
const MAX_REF: usize = 255;
const MAX_IDEMPOTENCY_KEY: usize = 255;
const MAX_URL: usize = 2048;

/// The fields `POST /payments` takes; any other is refused.
pub const ACCEPTED_FIELDS: [&str; 9] = [
    "provider",
    "amount",
    "currency",
    "merchant_ref",
    "customer_email",
    "description",
    "metadata",
    "success_url",
    "cancel_url",
];

/// A validated `POST /payments` body.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentRequest {
    pub provider: Provider,
    pub amount: Money,
    pub merchant_ref: Option<String>,
    pub customer_email: Option<String>,
    pub description: Option<String>,
    pub metadata: Value,
    /// Where a hosted payment page (Stripe Checkout, Xendit) sends the customer after
    /// paying, and after giving up.
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A field is missing, of the wrong type or out of range (422).
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    /// The body is not a JSON object (400).
    #[error("the body must be a JSON object: {0}")]
    Malformed(String),
    /// A provider payhook does not know (400).
    #[error("unknown provider {0:?}: payhook knows stripe, xendit, qpay and junglepay")]
    UnknownProvider(String),
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("{0} is not set up for creating payments here: enable it and set its API credentials")]
    ProviderDisabled(Provider),
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    #[error("this Idempotency-Key was first used with a different request")]
    KeyReused,
    #[error("the first request with this Idempotency-Key is still waiting for the provider; retry shortly")]
    InFlight,
    /// The provider did not create the payment; the payment row (when there is one)
    /// is marked failed with this reason.
    #[error("{reason}")]
    Provider {
        payment_id: Option<PaymentId>,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A created (or, for a repeated idempotency key, the first) payment.
#[derive(Debug)]
pub struct Created {
    pub payment: Payment,
    /// Authorizes the browser's status routes. Only its hash is stored, so only the
    /// first answer carries it; a replay carries `None` and leaves the first token
    /// valid. [`PaymentRequests::issue_client_token`] replaces a lost one, on purpose.
    pub client_token: Option<String>,
    /// What the customer's browser confirms a Stripe PaymentIntent with: in the first
    /// answer only, never stored.
    pub client_secret: Option<ClientSecret>,
    pub replayed: bool,
}

pub struct PaymentRequests {
    store: Arc<dyn PaymentStore>,
    /// Each provider's payment API, and how its callbacks are authenticated (a
    /// provider authenticated by per-payment tokens needs one for each payment).
    gateways: HashMap<Provider, (Arc<dyn PaymentGateway>, Authentication)>,
    clock: Arc<dyn Clock>,
    /// When set, each payment is created with its first check with the provider
    /// scheduled (reconciliation), in the same insert: a creation interrupted after it
    /// is still checked.
    checks: Option<payhook_domain::ReconcileSchedule>,
}

impl PaymentRequests {
    pub fn new(
        store: Arc<dyn PaymentStore>,
        gateways: Vec<(Arc<dyn PaymentGateway>, Authentication)>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            gateways: gateways.into_iter().map(|g| (g.0.provider(), g)).collect(),
            clock,
            checks: None,
        }
    }

    /// Schedules each new payment's first check with its provider by `schedule`.
    pub fn checked_by(mut self, schedule: payhook_domain::ReconcileSchedule) -> Self {
        self.checks = Some(schedule);
        self
    }

    /// Whether payments can be created with `provider` here.
    pub fn offers(&self, provider: Provider) -> bool {
        self.gateways.contains_key(&provider)
    }

    /// What [`PaymentRequests::create`] would refuse before asking the provider (a
    /// currency it does not take, say), without creating anything.
    pub fn check(&self, request: &PaymentRequest) -> Result<(), CreateError> {
        let (gateway, _) = self
            .gateways
            .get(&request.provider)
            .ok_or(CreateError::ProviderDisabled(request.provider))?;
        gateway
            .check(&CheckoutRequest {
                payment_id: PaymentId::from_uuid(uuid::Uuid::nil()),
                amount: request.amount,
                merchant_ref: request.merchant_ref.clone(),
                customer_email: request.customer_email.clone(),
                description: request.description.clone(),
                metadata: request.metadata.clone(),
                callback_token: None,
                success_url: request.success_url.clone(),
                cancel_url: request.cancel_url.clone(),
            })
            .map_err(|e| match e {
                GatewayError::Invalid { field, message } => RequestError::Invalid { field, message }.into(),
                other => CreateError::Provider {
                    payment_id: None,
                    reason: other.to_string(),
                },
            })
    }

    pub async fn create(&self, request: PaymentRequest, idempotency_key: Option<&str>) -> Result<Created, CreateError> {
        let (gateway, authentication) = self
            .gateways
            .get(&request.provider)
            .cloned()
            .ok_or(CreateError::ProviderDisabled(request.provider))?;
        let idempotency = idempotency_key
            .map(|key| {
                check_idempotency_key(key).map(|()| Idempotency {
                    key: key.to_owned(),
                    fingerprint: request.fingerprint(),
                })
            })
            .transpose()?;
        let id = PaymentId::from_uuid(uuid::Uuid::new_v4());
        let callback_token = (authentication == Authentication::PaymentToken).then(new_token);
        let checkout = CheckoutRequest {
            payment_id: id,
            amount: request.amount,
            merchant_ref: request.merchant_ref.clone(),
            customer_email: request.customer_email.clone(),
            description: request.description.clone(),
            metadata: request.metadata.clone(),
            callback_token: callback_token.clone().map(CallbackToken::new),
            success_url: request.success_url.clone(),
            cancel_url: request.cancel_url.clone(),
        };
        gateway.check(&checkout).map_err(|e| match e {
            GatewayError::Invalid { field, message } => RequestError::Invalid { field, message }.into(),
            other => CreateError::Provider {
                payment_id: None,
                reason: other.to_string(),
            },
        })?;
        let client_token = new_token();
        let created_at = self.clock.now();
        let new = NewPayment {
            account: String::new(),
            id,
            provider: request.provider,
            provider_ref: None,
            merchant_ref: request.merchant_ref,
            amount: request.amount,
            customer_email: request.customer_email,
            description: request.description,
            metadata: request.metadata,
            created_at,
            client_token_hash: Some(token_hash(&client_token)),
            callback_token_hash: callback_token.as_deref().map(token_hash),
            idempotency,
            next_reconcile_at: self.checks.and_then(|schedule| schedule.first_due(created_at)),
        };
        match self.store.open_payment(&new).await? {
            Opened::New(_) => {
                let (payment, client_secret) = self.ask_provider(gateway, checkout).await?;
                Ok(Created {
                    payment,
                    client_token: Some(client_token),
                    client_secret,
                    replayed: false,
                })
            }
            Opened::Existing { payment, fingerprint } => self.replay(payment, &fingerprint, &new).await,
        }
    }

    /// Asks the provider in a task of its own, so the answer is recorded even if the
    /// caller hangs up meanwhile.
    async fn ask_provider(
        &self,
        gateway: Arc<dyn PaymentGateway>,
        request: CheckoutRequest,
    ) -> Result<(Payment, Option<ClientSecret>), CreateError> {
        let store = self.store.clone();
        let clock = self.clock.clone();
        let task = tokio::spawn(async move {
            let id = request.payment_id;
            match gateway.create_checkout(&request).await {
                Ok(checkout) => Ok((store.record_checkout(id, &checkout).await?, checkout.client_secret)),
                Err(e) => {
                    let reason = e.to_string();
                    tracing::warn!(payment_id = %id, %reason, "provider did not create the payment");
                    store.record_creation_failure(id, &reason, clock.now()).await?;
                    Err(CreateError::Provider {
                        payment_id: Some(id),
                        reason,
                    })
                }
            }
        });
        task.await.map_err(|e| CreateError::Provider {
            payment_id: None,
            reason: format!("the provider call stopped unexpectedly: {e}"),
        })?
    }

    /// The answer to a repeated idempotency key: the first request's payment.
    async fn replay(&self, payment: Payment, fingerprint: &str, new: &NewPayment) -> Result<Created, CreateError> {
        let expected = new.idempotency.as_ref().map(|i| i.fingerprint.as_str());
        if expected != Some(fingerprint) {
            return Err(CreateError::KeyReused);
        }
        let now = self.clock.now();
        let payment = if payment.is_being_created() {
            if !abandoned(payment.created_at, now) {
                return Err(CreateError::InFlight);
            }
            let reason = format!("{CREATION_INTERRUPTED}: payhook stopped before the provider answered");
            self.store.record_creation_failure(payment.id, &reason, now).await?
        } else {
            payment
        };
        if let Some(reason) = payment.failure_reason {
            return Err(CreateError::Provider {
                payment_id: Some(payment.id),
                reason,
            });
        }
        // The first answer's token stays the payment's token: a replay may come from
        // whoever holds the key, and must not cut the customer's browser off.
        Ok(Created {
            payment,
            client_token: None,
            client_secret: None,
            replayed: true,
        })
    }

    /// A new client token for the payment, replacing the old one (whose holders
    /// lose access); `None` if there is no such payment.
    pub async fn issue_client_token(&self, id: PaymentId) -> Result<Option<String>, StoreError> {
        if self.store.token_hashes(id).await?.is_none() {
            return Ok(None);
        }
        let client_token = new_token();
        self.store.replace_client_token(id, &token_hash(&client_token)).await?;
        Ok(Some(client_token))
    }
}

/// Whether a creation opened at `created_at` can no longer be waiting for its
/// provider's answer in any live process.
pub fn abandoned(created_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    (now - created_at).to_std().is_ok_and(|age| age > ABANDONED_AFTER)
}

/// A random 128-bit token, hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the store keeps of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An `Idempotency-Key` payhook accepts: 1 to 255 visible ASCII characters.
pub(crate) fn check_idempotency_key(key: &str) -> Result<(), CreateError> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CreateError::InvalidIdempotencyKey(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(())
}

impl PaymentRequest {
    /// Validates a `POST /payments` body, naming the first field that is wrong.
    pub fn from_json(body: &[u8]) -> Result<Self, RequestError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| RequestError::Malformed(e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(RequestError::Malformed(
                "found a JSON value that is not an object".into(),
            ));
        };
        const KNOWN: [&str; 9] = ACCEPTED_FIELDS;
        if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(RequestError::Invalid {
                field: "body",
                message: format!("unknown field {unknown:?}; expected one of {}", KNOWN.join(", ")),
            });
        }
        let provider_name = required_text(&fields, "provider", MAX_REF)?;
        let provider: Provider = provider_name
            .parse()
            .map_err(|_| RequestError::UnknownProvider(provider_name.clone()))?;
        let amount = match fields.get("amount") {
            None | Some(Value::Null) => return Err(invalid("amount", "is required (an integer in minor units)")),
            Some(v) => v
                .as_i64()
                .filter(|a| *a > 0)
                .ok_or_else(|| invalid("amount", "must be a positive integer in minor units (1000 = 10.00 USD)"))?,
        };
        let currency_code = required_text(&fields, "currency", 3)?;
        let currency = Currency::parse(&currency_code)
            .ok()
            .filter(Currency::is_payable)
            .ok_or_else(|| {
                invalid(
                    "currency",
                    &format!("{currency_code:?} is not an ISO 4217 currency code (USD, IDR, MNT, …)"),
                )
            })?;
        let amount = Money::new(amount, currency).map_err(|e| invalid("amount", &e.to_string()))?;
        let customer_email = optional_text(&fields, "customer_email", 254)?;
        if let Some(email) = &customer_email {
            if !plausible_email(email) {
                return Err(invalid("customer_email", "must be an email address"));
            }
        }
        let metadata = match fields.get("metadata") {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::Object(m)) => Value::Object(m.clone()),
            Some(_) => return Err(invalid("metadata", "must be a JSON object")),
        };
        Ok(Self {
            provider,
            amount,
            merchant_ref: optional_text(&fields, "merchant_ref", MAX_REF)?,
            customer_email,
            description: optional_text(&fields, "description", MAX_TEXT)?,
            metadata,
            success_url: optional_url(&fields, "success_url")?,
            cancel_url: optional_url(&fields, "cancel_url")?,
        })
    }

    /// SHA-256 of the request in a canonical form (object keys sorted), so a repeat
    /// with the same content matches whatever order its keys came in.
    pub fn fingerprint(&self) -> String {
        let canonical = canonical(&json!({
            "provider": self.provider.as_str(),
            "amount": self.amount.amount_minor(),
            "currency": self.amount.currency().code(),
            "merchant_ref": self.merchant_ref,
            "customer_email": self.customer_email,
            "description": self.description,
            "metadata": self.metadata,
            "success_url": self.success_url,
            "cancel_url": self.cancel_url,
        }));
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// The value with every object's keys in sorted order, whether or not serde_json
/// keeps insertion order in this build.
pub(crate) fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), canonical(&map[k]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

fn invalid(field: &'static str, message: &str) -> RequestError {
    RequestError::Invalid {
        field,
        message: message.to_owned(),
    }
}

pub(crate) fn required_text(
    fields: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<String, RequestError> {
    optional_text(fields, field, max)?.ok_or_else(|| invalid(field, "is required"))
}

pub(crate) fn optional_text(
    fields: &Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<String>, RequestError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Err(invalid(field, "must not be empty")),
        Some(Value::String(s)) if s.chars().count() > max => {
            Err(invalid(field, &format!("must be at most {max} characters")))
        }
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(field, "must be a string")),
    }
}

/// An absolute http(s) URL of at most 2,048 characters, or nothing.
pub(crate) fn optional_url(fields: &Map<String, Value>, field: &'static str) -> Result<Option<String>, RequestError> {
    let url = optional_text(fields, field, MAX_URL)?;
    if let Some(url) = &url {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .unwrap_or_default();
        if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
            return Err(invalid(field, "must be an absolute http(s) URL"));
        }
    }
    Ok(url)
}

/// Not RFC 5322: one `@` with something on each side and a dot in the domain is
/// what catches the usual mistakes without refusing real addresses.
pub(crate) fn plausible_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

#[cfg(test)]
#[path = "payment_requests_tests.rs"]
mod tests;
