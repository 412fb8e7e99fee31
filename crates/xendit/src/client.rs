//! The Xendit invoice API: `POST /v2/invoices`, `GET /v2/invoices/{id}` and
//! `GET /v2/invoices?external_id=`, with
//! `Authorization: Basic base64("<secret_key>:")`. Amounts go out in major units.

use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chrono::{DateTime, Utc};
use payhook_domain::ports::PaymentGateway;
use payhook_domain::{
    Checkout, CheckoutRequest, Currency, GatewayError, Money, PaymentId, PaymentStatus, Provider,
    ProviderPaymentStatus, ProviderRefund, RefundLookup, RefundReport, RefundRequest, RefundStatus,
};
use payhook_provider_http::ProviderApi;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Number, Value};
use std::time::Duration;

pub const DEFAULT_API_BASE_URL: &str = "https://api.xendit.co";

pub struct XenditClient {
    api: ProviderApi,
    base_url: String,
    authorization: SecretString,
    app_tag: String,
}

#[derive(Deserialize)]
struct Invoice {
    id: String,
    status: String,
    invoice_url: Option<String>,
    expiry_date: Option<String>,
    currency: Option<String>,
    paid_amount: Option<Number>,
}

impl XenditClient {
    /// `app_tag` goes into every invoice's `metadata.app`, so callbacks for other
    /// applications' invoices on the same account can be told apart.
    pub fn new(
        base_url: &str,
        secret_key: &SecretString,
        app_tag: &str,
        timeout: Duration,
    ) -> Result<Self, GatewayError> {
        let api = ProviderApi::new(Provider::Xendit, timeout, summarize)?;
        let authorization = format!("Basic {}", BASE64.encode(format!("{}:", secret_key.expose_secret())));
        Ok(Self {
            api,
            base_url: base_url.trim_end_matches('/').to_owned(),
            authorization: SecretString::from(authorization),
            app_tag: app_tag.to_owned(),
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Invoice, GatewayError> {
        self.api.send(request, self.authorization.expose_secret()).await
    }
}

/// Xendit errors are `{"error_code": "...", "message": "..."}`: pass on the gist only.
fn summarize(v: &Value) -> Option<String> {
    let code = v.get("error_code").and_then(Value::as_str).unwrap_or("UNKNOWN");
    let message = v.get("message").and_then(Value::as_str).unwrap_or_default();
    Some(format!("{code}: {message}"))
}

/// Minor units to the major-unit JSON number Xendit expects. IDR invoices must be
/// whole rupiah, so an IDR amount with sen is refused before anything is sent.
fn major_amount(amount: Money) -> Result<Number, GatewayError> {
    let currency = amount.currency();
    let scale = 10i64.pow(currency.exponent());
    let minor = amount.amount_minor();
    if currency.code() == "IDR" && minor % scale != 0 {
        return Err(GatewayError::Invalid {
            field: "amount",
            message: format!("Xendit IDR invoices are whole rupiah: {minor} sen is not a multiple of 100"),
        });
    }
    let text = if minor % scale == 0 {
        (minor / scale).to_string()
    } else {
        format!(
            "{}.{:0width$}",
            minor / scale,
            minor % scale,
            width = currency.exponent() as usize
        )
    };
    text.parse::<Number>().map_err(|e| GatewayError::Invalid {
        field: "amount",
        message: e.to_string(),
    })
}

#[async_trait]
impl PaymentGateway for XenditClient {
    fn provider(&self) -> Provider {
        Provider::Xendit
    }

    fn check(&self, request: &CheckoutRequest) -> Result<(), GatewayError> {
        major_amount(request.amount).map(|_| ())
    }

    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<Checkout, GatewayError> {
        let body = json!({
            "external_id": request.payment_id.to_string(),
            "amount": major_amount(request.amount)?,
            "currency": request.amount.currency().code(),
            "payer_email": request.customer_email,
            "description": request.description.clone().or_else(|| request.merchant_ref.clone()),
            "metadata": { "app": self.app_tag },
            "success_redirect_url": request.success_url,
            "failure_redirect_url": request.cancel_url,
        });
        let invoice = self
            .send(
                self.api
                    .http()
                    .post(format!("{}/v2/invoices", self.base_url))
                    .json(&body),
            )
            .await?;
        Ok(invoice.into_checkout())
    }

    async fn fetch_status(&self, provider_ref: &str) -> Result<ProviderPaymentStatus, GatewayError> {
        let url = format!("{}/v2/invoices/{}", self.base_url, urlencode(provider_ref));
        let invoice = self.send(self.api.http().get(url)).await?;
        Ok(invoice.status())
    }

    /// `POST /invoices/{id}/expire!` ("Expire Invoice"): the invoice can no longer be
    /// paid. Xendit calls it expired; payhook, which asked, calls the payment canceled.
    /// An invoice already paid is refused, or answered as paid.
    async fn cancel(&self, provider_ref: &str) -> Result<ProviderPaymentStatus, GatewayError> {
        let url = format!("{}/invoices/{}/expire!", self.base_url, urlencode(provider_ref));
        let invoice = self.send(self.api.http().post(url)).await?;
        let found = invoice.status();
        Ok(match found.status {
            PaymentStatus::Expired => ProviderPaymentStatus::new(PaymentStatus::Canceled, None),
            _ => found,
        })
    }

    /// `POST /refunds` (Refunds API) for the invoice: the amount in major units,
    /// payhook's refund id as `reference_id` and as `Idempotency-key`, payhook's ids in
    /// `metadata`. Xendit's reasons are `FRAUDULENT`, `DUPLICATE`,
    /// `REQUESTED_BY_CUSTOMER`, `CANCELLATION`, `OTHERS`; payhook's `duplicate` and
    /// `fraudulent` map to theirs, anything else is `REQUESTED_BY_CUSTOMER` with the
    /// words in `metadata.reason`.
    async fn refund(&self, request: &RefundRequest) -> Result<ProviderRefund, GatewayError> {
        let (reason, words) = match request.reason.as_deref() {
            Some("duplicate") => ("DUPLICATE", None),
            Some("fraudulent") => ("FRAUDULENT", None),
            other => ("REQUESTED_BY_CUSTOMER", other),
        };
        let body = json!({
            "invoice_id": request.payment_ref,
            "reference_id": request.refund_id.to_string(),
            "amount": major_amount(request.amount)?,
            "currency": request.amount.currency().code(),
            "reason": reason,
            "metadata": {
                "payhook_refund_id": request.refund_id.to_string(),
                "payhook_payment_id": request.payment_id.to_string(),
                "reason": words,
            },
        });
        let answer: RefundAnswer = self
            .api
            .send(
                self.api
                    .http()
                    .post(format!("{}/refunds", self.base_url))
                    .header("idempotency-key", request.refund_id.to_string())
                    .json(&body),
                self.authorization.expose_secret(),
            )
            .await?;
        Ok(ProviderRefund {
            status: answer.refund_status(),
            provider_ref: answer.id,
            failure_reason: answer.failure_code,
        })
    }

    /// `GET /refunds/{id}` (Get refund): where one of payhook's refunds stands, when
    /// its callback never came. The amount is the one payhook asked for: a refund's
    /// amount never changes.
    async fn fetch_refund(&self, lookup: &RefundLookup) -> Result<RefundReport, GatewayError> {
        let url = format!("{}/refunds/{}", self.base_url, urlencode(&lookup.refund_ref));
        let answer: RefundAnswer = self
            .api
            .send(self.api.http().get(url), self.authorization.expose_secret())
            .await?;
        Ok(RefundReport::One {
            refund_id: Some(lookup.refund_id),
            amount: lookup.amount.amount_minor(),
            currency: lookup.amount.currency(),
            status: answer.refund_status(),
            provider_ref: answer.id,
        })
    }

    /// `GET /v2/invoices?external_id=…` lists the invoices made with our payment id as
    /// `external_id` (an empty list, or 404 on older API versions, when none).
    async fn find_checkout(&self, payment_id: PaymentId) -> Result<Option<Checkout>, GatewayError> {
        // A payment id is a UUID: nothing in it needs escaping.
        let url = format!("{}/v2/invoices?external_id={payment_id}", self.base_url);
        let request = self.api.http().get(url);
        let invoices: Vec<Invoice> = match self.api.send(request, self.authorization.expose_secret()).await {
            Ok(invoices) => invoices,
            Err(GatewayError::Rejected { status: 404, .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        // One invoice per payment id is what payhook makes; the first is the one.
        Ok(invoices.into_iter().next().map(Invoice::into_checkout))
    }
}

#[derive(Deserialize)]
struct RefundAnswer {
    id: String,
    status: String,
    failure_code: Option<String>,
}

impl RefundAnswer {
    /// `PENDING` until Xendit settles it, then `SUCCEEDED` or `FAILED`.
    fn refund_status(&self) -> RefundStatus {
        match self.status.as_str() {
            "SUCCEEDED" => RefundStatus::Succeeded,
            "FAILED" => RefundStatus::Failed,
            _ => RefundStatus::Pending,
        }
    }
}

impl Invoice {
    fn status(&self) -> ProviderPaymentStatus {
        let status = match self.status.as_str() {
            "PAID" | "SETTLED" => PaymentStatus::Paid,
            "EXPIRED" => PaymentStatus::Expired,
            _ => PaymentStatus::Pending,
        };
        let paid_amount = match (&self.paid_amount, self.currency.as_deref().map(Currency::parse)) {
            (Some(n), Some(Ok(currency))) => Money::from_major(&n.to_string(), currency)
                .ok()
                .map(|m| m.amount_minor()),
            _ => None,
        };
        ProviderPaymentStatus::new(status, paid_amount)
    }

    fn into_checkout(self) -> Checkout {
        Checkout {
            provider_ref: self.id,
            checkout_url: self.invoice_url,
            qr_text: None,
            expires_at: self
                .expiry_date
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
            extras: Value::Null,
            client_secret: None,
        }
    }
}

/// Invoice ids are alphanumeric; anything else is escaped rather than trusted in a path.
fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(minor: i64, code: &str) -> Money {
        Money::new(minor, Currency::parse(code).unwrap()).unwrap()
    }

    #[test]
    fn amounts_go_out_in_major_units() {
        assert_eq!(major_amount(money(15_000_000, "IDR")).unwrap().to_string(), "150000");
        assert_eq!(major_amount(money(1050, "USD")).unwrap().to_string(), "10.5");
        assert_eq!(major_amount(money(7, "USD")).unwrap().to_string(), "0.07");
        assert_eq!(major_amount(money(1500, "JPY")).unwrap().to_string(), "1500");
        assert!(matches!(
            major_amount(money(15_000_050, "IDR")),
            Err(GatewayError::Invalid { field: "amount", .. })
        ));
    }

    #[test]
    fn invoice_ids_are_escaped_in_paths() {
        assert_eq!(urlencode("inv_123-ab"), "inv_123-ab");
        assert_eq!(urlencode("../x"), "%2E%2E%2Fx");
    }
}
