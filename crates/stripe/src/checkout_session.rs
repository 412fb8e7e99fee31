//! Stripe Checkout Sessions (`providers.stripe.checkout = "checkout_session"`): a
//! Stripe-hosted payment page for each payment. Requests go out through the SDK's
//! typed builders; answers are read with a type of our own ([`Session`]), because the
//! SDK's `CheckoutSession` parse needs every one of the object's seventy-odd fields
//! and would reject a session a newer API version shapes differently. payhook needs
//! seven of them.

use crate::events::PAYMENT_ID_METADATA_KEY;
use payhook_domain::{Checkout, CheckoutRequest, GatewayError, PaymentStatus, ProviderPaymentStatus};
use std::collections::HashMap;
use stripe::StripeRequest;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, ExpireCheckoutSession, ProductData, RetrieveCheckoutSession,
};

/// Checkout Session ids start with this; PaymentIntent ids with `pi_`.
pub const SESSION_PREFIX: &str = "cs_";

/// What payhook reads of a Checkout Session.
#[derive(miniserde::Deserialize)]
pub(crate) struct Session {
    id: String,
    url: Option<String>,
    /// `open`, `complete` or `expired`.
    status: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    payment_status: String,
    amount_total: Option<i64>,
    expires_at: i64,
    /// Its PaymentIntent's id, once the customer paid (not expanded).
    payment_intent: Option<String>,
}

impl Session {
    pub(crate) fn payment_intent(&self) -> Option<String> {
        self.payment_intent.clone()
    }

    pub(crate) fn checkout(&self) -> Checkout {
        Checkout {
            provider_ref: self.id.clone(),
            checkout_url: self.url.clone(),
            qr_text: None,
            expires_at: chrono::DateTime::from_timestamp(self.expires_at, 0),
            extras: serde_json::Value::Null,
            client_secret: None,
        }
    }

    pub(crate) fn status(&self) -> ProviderPaymentStatus {
        match (self.status.as_deref(), self.payment_status.as_str()) {
            (Some("complete"), "paid") => ProviderPaymentStatus {
                captured: true,
                ..ProviderPaymentStatus::new(PaymentStatus::Paid, self.amount_total)
            },
            (Some("expired"), _) => ProviderPaymentStatus::new(PaymentStatus::Expired, None),
            _ => ProviderPaymentStatus::new(PaymentStatus::Pending, None),
        }
    }
}

/// The Stripe-hosted page for one payment: one line for its amount, payhook's id in
/// the session's and the PaymentIntent's metadata (webhooks find the payment by it).
pub(crate) fn create(
    request: &CheckoutRequest,
    currency: stripe_types::Currency,
    success_url: &str,
    cancel_url: Option<&str>,
) -> CreateCheckoutSession {
    let metadata = HashMap::from([(PAYMENT_ID_METADATA_KEY.to_owned(), request.payment_id.to_string())]);
    let name = request
        .description
        .clone()
        .or_else(|| request.merchant_ref.clone())
        .unwrap_or_else(|| format!("payment {}", request.payment_id));
    let mut price = CreateCheckoutSessionLineItemsPriceData::new(currency);
    price.unit_amount = Some(request.amount.amount_minor());
    price.product_data = Some(ProductData::new(name));
    let mut line = CreateCheckoutSessionLineItems::new();
    line.price_data = Some(price);
    line.quantity = Some(1);
    let mut intent = CreateCheckoutSessionPaymentIntentData::new();
    intent.metadata = Some(metadata.clone());
    let mut create = CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Payment)
        .line_items(vec![line])
        .success_url(success_url)
        .client_reference_id(request.payment_id.to_string())
        .metadata(metadata)
        .payment_intent_data(intent);
    if let Some(cancel_url) = cancel_url {
        create = create.cancel_url(cancel_url);
    }
    if let Some(email) = &request.customer_email {
        create = create.customer_email(email.clone());
    }
    create
}

pub(crate) async fn retrieve(client: &stripe::Client, id: &str) -> Result<Session, stripe::StripeError> {
    RetrieveCheckoutSession::new(id)
        .build()
        .customize::<Session>()
        .send(client)
        .await
}

/// `POST /v1/checkout/sessions/{id}/expire`: the page stops taking payments. Stripe
/// refuses a session that is not `open` (completed, say).
pub(crate) async fn expire(client: &stripe::Client, id: &str) -> Result<Session, stripe::StripeError> {
    ExpireCheckoutSession::new(id)
        .build()
        .customize::<Session>()
        .send(client)
        .await
}

/// A required setting is missing: nowhere to send the customer after paying.
pub(crate) fn no_success_url() -> GatewayError {
    GatewayError::Invalid {
        field: "success_url",
        message: "a Stripe Checkout payment needs a success_url: send one, or set providers.stripe.success_url".into(),
    }
}
