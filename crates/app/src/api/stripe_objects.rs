//! `GET /stripe/objects/{type}/{id}` and `GET /stripe/objects/{type}` (the merchant's
//! routes): the Stripe mirror, per Connect account (`?account=acct_…`; absent: the
//! platform's own objects).

use super::credentials::Merchant;
use super::{ApiError, AppState};
use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use payhook_domain::{MirrorFilter, MirroredObject, StripeObjectType};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The page size when the client names none, and the most one page holds.
const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;

/// A mirrored object: the object as Stripe sent it, and where it came from.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ObjectView<'a> {
    /// `""` for the platform's own objects.
    account: &'a str,
    #[serde(rename = "type")]
    object_type: &'static str,
    id: &'a str,
    /// Marked by a `*.deleted` event; `object` keeps the data.
    deleted: bool,
    livemode: bool,
    /// The Stripe event it was last written from (`resync:…`/`backfill:…`: read from
    /// the API).
    source_event_id: &'a str,
    /// That event's `created` (or the time of the read).
    source_event_created: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The object exactly as Stripe sent it.
    #[schema(value_type = Object)]
    object: &'a RawValue,
}

fn view(o: &MirroredObject) -> Result<ObjectView<'_>, ApiError> {
    let object: &RawValue = serde_json::from_str(&o.data).map_err(|e| {
        ApiError::StoreUnavailable(payhook_domain::ports::StoreError::Corrupt(format!(
            "stripe_objects.data: {e}"
        )))
    })?;
    Ok(ObjectView {
        account: &o.account,
        object_type: o.object_type.as_str(),
        id: &o.object_id,
        deleted: o.deleted,
        livemode: o.livemode,
        source_event_id: &o.source_event_id,
        source_event_created: o.source_event_created,
        updated_at: o.updated_at,
        object,
    })
}

/// `{"data": [...], "next_cursor": …}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ObjectPageView<'a> {
    data: Vec<ObjectView<'a>>,
    /// The last id of this page when another follows: pass it as `cursor`.
    next_cursor: Option<&'a str>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// The Connect account (`acct_…`); absent: the platform's own objects.
    account: Option<String>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ObjectListQuery {
    /// The Connect account (`acct_…`); absent: the platform's own objects.
    account: Option<String>,
    /// Only objects of this customer (`cus_…`).
    customer: Option<String>,
    /// 1 to 100; 20 when absent.
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

fn object_type(raw: &str) -> Result<StripeObjectType, ApiError> {
    raw.parse().map_err(ApiError::StripeObjectNotFound)
}

#[utoipa::path(get, path = "/stripe/objects/{type}/{id}", tag = "payments", security(("merchant_key" = [])),
    params(("type" = String, Path, description = "customer, product, price, invoice, subscription, charge, refund, dispute, payment_intent or checkout.session"),
           ("id" = String, Path, description = "Stripe's id of the object"),
           AccountQuery),
    responses(
        (status = 200, description = "The object as Stripe last sent it", body = ObjectView),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`stripe_object_not_found` (also for a type payhook does not mirror)", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn show(
    _: Merchant,
    path: web::Path<(String, String)>,
    query: web::Query<AccountQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (raw_type, id) = path.into_inner();
    let object_type = object_type(&raw_type)?;
    let account = query.into_inner().account.unwrap_or_default();
    let found = state
        .mirror
        .object(&account, object_type, &id)
        .await?
        .ok_or_else(|| ApiError::StripeObjectNotFound(format!("no {object_type} {id} in the mirror")))?;
    Ok(HttpResponse::Ok().json(view(&found)?))
}

#[utoipa::path(get, path = "/stripe/objects/{type}", tag = "payments", security(("merchant_key" = [])),
    params(("type" = String, Path, description = "customer, product, price, invoice, subscription, charge, refund, dispute, payment_intent or checkout.session"),
           ObjectListQuery),
    responses(
        (status = 200, description = "A page of objects, by id", body = ObjectPageView),
        (status = 400, description = "`invalid_query`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`missing_api_key`, `invalid_api_key`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`stripe_object_not_found`: a type payhook does not mirror", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn list(
    _: Merchant,
    path: web::Path<String>,
    query: web::Query<ObjectListQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let object_type = object_type(&path.into_inner())?;
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!("limit must be 1 to {MAX_PAGE}")));
    }
    let mut page = state
        .mirror
        .list_objects(&MirrorFilter {
            account: q.account.unwrap_or_default(),
            object_type,
            customer: q.customer,
            after: q.cursor,
            // One more than the page, to know whether another page follows.
            limit: limit + 1,
        })
        .await?;
    let more = page.len() > limit as usize;
    page.truncate(limit as usize);
    let data = page.iter().map(view).collect::<Result<Vec<_>, _>>()?;
    let next_cursor = page.last().filter(|_| more).map(|o| o.object_id.as_str());
    Ok(HttpResponse::Ok().json(ObjectPageView { data, next_cursor }))
}
