//! One place that maps application errors to HTTP.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use payhook_domain::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no payment with id {0}")]
    PaymentNotFound(String),
    #[error("no such resource")]
    NotFound,
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("no inbox event with id {0}")]
    EventNotFound(String),
    #[error("inbox event {0} is already waiting to be processed")]
    AlreadyPending(String),
    #[error("the store is unavailable; retry later")]
    StoreUnavailable(#[source] StoreError),
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            Self::PaymentNotFound(_) => "payment_not_found",
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::InvalidQuery(_) => "invalid_query",
            Self::EventNotFound(_) => "event_not_found",
            Self::AlreadyPending(_) => "already_pending",
            Self::StoreUnavailable(_) => "store_unavailable",
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::StoreUnavailable(e)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::PaymentNotFound(_) | Self::NotFound | Self::EventNotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::AlreadyPending(_) => StatusCode::CONFLICT,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::StoreUnavailable(e) = self {
            // The cause stays in the server log; the client gets the contract's sentence.
            tracing::error!(error = %e, "store unavailable");
        }
        error_body(self.status_code(), self.code(), &self.to_string())
    }
}

/// The contract's error body: `{"error":{"code":"…","message":"…"}}`.
pub fn error_body(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": { "code": code, "message": message } }))
}
