//! The JunglePay v1 API: `POST /transactions` and `GET /transactions/{id}`, with
//! `Authorization: Basic base64("<secret_key>:x")`. Amounts are in cents.

use crate::provider_status;
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use payhook_domain::ports::PaymentGateway;
use payhook_domain::{
    Checkout, CheckoutRequest, GatewayError, PaymentId, Provider, ProviderPaymentStatus, ProviderRefund, RefundRequest,
    RefundStatus,
};
use payhook_provider_http::ProviderApi;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::Duration;

pub struct JunglePayClient {
    api: ProviderApi,
    base_url: String,
    authorization: SecretString,
    callback_base_url: String,
}

/// How long a PIX code payhook asks for stays payable.
const PIX_VALID_DAYS: i64 = 1;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Transaction {
    id: Value,
    status: String,
    amount: i64,
    #[serde(default)]
    refunded_amount: i64,
    paid_amount: Option<i64>,
    secure_url: Option<String>,
    pix: Option<Pix>,
}

#[derive(Deserialize)]
struct Pix {
    qrcode: Option<String>,
}

impl JunglePayClient {
    /// `base_url` includes the version (`https://api.junglepagamentos.com/v1`);
    /// postbacks go to `{callback_base_url}/webhooks/junglepay?payment_id=…&token=…`.
    pub fn new(
        base_url: &str,
        secret_key: &SecretString,
        callback_base_url: &str,
        timeout: Duration,
    ) -> Result<Self, GatewayError> {
        let api = ProviderApi::new(Provider::Junglepay, timeout, summarize)?;
        let authorization = format!("Basic {}", BASE64.encode(format!("{}:x", secret_key.expose_secret())));
        Ok(Self {
            api,
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorization: SecretString::from(authorization),
            callback_base_url: callback_base_url.trim_end_matches('/').to_owned(),
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Transaction, GatewayError> {
        self.api.send(request, self.authorization.expose_secret()).await
    }
}

/// JunglePay errors carry a `message`.
fn summarize(v: &Value) -> Option<String> {
    v.get("message").and_then(Value::as_str).map(str::to_owned)
}

fn unavailable(message: String) -> GatewayError {
    GatewayError::Unavailable {
        provider: Provider::Junglepay,
        message,
    }
}

fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `metadata.customer_name` and `metadata.customer_document` (a CPF or CNPJ) of the
/// payment request, which JunglePay requires for its customer.
fn customer(request: &CheckoutRequest, metadata: &Value) -> Value {
    let document = metadata
        .get("customer_document")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = if document.chars().filter(char::is_ascii_digit).count() > 11 {
        "cnpj"
    } else {
        "cpf"
    };
    json!({
        "name": metadata.get("customer_name").and_then(Value::as_str).unwrap_or("Customer"),
        "email": request.customer_email,
        "document": { "number": document, "type": kind },
    })
}

#[async_trait]
impl PaymentGateway for JunglePayClient {
    fn provider(&self) -> Provider {
        Provider::Junglepay
    }

    fn check(&self, request: &CheckoutRequest) -> Result<(), GatewayError> {
        if request.amount.currency().code() != "BRL" {
            return Err(GatewayError::Invalid {
                field: "currency",
                message: format!("JunglePay takes BRL only, not {}", request.amount.currency()),
            });
        }
        Ok(())
    }

    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<Checkout, GatewayError> {
        self.check(request)?;
        let token = request.callback_token.as_ref().ok_or_else(|| GatewayError::Invalid {
            field: "callback_token",
            message: "JunglePay payments need a callback token".into(),
        })?;
        let postback_url = format!(
            "{}/webhooks/junglepay?payment_id={}&token={}",
            self.callback_base_url,
            request.payment_id,
            token.expose()
        );
        let title = request
            .description
            .clone()
            .or_else(|| request.merchant_ref.clone())
            .unwrap_or_else(|| format!("payment {}", request.payment_id));
        let metadata = json!({ "payhook_payment_id": request.payment_id.to_string() });
        let body = json!({
            "amount": request.amount.amount_minor(),
            "paymentMethod": "pix",
            "customer": customer(request, &request.metadata),
            "items": [{ "title": title, "unitPrice": request.amount.amount_minor(), "quantity": 1, "tangible": false }],
            "pix": { "expiresInDays": PIX_VALID_DAYS },
            "postbackUrl": postback_url,
            "metadata": metadata.to_string(),
        });
        let transaction = self
            .send(
                self.api
                    .http()
                    .post(format!("{}/transactions", self.base_url))
                    .json(&body),
            )
            .await?;
        Ok(Checkout {
            provider_ref: id_text(&transaction.id),
            checkout_url: transaction.secure_url,
            qr_text: transaction.pix.and_then(|p| p.qrcode),
            // The PIX code is valid for the days asked for (the answer's own
            // `expirationDate` is a calendar date without a time zone, so the request
            // is the more precise bound): past it, the reconciler asks once more and
            // expires the payment unless JunglePay reports it paid.
            expires_at: Some(chrono::Utc::now() + chrono::Duration::days(PIX_VALID_DAYS)),
            extras: Value::Null,
            client_secret: None,
        })
    }

    async fn fetch_status(&self, provider_ref: &str) -> Result<ProviderPaymentStatus, GatewayError> {
        if !provider_ref
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(GatewayError::Invalid {
                field: "provider_ref",
                message: "not a JunglePay transaction id".into(),
            });
        }
        self.send(
            self.api
                .http()
                .get(format!("{}/transactions/{provider_ref}", self.base_url)),
        )
        .await?
        .status()
    }

    /// `POST /transactions/{id}/refund` with `amount` in cents. JunglePay's API is
    /// Pagar.me's v4 shape (the same statuses, postbacks and fields), and this is that
    /// API's refund request; the answer is the transaction. A transaction `refunded`
    /// in full settles the refund at once; otherwise it is pending until the
    /// `refunded` postback. JunglePay gives a refund no id of its own: payhook names it
    /// `{transaction}:{refund id}`.
    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, GatewayError> {
        let reference = &request.payment_ref;
        if !reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(GatewayError::Invalid {
                field: "provider_ref",
                message: "not a JunglePay transaction id".into(),
            });
        }
        let transaction = self
            .send(
                self.api
                    .http()
                    .post(format!("{}/transactions/{reference}/refund", self.base_url))
                    .header("idempotency-key", request.refund_id.to_string())
                    .json(&json!({ "amount": request.amount.amount_minor() })),
            )
            .await?;
        Ok(ProviderRefund {
            provider_ref: format!("{reference}:{}", request.refund_id),
            status: if transaction.status == "refunded" {
                RefundStatus::Succeeded
            } else {
                RefundStatus::Pending
            },
            failure_reason: None,
        })
    }

    /// JunglePay's public API reads a transaction by its own id only; it documents no
    /// search by the `metadata` payhook sends, so an interrupted creation is never
    /// adopted. That loses nothing: the PIX code and payment page reach a customer only
    /// through payhook's recorded answer, so nobody can pay such a transaction.
    async fn find_checkout(&self, _payment_id: PaymentId) -> Result<Option<Checkout>, GatewayError> {
        Ok(None)
    }
}

impl Transaction {
    fn status(&self) -> Result<ProviderPaymentStatus, GatewayError> {
        provider_status(&self.status, self.amount, self.refunded_amount, self.paid_amount)
            .ok_or_else(|| unavailable(format!("unknown transaction status {:?}", self.status)))
    }
}

/// Reads a transaction as `GET /transactions/{id}` answers it: its id and status,
/// for conformance checks against JunglePay's published examples.
pub fn read_transaction(body: &[u8]) -> Result<(String, ProviderPaymentStatus), GatewayError> {
    let t: Transaction = serde_json::from_slice(body).map_err(|e| unavailable(format!("unexpected answer: {e}")))?;
    Ok((id_text(&t.id), t.status()?))
}
