//! The QPay v2 merchant API: `POST /auth/token` (Basic auth) for a bearer token,
//! cached and refreshed before it expires, one refresh at a time; `POST /invoice`;
//! `POST /payment/check`. Amounts go out in whole tögrög.

use crate::expiry;
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use payhook_domain::ports::PaymentGateway;
use payhook_domain::{
    Checkout, CheckoutRequest, Currency, GatewayError, Money, PaymentId, PaymentStatus, Provider, ProviderPaymentStatus,
};
use payhook_provider_http::ProviderApi;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Number, Value};
use std::time::Duration;
use tokio::sync::Mutex;

/// A token is refreshed this long before QPay says it expires (or halfway through a
/// shorter life), so no request goes out with a token that dies on the way.
const REFRESH_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// How long payhook lets a QPay invoice be paid: QPay's simple invoice carries no due
/// date of its own.
const INVOICE_VALID_HOURS: i64 = 24;

/// What the merchant account is, from the QPay contract.
pub struct QPayCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
    pub invoice_code: String,
}

pub struct QPayClient {
    api: ProviderApi,
    base_url: String,
    basic: SecretString,
    invoice_code: String,
    callback_base_url: String,
    /// The cached access token. The lock is held across a refresh: callers that find
    /// the token expired queue behind the one refreshing and then reuse its token.
    token: Mutex<Option<AccessToken>>,
}

#[derive(Clone)]
struct AccessToken {
    bearer: SecretString,
    refresh_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: i64,
}

#[derive(Deserialize)]
struct InvoiceAnswer {
    invoice_id: String,
    qr_text: Option<String>,
    qr_image: Option<String>,
    #[serde(rename = "qPay_shortUrl")]
    short_url: Option<String>,
    #[serde(default)]
    urls: Vec<Value>,
}

#[derive(Deserialize)]
struct CheckAnswer {
    count: i64,
    paid_amount: Option<Number>,
    #[serde(default)]
    rows: Vec<CheckRow>,
}

#[derive(Deserialize)]
struct CheckRow {
    payment_status: String,
}

impl QPayClient {
    /// `base_url` includes the version (`https://merchant.qpay.mn/v2`); callbacks go to
    /// `{callback_base_url}/webhooks/qpay?payment_id=…&token=…`.
    pub fn new(
        base_url: &str,
        credentials: QPayCredentials,
        callback_base_url: &str,
        timeout: Duration,
    ) -> Result<Self, GatewayError> {
        let api = ProviderApi::new(Provider::Qpay, timeout, summarize)?;
        let basic = format!(
            "Basic {}",
            BASE64.encode(format!(
                "{}:{}",
                credentials.client_id,
                credentials.client_secret.expose_secret()
            ))
        );
        Ok(Self {
            api,
            base_url: base_url.trim_end_matches('/').to_owned(),
            basic: SecretString::from(basic),
            invoice_code: credentials.invoice_code,
            callback_base_url: callback_base_url.trim_end_matches('/').to_owned(),
            token: Mutex::new(None),
        })
    }

    /// A valid bearer token: the cached one, or a fresh one if it is (nearly) expired.
    async fn bearer(&self) -> Result<SecretString, GatewayError> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Utc::now() < t.refresh_at) {
            return Ok(token.bearer.clone());
        }
        let answer: TokenAnswer = self
            .send(
                self.api.http().post(format!("{}/auth/token", self.base_url)),
                &self.basic,
            )
            .await?;
        let now = Utc::now();
        let expires_at = expiry(answer.expires_in, now);
        let margin = REFRESH_MARGIN.min((expires_at - now) / 2);
        let token = AccessToken {
            bearer: SecretString::from(format!("Bearer {}", answer.access_token)),
            refresh_at: expires_at - margin,
        };
        tracing::debug!(%expires_at, "QPay access token refreshed");
        *cached = Some(token.clone());
        Ok(token.bearer)
    }

    /// POSTs `body` to the API with the bearer token.
    async fn call<T: for<'de> Deserialize<'de>>(&self, path: &str, body: &Value) -> Result<T, GatewayError> {
        let url = format!("{}{path}", self.base_url);
        self.with_bearer(|| self.api.http().post(&url).json(body)).await
    }

    /// Sends the request `build` makes with the bearer token; a 401 (a token QPay
    /// revoked early) drops the cache and is tried once more with a fresh token.
    async fn with_bearer<T: for<'de> Deserialize<'de>>(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, GatewayError> {
        let bearer = self.bearer().await?;
        match self.send(build(), &bearer).await {
            Err(GatewayError::Rejected { status: 401, .. }) => {
                self.token.lock().await.take();
                let bearer = self.bearer().await?;
                self.send(build(), &bearer).await
            }
            other => other,
        }
    }

    async fn send<T: for<'de> Deserialize<'de>>(
        &self,
        request: reqwest::RequestBuilder,
        authorization: &SecretString,
    ) -> Result<T, GatewayError> {
        self.api.send(request, authorization.expose_secret()).await
    }
}

/// QPay errors are `{"error": "CODE", "message": "..."}`: pass on the gist only.
fn summarize(v: &Value) -> Option<String> {
    let code = v.get("error").and_then(Value::as_str).unwrap_or("UNKNOWN");
    let message = v.get("message").and_then(Value::as_str).unwrap_or_default();
    Some(format!("{code}: {message}"))
}

fn unavailable(message: String) -> GatewayError {
    GatewayError::Unavailable {
        provider: Provider::Qpay,
        message,
    }
}

/// QPay invoices are in whole tögrög: MNT minor units / 100, refused when not whole.
fn whole_tugrik(amount: Money) -> Result<i64, GatewayError> {
    if amount.currency().code() != "MNT" {
        return Err(GatewayError::Invalid {
            field: "currency",
            message: format!("QPay takes MNT only, not {}", amount.currency()),
        });
    }
    let minor = amount.amount_minor();
    if minor % 100 != 0 {
        return Err(GatewayError::Invalid {
            field: "amount",
            message: format!("QPay invoices are whole tögrög: {minor} is not a multiple of 100"),
        });
    }
    Ok(minor / 100)
}

#[async_trait]
impl PaymentGateway for QPayClient {
    fn provider(&self) -> Provider {
        Provider::Qpay
    }

    fn check(&self, request: &CheckoutRequest) -> Result<(), GatewayError> {
        whole_tugrik(request.amount).map(|_| ())
    }

    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<Checkout, GatewayError> {
        let token = request.callback_token.as_ref().ok_or_else(|| GatewayError::Invalid {
            field: "callback_token",
            message: "QPay payments need a callback token".into(),
        })?;
        let callback_url = format!(
            "{}/webhooks/qpay?payment_id={}&token={}",
            self.callback_base_url,
            request.payment_id,
            token.expose()
        );
        let description = request
            .description
            .clone()
            .or_else(|| request.merchant_ref.clone())
            .unwrap_or_else(|| format!("payment {}", request.payment_id));
        let body = json!({
            "invoice_code": self.invoice_code,
            "sender_invoice_no": request.payment_id.to_string(),
            "invoice_receiver_code": "terminal",
            "invoice_description": description,
            "amount": whole_tugrik(request.amount)?,
            "callback_url": callback_url,
        });
        let invoice: InvoiceAnswer = self.call("/invoice", &body).await?;
        Ok(invoice.into())
    }

    /// `POST /payment/check`: nothing yet (`count: 0`) is pending; PAID or PARTIAL
    /// rows report what was received, and the domain decides whether it is enough.
    async fn fetch_status(&self, provider_ref: &str) -> Result<ProviderPaymentStatus, GatewayError> {
        let body = json!({
            "object_type": "INVOICE",
            "object_id": provider_ref,
            "offset": { "page_number": 1, "page_limit": 100 },
        });
        let answer: CheckAnswer = self.call("/payment/check", &body).await?;
        answer.status()
    }

    /// `DELETE /invoice/{invoice_id}` cancels an invoice nobody has paid. Before
    /// cancelling, payhook checks it was not paid meanwhile: a paid invoice is answered
    /// as paid, not cancelled.
    async fn cancel(&self, provider_ref: &str) -> Result<ProviderPaymentStatus, GatewayError> {
        let found = self.fetch_status(provider_ref).await?;
        if found.paid_amount.is_some_and(|paid| paid > 0) {
            return Ok(found);
        }
        let url = format!("{}/invoice/{}", self.base_url, provider_ref);
        let _: Value = self.with_bearer(|| self.api.http().delete(&url)).await?;
        Ok(ProviderPaymentStatus::new(PaymentStatus::Canceled, None))
    }

    /// QPay v2 has no documented way to find an invoice by `sender_invoice_no` (invoices
    /// are read by QPay's own `invoice_id` only), so an interrupted creation is never
    /// adopted. That loses nothing: the QR and bank links reach a customer only through
    /// payhook's recorded answer, so nobody can pay such an invoice.
    async fn find_checkout(&self, _payment_id: PaymentId) -> Result<Option<Checkout>, GatewayError> {
        Ok(None)
    }
}

impl From<InvoiceAnswer> for Checkout {
    fn from(invoice: InvoiceAnswer) -> Self {
        Checkout {
            provider_ref: invoice.invoice_id,
            checkout_url: invoice.short_url.clone(),
            qr_text: invoice.qr_text,
            // QPay's simple invoice has no due date and stays payable: payhook gives
            // it one (docs/providers.md), past which the reconciler asks once more and
            // expires the payment unless QPay reports it paid.
            expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(INVOICE_VALID_HOURS)),
            extras: json!({ "qr_image": invoice.qr_image, "short_url": invoice.short_url, "urls": invoice.urls }),
            client_secret: None,
        }
    }
}

impl CheckAnswer {
    fn status(self) -> Result<ProviderPaymentStatus, GatewayError> {
        let received = self
            .rows
            .iter()
            .any(|r| matches!(r.payment_status.as_str(), "PAID" | "PARTIAL"));
        if self.count == 0 || !received {
            return Ok(ProviderPaymentStatus::new(PaymentStatus::Pending, None));
        }
        let mnt = Currency::parse("MNT").map_err(|e| unavailable(e.to_string()))?;
        let paid = self
            .paid_amount
            .map(|n| Money::from_major(&n.to_string(), mnt).map(|m| m.amount_minor()))
            .transpose()
            .map_err(|e| unavailable(format!("unreadable paid_amount: {e}")))?;
        Ok(ProviderPaymentStatus::new(PaymentStatus::Paid, Some(paid.unwrap_or(0))))
    }
}

/// Reads QPay's answers as the client does, for conformance checks against QPay's
/// published examples.
pub mod wire {
    use super::*;

    fn read<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, GatewayError> {
        serde_json::from_slice(body).map_err(|e| unavailable(format!("unexpected answer: {e}")))
    }

    /// A `POST /auth/token` answer: when its access token expires.
    pub fn token_expiry(body: &[u8], now: DateTime<Utc>) -> Result<DateTime<Utc>, GatewayError> {
        read::<TokenAnswer>(body).map(|t| expiry(t.expires_in, now))
    }

    /// A `POST /invoice` answer.
    pub fn invoice(body: &[u8]) -> Result<Checkout, GatewayError> {
        read::<InvoiceAnswer>(body).map(Checkout::from)
    }

    /// A `POST /payment/check` answer.
    pub fn check(body: &[u8]) -> Result<ProviderPaymentStatus, GatewayError> {
        read::<CheckAnswer>(body)?.status()
    }
}
