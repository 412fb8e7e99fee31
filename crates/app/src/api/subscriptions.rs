//! `POST /subscriptions`, `GET /subscriptions/{id}`, `GET /subscriptions`,
//! `POST /subscriptions/{id}/cancel` (the merchant's routes), and the admin's
//! `POST /admin/clock` and `POST /admin/subscriptions/run` for demos and tests.

use super::credentials::Merchant;
use super::payment_requests::{optional_text, optional_url, plausible_email, required_text, RequestError};
use super::{merchant_body, ApiError, AppState};
use crate::processing::subscribing::{SubscribeError, SubscriptionRequest};
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payhook_domain::{Provider, Subscription, SubscriptionFilter, SubscriptionHistoryEntry, SubscriptionId};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

const FIELDS: [&str; 7] = [
    "plan",
    "provider",
    "customer_ref",
    "customer_email",
    "metadata",
    "success_url",
    "cancel_url",
];
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

/// The body of `POST /subscriptions`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionRequestBody {
    /// The plan's id or code.
    pub plan: String,
    /// stripe, xendit, qpay or junglepay.
    pub provider: String,
    /// Your id of the customer (your user id).
    pub customer_ref: String,
    pub customer_email: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    /// Where a hosted page sends the customer after paying (Stripe needs one, here or
    /// in `providers.stripe.success_url`).
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
}

/// A subscription, as the API answers it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SubscriptionView<'a> {
    id: String,
    plan: &'a str,
    plan_id: String,
    provider: &'a str,
    /// The Stripe Connect account, for a subscription of a connected account.
    #[serde(skip_serializing_if = "Option::is_none")]
    account: Option<&'a str>,
    /// Stripe's subscription id (`sub_…`; its Checkout Session's, `cs_…`, until the
    /// customer starts it); null where payhook runs the schedule.
    provider_ref: Option<&'a str>,
    customer_ref: &'a str,
    customer_email: Option<&'a str>,
    /// pending, trialing, active, past_due, canceled or expired.
    status: &'a str,
    /// Whether the customer has access now (trialing, active, past_due).
    access: bool,
    amount: i64,
    currency: String,
    interval: &'a str,
    interval_count: u32,
    current_period_start: Option<DateTime<Utc>>,
    current_period_end: Option<DateTime<Utc>>,
    cancel_at_period_end: bool,
    canceled_at: Option<DateTime<Utc>>,
    /// Where the customer starts a Stripe subscription (its Checkout Session).
    checkout_url: Option<&'a str>,
    #[schema(value_type = Object)]
    metadata: &'a Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn view(s: &Subscription) -> SubscriptionView<'_> {
    SubscriptionView {
        id: s.id.to_string(),
        plan: &s.plan.code,
        plan_id: s.plan.id.to_string(),
        provider: s.provider.as_str(),
        account: Some(s.account.as_str()).filter(|a| !a.is_empty()),
        provider_ref: s.provider_ref.as_deref(),
        customer_ref: &s.customer_ref,
        customer_email: s.customer_email.as_deref(),
        status: s.status.as_str(),
        access: s.status.grants_access(),
        amount: s.plan.amount.amount_minor(),
        currency: s.plan.amount.currency().code().to_owned(),
        interval: s.plan.interval.as_str(),
        interval_count: s.plan.interval_count,
        current_period_start: s.current_period_start,
        current_period_end: s.current_period_end,
        cancel_at_period_end: s.cancel_at_period_end,
        canceled_at: s.canceled_at,
        checkout_url: s.checkout_url.as_deref(),
        metadata: &s.metadata,
        created_at: s.created_at,
        updated_at: s.updated_at,
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct HistoryView<'a> {
    from_status: &'a str,
    to_status: &'a str,
    applied: bool,
    reason: &'a str,
    at: DateTime<Utc>,
}

fn history_view(h: &SubscriptionHistoryEntry) -> HistoryView<'_> {
    HistoryView {
        from_status: h.from_status.as_str(),
        to_status: h.to_status.as_str(),
        applied: h.applied,
        reason: &h.reason,
        at: h.at,
    }
}

/// The answer to `POST /subscriptions`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct OpenedView<'a> {
    #[serde(flatten)]
    subscription: SubscriptionView<'a>,
    /// Its first payment, and how the customer pays it; null on Stripe (pay at
    /// `checkout_url`) and during a trial (asked for before the trial ends).
    payment: Option<super::payments::CreatedView<'a>>,
}

/// A subscription with its payments and history (`GET /subscriptions/{id}`).
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct DetailView<'a> {
    #[serde(flatten)]
    subscription: SubscriptionView<'a>,
    #[schema(value_type = Vec<Object>)]
    payments: Vec<Value>,
    history: Vec<HistoryView<'a>>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PageView<'a> {
    data: Vec<SubscriptionView<'a>>,
    next_cursor: Option<String>,
}

impl From<SubscribeError> for ApiError {
    fn from(e: SubscribeError) -> Self {
        match e {
            SubscribeError::Payment(e) => e.into(),
            SubscribeError::Store(e) => Self::StoreUnavailable(e),
            other => Self::Subscribe(other),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    RequestError::Invalid {
        field,
        message: message.into(),
    }
    .into()
}

/// The subscription a `POST /subscriptions` body describes, or the first thing wrong.
fn read_request(body: &[u8]) -> Result<SubscriptionRequest, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::from(RequestError::Malformed(e.to_string())))?;
    let Value::Object(fields) = value else {
        return Err(RequestError::Malformed("found a JSON value that is not an object".into()).into());
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            "body",
            format!("unknown field {unknown:?}; expected one of {}", FIELDS.join(", ")),
        ));
    }
    let plan = required_text(&fields, "plan", 255)?;
    let provider_name = required_text(&fields, "provider", 255)?;
    let provider: Provider = provider_name
        .parse()
        .map_err(|_| ApiError::from(RequestError::UnknownProvider(provider_name.clone())))?;
    let customer_ref = required_text(&fields, "customer_ref", 255)?;
    let customer_email = optional_text(&fields, "customer_email", 254)?;
    if customer_email.as_deref().is_some_and(|e| !plausible_email(e)) {
        return Err(invalid("customer_email", "must be an email address"));
    }
    let metadata = match fields.get("metadata") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(m)) => Value::Object(m.clone()),
        Some(_) => return Err(invalid("metadata", "must be a JSON object")),
    };
    Ok(SubscriptionRequest {
        plan,
        provider,
        customer_ref,
        customer_email,
        metadata,
        success_url: optional_url(&fields, "success_url")?,
        cancel_url: optional_url(&fields, "cancel_url")?,
    })
}

fn subscription_id(raw: &str) -> Result<SubscriptionId, ApiError> {
    SubscriptionId::parse(raw).ok_or_else(|| ApiError::Subscribe(SubscribeError::NotFound(raw.to_owned())))
}

#[utoipa::path(post, path = "/subscriptions", tag = "subscriptions", security(("merchant_key" = [])),
    request_body(content = SubscriptionRequestBody),
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays of the same request get the first subscription")),
    responses(
        (status = 201, description = "The subscription and its first payment (or, with `idempotent-replayed: true`, the first answer again)", body = OpenedView),
        (status = 400, description = "`malformed_json`, `unknown_provider`, `provider_disabled`, `invalid_idempotency_key`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`plan_not_found`", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "`plan_inactive`, `idempotency_key_in_flight`", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (with `error.field`), `idempotency_key_reused`", body = crate::api::openapi::ErrorBody),
        (status = 502, description = "`provider_error`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn create(
    _: Merchant,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = merchant_body(&req, payload, &state).await?;
    let request = read_request(&body)?;
    let key = super::idempotency_key(&req)?;
    let opened = state.subscriptions.open(request, key.as_deref()).await?;
    let mut response = HttpResponse::Created();
    if opened.replayed {
        response.insert_header(("idempotent-replayed", "true"));
    }
    Ok(response.json(OpenedView {
        subscription: view(&opened.subscription),
        payment: opened.payment.as_ref().map(super::payments::created_view),
    }))
}

#[utoipa::path(get, path = "/subscriptions/{id}", tag = "subscriptions", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The subscription id")),
    responses(
        (status = 200, description = "The subscription, its payments (oldest first) and its history", body = DetailView),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`subscription_not_found`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn show(_: Merchant, path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&path.into_inner())?;
    let store = state.subscriptions.store();
    let subscription = store
        .subscription(id)
        .await?
        .ok_or_else(|| ApiError::Subscribe(SubscribeError::NotFound(id.to_string())))?;
    let payments = store.subscription_payments(id).await?;
    let history = store.subscription_history(id).await?;
    Ok(HttpResponse::Ok().json(DetailView {
        subscription: view(&subscription),
        payments: payments
            .iter()
            .map(|p| {
                serde_json::json!({
                    "id": p.id.to_string(),
                    "provider_ref": p.provider_ref,
                    "amount": p.amount.amount_minor(),
                    "currency": p.amount.currency().code(),
                    "status": p.status.as_str(),
                    "refunded_amount": p.refunded_amount,
                    "checkout_url": p.checkout_url,
                    "qr_text": p.qr_text,
                    "created_at": p.created_at,
                    "paid_at": p.paid_at,
                })
            })
            .collect(),
        history: history.iter().map(history_view).collect(),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Subscriptions of this customer (your user id).
    customer_ref: Option<String>,
    /// pending, trialing, active, past_due, canceled or expired.
    status: Option<String>,
    /// The plan's id or code.
    plan: Option<String>,
    /// 1 to 100 (20).
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /subscriptions?customer_ref=&status=&plan=&limit=&cursor=`, newest first.
/// "Is this customer subscribed now": `customer_ref=…` and an entry with `access: true`.
#[utoipa::path(get, path = "/subscriptions", tag = "subscriptions", security(("merchant_key" = [])), params(ListQuery),
    responses(
        (status = 200, description = "A page, newest first", body = PageView),
        (status = 400, description = "`invalid_query`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn list(
    _: Merchant,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let status = q
        .status
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(ApiError::InvalidQuery)?;
    let plan = match q.plan.as_deref() {
        None => None,
        Some(plan) => {
            let found = match payhook_domain::PlanId::parse(plan) {
                Some(id) => state.plans.plan(id).await?,
                None => state.plans.plan_by_code(plan).await?,
            };
            // An unknown plan has no subscriptions: an empty page, not an error.
            Some(found.map_or_else(|| payhook_domain::PlanId::from_uuid(uuid::Uuid::nil()), |p| p.id))
        }
    };
    let after = q
        .cursor
        .as_deref()
        .map(|c| decode_cursor(c).ok_or_else(|| ApiError::InvalidQuery("cursor: not one this API gave".into())))
        .transpose()?;
    let filter = SubscriptionFilter {
        customer_ref: q.customer_ref,
        status,
        plan,
        after,
        limit: limit + 1,
    };
    let mut page = state.subscriptions.store().list_subscriptions(&filter).await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let next_cursor = page
        .last()
        .filter(|_| more)
        .map(|s| format!("{}_{}", s.created_at.timestamp_micros(), s.id));
    Ok(HttpResponse::Ok().json(PageView {
        data: page.iter().map(view).collect(),
        next_cursor,
    }))
}

fn decode_cursor(text: &str) -> Option<(DateTime<Utc>, SubscriptionId)> {
    let (micros, id) = text.split_once('_')?;
    Some((
        DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        SubscriptionId::parse(id)?,
    ))
}

/// The body of `POST /subscriptions/{id}/cancel`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    /// `true`: access continues until the paid period ends, then `canceled`; `false`
    /// (the default): `canceled` now.
    #[serde(default)]
    at_period_end: bool,
}

#[utoipa::path(post, path = "/subscriptions/{id}/cancel", tag = "subscriptions", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The subscription id")),
    request_body(content = CancelBody),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        (status = 400, description = "`malformed_json`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`subscription_not_found`", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "`subscription_not_cancelable`", body = crate::api::openapi::ErrorBody),
        (status = 502, description = "`provider_error`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn cancel(
    _: Merchant,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&path.into_inner())?;
    let body = merchant_body(&req, payload, &state).await?;
    let at_period_end = if body.iter().all(u8::is_ascii_whitespace) {
        false
    } else {
        serde_json::from_slice::<CancelBody>(&body)
            .map_err(|e| ApiError::from(RequestError::Malformed(e.to_string())))?
            .at_period_end
    };
    let subscription = state.subscriptions.cancel(id, at_period_end).await?;
    Ok(HttpResponse::Ok().json(view(&subscription)))
}

/// The body of `POST /admin/clock`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClockBody {
    /// Seconds to move payhook's clock forward (at most ten years).
    advance_secs: i64,
}

#[utoipa::path(post, path = "/admin/clock", tag = "admin", security(("admin_token" = [])),
    request_body(content = ClockBody),
    responses(
        (status = 200, description = "`{\"now\": …}`: payhook's time after the move", body = Object),
        (status = 400, description = "`malformed_json`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`unauthorized`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`not_found`: `admin.time_travel` is off", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn advance_clock(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::admin::authorize(&req, &state)?;
    let clock = state.clock_control.as_ref().ok_or(ApiError::NotFound)?;
    let asked: ClockBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::from(RequestError::Malformed(e.to_string())))?;
    if !(0..=10 * 366 * 86_400).contains(&asked.advance_secs) {
        return Err(invalid("advance_secs", "must be 0 to ten years of seconds"));
    }
    let now = clock.advance(asked.advance_secs);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "now": now })))
}

#[utoipa::path(post, path = "/admin/subscriptions/run", tag = "admin", security(("admin_token" = [])),
    responses(
        (status = 200, description = "`{\"settled\": n}`: subscriptions the scheduler settled now", body = Object),
        (status = 401, description = "`unauthorized`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn run_scheduler(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    super::admin::authorize(&req, &state)?;
    let settled = state.subscriptions.run_due().await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "settled": settled })))
}
