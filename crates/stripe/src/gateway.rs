//! Payments through the Stripe SDK (async-stripe, pinned), behind our
//! `PaymentGateway` port so an SDK bump touches this file (and `checkout_session.rs`)
//! only: a PaymentIntent per payment, whose `client_secret` the merchant's page
//! confirms with Stripe.js, or a Checkout Session, Stripe's hosted page.

use crate::checkout_session;
use crate::events::{PAYMENT_ID_METADATA_KEY, REFUND_ID_METADATA_KEY};
use async_trait::async_trait;
use payhook_domain::ports::PaymentGateway;
use payhook_domain::{
    Checkout, CheckoutRequest, ClientSecret, Currency, GatewayError, PaymentId, PaymentStatus, Provider,
    ProviderPaymentStatus, ProviderRefund, RefundLookup, RefundReport, RefundRequest, RefundStatus,
};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::time::Duration;
use stripe::StripeRequest;
use stripe_core::payment_intent::{
    CancelPaymentIntent, CreatePaymentIntent, RetrievePaymentIntent, SearchPaymentIntent,
};
use stripe_core::refund::{CreateRefund, CreateRefundReason, RetrieveRefund};
use stripe_core::PaymentIntentStatus;

pub const DEFAULT_API_BASE_URL: &str = "https://api.stripe.com";

/// How a customer pays a Stripe payment payhook creates (`providers.stripe.checkout`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CheckoutMode {
    /// A PaymentIntent; the 201 carries its `client_secret` for Stripe.js.
    #[default]
    PaymentIntent,
    /// A Checkout Session; the 201 carries its hosted page's URL. The URLs are where
    /// Stripe sends the customer after paying and after giving up, unless the request
    /// names its own.
    CheckoutSession {
        success_url: Option<String>,
        cancel_url: Option<String>,
    },
}

pub struct StripeGateway {
    client: stripe::Client,
    mode: CheckoutMode,
}

impl StripeGateway {
    pub fn new(base_url: &str, api_key: &SecretString, timeout: Duration) -> Result<Self, GatewayError> {
        // One TLS crypto provider for the binary (ring); a no-op if one is installed.
        let _ = rustls_provider::install();
        let client = stripe::ClientBuilder::new(api_key.expose_secret())
            .url(base_url.trim_end_matches('/'))
            .timeout(timeout)
            .build()
            .map_err(classify)?;
        Ok(Self {
            client,
            mode: CheckoutMode::default(),
        })
    }

    /// Creates payments the way `mode` says.
    pub fn with_checkout(mut self, mode: CheckoutMode) -> Self {
        self.mode = mode;
        self
    }

    fn idempotency_key(request: &CheckoutRequest) -> Result<stripe::IdempotencyKey, GatewayError> {
        stripe::IdempotencyKey::new(request.payment_id.to_string()).map_err(|e| GatewayError::Invalid {
            field: "id",
            message: e.to_string(),
        })
    }
}

mod rustls_provider {
    /// The SDK's `rustls-ring` feature brings ring; make it the process default.
    pub fn install() -> bool {
        rustls::crypto::ring::default_provider().install_default().is_ok()
    }
}

/// Stripe's 4xx are refusals (bad request, declined card, wrong key); everything else
/// (5xx, unreadable answers, network, timeouts) is an outage worth retrying.
fn classify(error: stripe::StripeError) -> GatewayError {
    match error {
        stripe::StripeError::Stripe(api, status) if (400..500).contains(&status) => GatewayError::Rejected {
            provider: Provider::Stripe,
            status,
            message: format!("{status}: {}", api.message.as_deref().unwrap_or("no message")),
        },
        stripe::StripeError::Stripe(api, status) => GatewayError::Unavailable {
            provider: Provider::Stripe,
            message: format!("{status}: {}", api.message.as_deref().unwrap_or("no message")),
        },
        other => GatewayError::Unavailable {
            provider: Provider::Stripe,
            message: other.to_string(),
        },
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    fn provider(&self) -> Provider {
        Provider::Stripe
    }

    fn check(&self, request: &CheckoutRequest) -> Result<(), GatewayError> {
        match &self.mode {
            CheckoutMode::CheckoutSession { success_url, .. }
                if request.success_url.is_none() && success_url.is_none() =>
            {
                Err(checkout_session::no_success_url())
            }
            _ => Ok(()),
        }
    }

    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<Checkout, GatewayError> {
        let currency: stripe_types::Currency = request
            .amount
            .currency()
            .code()
            .to_ascii_lowercase()
            .parse()
            .unwrap_or_else(|never| match never {});
        // Keyed on our payment id: a retried creation returns the same object.
        let key = Self::idempotency_key(request)?;
        if let CheckoutMode::CheckoutSession {
            success_url,
            cancel_url,
        } = &self.mode
        {
            let success_url = request
                .success_url
                .as_deref()
                .or(success_url.as_deref())
                .ok_or_else(checkout_session::no_success_url)?;
            let cancel_url = request.cancel_url.as_deref().or(cancel_url.as_deref());
            let session = checkout_session::create(request, currency, success_url, cancel_url)
                .build()
                .customize::<checkout_session::Session>()
                .request_strategy(stripe::RequestStrategy::Idempotent(key))
                .send(&self.client)
                .await
                .map_err(classify)?;
            return Ok(session.checkout());
        }
        // Webhooks find the payment by this metadata first (see events.rs).
        let metadata = HashMap::from([(PAYMENT_ID_METADATA_KEY.to_owned(), request.payment_id.to_string())]);
        let mut create = CreatePaymentIntent::new(request.amount.amount_minor(), currency).metadata(metadata);
        if let Some(description) = request.description.clone().or_else(|| request.merchant_ref.clone()) {
            create = create.description(description);
        }
        if let Some(email) = &request.customer_email {
            create = create.receipt_email(email.clone());
        }
        let intent = create
            .customize()
            .request_strategy(stripe::RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(checkout(&intent))
    }

    async fn fetch_status(&self, provider_ref: &str) -> Result<ProviderPaymentStatus, GatewayError> {
        if provider_ref.starts_with(checkout_session::SESSION_PREFIX) {
            let session = checkout_session::retrieve(&self.client, provider_ref)
                .await
                .map_err(classify)?;
            return Ok(session.status());
        }
        let intent = RetrievePaymentIntent::new(provider_ref)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(status_of(&intent))
    }

    /// `POST /v1/payment_intents/{id}/cancel`: Stripe refuses (400) a PaymentIntent
    /// that succeeded or is processing.
    async fn cancel(&self, provider_ref: &str) -> Result<ProviderPaymentStatus, GatewayError> {
        if provider_ref.starts_with(checkout_session::SESSION_PREFIX) {
            // Expiring the page is what cancels a Checkout Session payment.
            let session = checkout_session::expire(&self.client, provider_ref)
                .await
                .map_err(classify)?;
            let found = session.status();
            return Ok(match found.status {
                PaymentStatus::Expired => ProviderPaymentStatus::new(PaymentStatus::Canceled, None),
                _ => found,
            });
        }
        let intent = CancelPaymentIntent::new(provider_ref)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(status_of(&intent))
    }

    /// `POST /v1/refunds` (Create a refund) for the PaymentIntent (a Checkout Session's,
    /// read from the session), with payhook's ids in its metadata and `Idempotency-Key`
    /// = the refund's id. Stripe's reasons are `duplicate`, `fraudulent` and
    /// `requested_by_customer`; any other reason goes in `metadata.reason`.
    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, GatewayError> {
        let payment_intent = if request.payment_ref.starts_with(checkout_session::SESSION_PREFIX) {
            checkout_session::retrieve(&self.client, &request.payment_ref)
                .await
                .map_err(classify)?
                .payment_intent()
                .ok_or_else(|| GatewayError::Rejected {
                    provider: Provider::Stripe,
                    status: 400,
                    message: "the Checkout Session has no PaymentIntent: it was never paid".into(),
                })?
        } else {
            request.payment_ref.clone()
        };
        let mut metadata = HashMap::from([
            (REFUND_ID_METADATA_KEY.to_owned(), request.refund_id.to_string()),
            (PAYMENT_ID_METADATA_KEY.to_owned(), request.payment_id.to_string()),
        ]);
        let mut create = CreateRefund::new()
            .payment_intent(payment_intent)
            .amount(request.amount.amount_minor());
        match request.reason.as_deref() {
            Some("duplicate") => create = create.reason(CreateRefundReason::Duplicate),
            Some("fraudulent") => create = create.reason(CreateRefundReason::Fraudulent),
            Some("requested_by_customer") => create = create.reason(CreateRefundReason::RequestedByCustomer),
            Some(other) => {
                metadata.insert("reason".to_owned(), other.to_owned());
            }
            None => {}
        }
        let key = stripe::IdempotencyKey::new(request.refund_id.to_string()).map_err(|e| GatewayError::Invalid {
            field: "id",
            message: e.to_string(),
        })?;
        let answer = create
            .metadata(metadata)
            .build()
            .customize::<RefundAnswer>()
            .request_strategy(stripe::RequestStrategy::Idempotent(key))
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(answer.into())
    }

    /// `GET /v1/refunds/{id}` (Retrieve a refund): where one of payhook's refunds
    /// stands, when its `refund.updated` webhook never came.
    async fn fetch_refund(&self, lookup: &RefundLookup) -> Result<RefundReport, GatewayError> {
        let answer = RetrieveRefund::new(lookup.refund_ref.as_str())
            .build()
            .customize::<RefundAnswer>()
            .send(&self.client)
            .await
            .map_err(classify)?;
        // Stripe answers the amount and currency it refunds; a refund answered
        // without them is the one asked for.
        let currency = match answer.currency.as_deref() {
            Some(code) => Currency::parse(code).map_err(|e| GatewayError::Unavailable {
                provider: Provider::Stripe,
                message: format!("unexpected refund currency: {e}"),
            })?,
            None => lookup.amount.currency(),
        };
        Ok(RefundReport::One {
            refund_id: Some(lookup.refund_id),
            amount: answer.amount.unwrap_or(lookup.amount.amount_minor()),
            currency,
            status: refund_status(answer.status.as_deref()),
            provider_ref: answer.id,
        })
    }

    /// Searches PaymentIntents by the `metadata.payhook_payment_id` every payhook
    /// PaymentIntent carries. Stripe's search index lags writes by up to a minute; the
    /// reconciler asks only about creations older than that.
    async fn find_checkout(&self, payment_id: PaymentId) -> Result<Option<Checkout>, GatewayError> {
        let query = format!("metadata['{PAYMENT_ID_METADATA_KEY}']:'{payment_id}'");
        let found = SearchPaymentIntent::new(query)
            .limit(1)
            .send(&self.client)
            .await
            .map_err(classify)?;
        Ok(found.data.first().map(checkout))
    }
}

/// What payhook reads of a Refund (a type of our own, like [`checkout_session`]'s, so
/// a field a newer API version adds or drops cannot fail the answer).
#[derive(miniserde::Deserialize)]
struct RefundAnswer {
    id: String,
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    status: Option<String>,
    failure_reason: Option<String>,
    amount: Option<i64>,
    /// Lower case, as Stripe writes currencies.
    currency: Option<String>,
}

impl From<RefundAnswer> for ProviderRefund {
    fn from(answer: RefundAnswer) -> Self {
        Self {
            provider_ref: answer.id,
            status: refund_status(answer.status.as_deref()),
            failure_reason: answer.failure_reason,
        }
    }
}

/// A Stripe refund status in payhook's terms.
pub fn refund_status(status: Option<&str>) -> RefundStatus {
    match status {
        Some("succeeded") => RefundStatus::Succeeded,
        Some("failed") => RefundStatus::Failed,
        Some("canceled") => RefundStatus::Canceled,
        _ => RefundStatus::Pending,
    }
}

/// Where a PaymentIntent stands, in payhook's terms.
fn status_of(intent: &stripe_core::PaymentIntent) -> ProviderPaymentStatus {
    let status = match intent.status {
        PaymentIntentStatus::Succeeded => PaymentStatus::Paid,
        PaymentIntentStatus::Canceled => PaymentStatus::Canceled,
        PaymentIntentStatus::RequiresAction => PaymentStatus::RequiresAction,
        PaymentIntentStatus::RequiresCapture => PaymentStatus::Authorized,
        _ => PaymentStatus::Pending,
    };
    let paid_amount = (status == PaymentStatus::Paid).then_some(intent.amount_received);
    ProviderPaymentStatus {
        // What a PaymentIntent received is what was captured: less is a partial
        // capture, still paid.
        captured: status == PaymentStatus::Paid,
        ..ProviderPaymentStatus::new(status, paid_amount)
    }
}

/// A PaymentIntent has no hosted page: the merchant's page confirms it with
/// Stripe.js, given its `client_secret`.
fn checkout(intent: &stripe_core::PaymentIntent) -> Checkout {
    Checkout {
        provider_ref: intent.id.to_string(),
        checkout_url: None,
        qr_text: None,
        expires_at: None,
        extras: serde_json::Value::Null,
        client_secret: intent.client_secret.clone().map(ClientSecret::new),
    }
}
