//! `POST /plans`, `GET /plans`, `GET /plans/{id}` (the merchant's routes): what
//! customers subscribe to.

use super::credentials::Merchant;
use super::{merchant_body, ApiError, AppState};
use crate::api::payment_requests::RequestError;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use payhook_domain::ports::PlanCreated;
use payhook_domain::{Currency, Interval, Money, Plan, PlanId};
use serde::Serialize;
use serde_json::{Map, Value};

/// Stripe's own limits on a recurring price, kept for every provider so a plan can be
/// moved to Stripe: at most a year between payments, at most two years of trial.
const MAX_INTERVALS: [(Interval, u32); 4] = [
    (Interval::Day, 365),
    (Interval::Week, 52),
    (Interval::Month, 12),
    (Interval::Year, 1),
];
const MAX_TRIAL_DAYS: u64 = 730;
const MAX_CODE: usize = 64;
const MAX_NAME: usize = 200;
const FIELDS: [&str; 8] = [
    "code",
    "name",
    "amount",
    "currency",
    "interval",
    "interval_count",
    "trial_days",
    "stripe_price_id",
];

/// A plan, as the API answers it.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PlanView<'a> {
    id: String,
    code: &'a str,
    name: &'a str,
    amount: i64,
    currency: String,
    /// `day`, `week`, `month` or `year`.
    interval: &'static str,
    interval_count: u32,
    trial_days: u32,
    stripe_price_id: Option<&'a str>,
    active: bool,
    created_at: DateTime<Utc>,
}

fn view(p: &Plan) -> PlanView<'_> {
    PlanView {
        id: p.id.to_string(),
        code: &p.code,
        name: &p.name,
        amount: p.amount.amount_minor(),
        currency: p.amount.currency().code().to_owned(),
        interval: p.interval.as_str(),
        interval_count: p.interval_count,
        trial_days: p.trial_days,
        stripe_price_id: p.stripe_price_id.as_deref(),
        active: p.active,
        created_at: p.created_at,
    }
}

/// `{"data": [...]}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct PlanList<'a> {
    data: Vec<PlanView<'a>>,
}

/// The body of `POST /plans`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PlanRequestBody {
    /// Your name for it, unique: letters, digits, `-`, `_`, `.` (at most 64).
    pub code: String,
    pub name: String,
    /// Minor units, per period.
    pub amount: i64,
    pub currency: String,
    /// `day`, `week`, `month` or `year`.
    pub interval: String,
    /// Units per period (1 when absent): at most 365 days, 52 weeks, 12 months, 1 year.
    pub interval_count: Option<u32>,
    /// Free days before the first payment (0 when absent; at most 730).
    pub trial_days: Option<u32>,
    /// The Stripe Price that bills it, for subscriptions through Stripe.
    pub stripe_price_id: Option<String>,
}

fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
    RequestError::Invalid {
        field,
        message: message.into(),
    }
    .into()
}

fn text<'a>(fields: &'a Map<String, Value>, field: &'static str, max: usize) -> Result<Option<&'a str>, ApiError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() && s.chars().count() <= max => Ok(Some(s)),
        Some(_) => Err(invalid(
            field,
            format!("must be a non-empty string of at most {max} characters"),
        )),
    }
}

fn count(fields: &Map<String, Value>, field: &'static str) -> Result<Option<u64>, ApiError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid(field, "must be a non-negative integer")),
    }
}

/// The plan a `POST /plans` body describes, or the first thing wrong with it.
fn read_plan(body: &[u8], now: DateTime<Utc>) -> Result<Plan, ApiError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::from(RequestError::Malformed(e.to_string())))?;
    let Value::Object(fields) = value else {
        return Err(RequestError::Malformed("not an object".into()).into());
    };
    if let Some(unknown) = fields.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(invalid(
            "body",
            format!("unknown field {unknown:?}; expected {}", FIELDS.join(", ")),
        ));
    }
    let code = text(&fields, "code", MAX_CODE)?.ok_or_else(|| invalid("code", "is required"))?;
    if !code
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid("code", "may hold letters, digits, '-', '_' and '.' only"));
    }
    let name = text(&fields, "name", MAX_NAME)?.ok_or_else(|| invalid("name", "is required"))?;
    let amount = match fields.get("amount") {
        Some(v) => v
            .as_i64()
            .filter(|a| *a > 0)
            .ok_or_else(|| invalid("amount", "must be a positive integer in minor units"))?,
        None => return Err(invalid("amount", "is required")),
    };
    let currency = text(&fields, "currency", 3)?.ok_or_else(|| invalid("currency", "is required"))?;
    let currency = Currency::parse(currency)
        .ok()
        .filter(Currency::is_payable)
        .ok_or_else(|| invalid("currency", "is not a currency payhook takes payments in"))?;
    let interval: Interval = text(&fields, "interval", 5)?
        .ok_or_else(|| invalid("interval", "is required"))?
        .parse()
        .map_err(|e: String| invalid("interval", e))?;
    let max = MAX_INTERVALS
        .iter()
        .find(|(i, _)| *i == interval)
        .map_or(1, |(_, max)| *max);
    let interval_count = count(&fields, "interval_count")?.unwrap_or(1);
    if interval_count == 0 || interval_count > u64::from(max) {
        return Err(invalid("interval_count", format!("must be 1 to {max} for {interval}")));
    }
    let trial_days = count(&fields, "trial_days")?.unwrap_or(0);
    if trial_days > MAX_TRIAL_DAYS {
        return Err(invalid("trial_days", format!("must be at most {MAX_TRIAL_DAYS}")));
    }
    let stripe_price_id = text(&fields, "stripe_price_id", 255)?;
    if stripe_price_id.is_some_and(|p| !p.starts_with("price_")) {
        return Err(invalid("stripe_price_id", "must be a Stripe Price id (price_…)"));
    }
    Ok(Plan {
        id: PlanId::from_uuid(uuid::Uuid::new_v4()),
        code: code.to_owned(),
        name: name.to_owned(),
        amount: Money::new(amount, currency).map_err(|e| invalid("amount", e.to_string()))?,
        interval,
        interval_count: u32::try_from(interval_count).unwrap_or(1),
        trial_days: u32::try_from(trial_days).unwrap_or(0),
        stripe_price_id: stripe_price_id.map(str::to_owned),
        active: true,
        created_at: now,
    })
}

#[utoipa::path(post, path = "/plans", tag = "payments", security(("merchant_key" = [])),
    request_body(content = PlanRequestBody),
    responses(
        (status = 201, description = "The plan", body = PlanView),
        (status = 400, description = "`malformed_json`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 409, description = "`plan_code_taken`", body = crate::api::openapi::ErrorBody),
        (status = 422, description = "`validation_failed` (`error.field` names the field)", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn create(
    _: Merchant,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let body = merchant_body(&req, payload, &state).await?;
    // Whole microseconds, as both stores keep it: the answer is what a read gives.
    let plan = read_plan(&body, chrono::SubsecRound::trunc_subsecs(Utc::now(), 6))?;
    match state.plans.create_plan(&plan).await? {
        PlanCreated::Created(plan) => Ok(HttpResponse::Created().json(view(&plan))),
        PlanCreated::CodeTaken(existing) => Err(ApiError::PlanCodeTaken(existing.code)),
    }
}

#[utoipa::path(get, path = "/plans", tag = "payments", security(("merchant_key" = [])),
    responses(
        (status = 200, description = "Every plan, oldest first", body = PlanList),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn list(_: Merchant, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let plans = state.plans.plans().await?;
    Ok(HttpResponse::Ok().json(PlanList {
        data: plans.iter().map(view).collect(),
    }))
}

#[utoipa::path(get, path = "/plans/{id}", tag = "payments", security(("merchant_key" = [])),
    params(("id" = String, Path, description = "The plan's id, or its code")),
    responses(
        (status = 200, description = "The plan", body = PlanView),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`plan_not_found`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn show(_: Merchant, path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let found = match PlanId::parse(&raw) {
        Some(id) => state.plans.plan(id).await?,
        None => state.plans.plan_by_code(&raw).await?,
    };
    let plan = found.ok_or(ApiError::PlanNotFound(raw))?;
    Ok(HttpResponse::Ok().json(view(&plan)))
}
