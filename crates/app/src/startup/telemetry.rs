//! Logging and spans. Filter with `RUST_LOG` (default `info`);
//! `PAYHOOK_LOG_FORMAT=json` for one JSON object per line.
//!
//! Every HTTP request runs in an `http_request` span ([`RequestSpan`]) that the
//! webhook path fills with the provider and event id; every event application runs
//! in an `apply_event` span (provider, event id, payment id); the relay logs each
//! published domain event with the same ids. At `RUST_LOG=info` one event can be
//! followed from its request to its publication. No span or log line holds headers,
//! bodies or query strings (which carry callback and client tokens), so no secret
//! reaches the log.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use std::io::IsTerminal;
use tracing::field::Empty;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;
use tracing_subscriber::EnvFilter;

/// The span of one HTTP request: method, path (never the query) and, once answered,
/// the status; the webhook path records `provider` and `event_id` on it.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        tracing::info_span!(
            "http_request",
            method = %request.method(),
            path = %request.path(),
            provider = Empty,
            event_id = Empty,
            status = Empty,
        )
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, actix_web::Error>) {
        let status = match outcome {
            Ok(response) => response.status().as_u16(),
            Err(error) => error.as_response_error().status_code().as_u16(),
        };
        span.record("status", status);
    }
}

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PAYHOOK_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only for a person at a terminal, never into files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests starting several apps) is harmless: the first wins.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
