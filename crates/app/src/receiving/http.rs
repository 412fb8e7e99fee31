//! `/webhooks/{provider}`: reads the raw body within the size limit and hands the
//! request to the ingest service; maps its reply to HTTP.

use crate::api::error::error_body;
use crate::api::{read_limited, AppState, BodyTimedOut};
use crate::receiving::ingest::{Inbound, Reply};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use payhook_domain::ProcessingResult;

#[utoipa::path(post, path = "/webhooks/{provider}", tag = "providers",
    params(("provider" = String, Path, description = "stripe, xendit, qpay or junglepay"),
           ("payment_id" = Option<String>, Query, description = "QPay, JunglePay: the payment"),
           ("token" = Option<String>, Query, description = "QPay, JunglePay: the payment's callback token")),
    request_body(content = String, description = "The provider's event, byte for byte", content_type = "application/json"),
    responses(
        (status = 200, description = "`{\"status\": \"accepted\" | \"duplicate\" | \"ignored\", \"event_id\": …}` (QPay: `SUCCESS`)", body = Object),
        (status = 400, description = "`malformed_json`, `malformed_event`", body = crate::api::openapi::ErrorBody),
        (status = 401, description = "`missing_signature`, `invalid_signature`, `invalid_callback_token`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`unknown_provider`, `provider_disabled`", body = crate::api::openapi::ErrorBody),
        (status = 413, description = "`payload_too_large`", body = crate::api::openapi::ErrorBody),
        (status = 429, description = "`rate_limited`", body = crate::api::openapi::ErrorBody),
        (status = 503, description = "`store_unavailable`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    provider: web::Path<String>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let limit = state.max_body_bytes;
    let (body, oversized, timed_out) = match read_limited(&req, payload, limit, state.body_read_timeout).await {
        Ok((body, oversized)) => (body, oversized, false),
        Err(BodyTimedOut(part)) => (part, false, true),
    };
    let provider = provider.into_inner();
    let acknowledgement = state.ingest.acknowledgement(&provider);
    let inbound = Inbound {
        provider,
        method: req.method().as_str().to_owned(),
        path: req.path().to_owned(),
        query: req.query_string().to_owned(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
        oversized,
        timed_out,
        remote_addr: req.peer_addr().map(|a| a.to_string()),
    };
    let reply = state.ingest.receive(inbound).await;
    match (acknowledgement, &reply) {
        // The provider wants a particular body for a stored (or repeated) delivery.
        (Some(body), Reply::Accepted { .. } | Reply::Duplicate { .. } | Reply::Ignored { .. }) => {
            HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(body)
        }
        _ => respond(reply),
    }
}

fn respond(reply: Reply) -> HttpResponse {
    match reply {
        Reply::Accepted { event_id } => {
            HttpResponse::Ok().json(serde_json::json!({ "status": "accepted", "event_id": event_id }))
        }
        Reply::Duplicate { event_id } => {
            HttpResponse::Ok().json(serde_json::json!({ "status": "duplicate", "event_id": event_id }))
        }
        Reply::Ignored { event_id, reason } => HttpResponse::Ok()
            .json(serde_json::json!({ "status": "ignored", "event_id": event_id, "reason": reason.as_str() })),
        Reply::RateLimited { retry_after } => {
            let mut response = error_body(
                StatusCode::TOO_MANY_REQUESTS,
                ProcessingResult::RateLimited.as_str(),
                "too many requests from this address failed authentication; retry later",
            );
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&secs.to_string()) {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
            response
        }
        Reply::Rejected { status, code, message } => error_body(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code.as_str(),
            &message,
        ),
    }
}
