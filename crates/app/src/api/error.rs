//! One place that maps application errors to HTTP.

use crate::api::payment_requests::{CreateError, RequestError};
use crate::processing::reconcile::cancellation::CancelError;
use crate::processing::reconcile::refunding::RefundError;
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
    #[error("the merchant API is off: no api.keys are configured")]
    MerchantApiDisabled,
    #[error("the merchant API needs an API key: Authorization: Bearer <key>")]
    MissingApiKey,
    #[error("the API key is not one of this gateway's keys")]
    InvalidApiKey,
    #[error("too many status streams are open{0}; close one or retry later")]
    TooManyStreams(&'static str),
    #[error("the request body did not arrive within {0} s")]
    BodyTimeout(u64),
    #[error("the status stream needs the payment's client token: ?token=<client_token>")]
    MissingClientToken,
    #[error("the client token does not match this payment")]
    InvalidClientToken,
    #[error("{0}")]
    InvalidQuery(String),
    #[error("no inbox event with id {0}")]
    EventNotFound(String),
    #[error("inbox event {0} is already waiting to be processed")]
    AlreadyPending(String),
    #[error("no domain event with id {0} in the outbox")]
    MessageNotFound(String),
    #[error("domain event {0} is already delivered or being delivered right now")]
    MessageNotReplayable(String),
    #[error("the store is unavailable; retry later")]
    StoreUnavailable(#[source] StoreError),
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Create(#[source] CreateError),
    /// The payment cannot be asked about: no payment API configured for its provider,
    /// or no provider reference yet.
    #[error("{0}")]
    NotReconcilable(String),
    /// The provider did not answer a check (5xx, timeout, refused connection).
    #[error("the provider did not answer: {0}")]
    ProviderUnavailable(String),
    #[error("{0}")]
    Cancel(#[source] CancelError),
    #[error("{0}")]
    Refund(#[source] RefundError),
    #[error("no refund with id {0}")]
    RefundNotFound(String),
    /// No such object in the Stripe mirror, or a type it does not keep.
    #[error("{0}")]
    StripeObjectNotFound(String),
    #[error("no plan with id or code {0}")]
    PlanNotFound(String),
    #[error("a plan with code {0:?} exists already")]
    PlanCodeTaken(String),
    #[error(transparent)]
    Subscribe(crate::processing::subscribing::SubscribeError),
}

impl From<RefundError> for ApiError {
    fn from(e: RefundError) -> Self {
        match e {
            RefundError::NotFound(id) => Self::PaymentNotFound(id.to_string()),
            RefundError::Store(e) => Self::StoreUnavailable(e),
            other => Self::Refund(other),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::NotFound(id) => Self::PaymentNotFound(id.to_string()),
            CancelError::Store(e) => Self::StoreUnavailable(e),
            other => Self::Cancel(other),
        }
    }
}

impl From<crate::processing::reconcile::AskError> for ApiError {
    fn from(e: crate::processing::reconcile::AskError) -> Self {
        use crate::processing::reconcile::AskError;
        match e {
            AskError::NotFound(id) => Self::PaymentNotFound(id.to_string()),
            AskError::NoApi(_) | AskError::NoReference(_) => Self::NotReconcilable(e.to_string()),
            AskError::Provider(e) => Self::ProviderUnavailable(e.to_string()),
            AskError::Store(e) => Self::StoreUnavailable(e),
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::Store(e) => Self::StoreUnavailable(e),
            other => Self::Create(other),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        Self::Create(CreateError::Request(e))
    }
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            Self::PaymentNotFound(_) => "payment_not_found",
            Self::NotFound => "not_found",
            Self::Unauthorized => "unauthorized",
            Self::MerchantApiDisabled => "merchant_api_disabled",
            Self::MissingApiKey => "missing_api_key",
            Self::InvalidApiKey => "invalid_api_key",
            Self::TooManyStreams(_) => "too_many_streams",
            Self::BodyTimeout(_) => "request_timeout",
            Self::MissingClientToken => "missing_client_token",
            Self::InvalidClientToken => "invalid_client_token",
            Self::InvalidQuery(_) => "invalid_query",
            Self::EventNotFound(_) => "event_not_found",
            Self::AlreadyPending(_) => "already_pending",
            Self::MessageNotFound(_) => "message_not_found",
            Self::MessageNotReplayable(_) => "message_not_replayable",
            Self::StoreUnavailable(_) => "store_unavailable",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::NotReconcilable(_) => "not_reconcilable",
            Self::ProviderUnavailable(_) => "provider_error",
            Self::RefundNotFound(_) => "refund_not_found",
            Self::StripeObjectNotFound(_) => "stripe_object_not_found",
            Self::PlanNotFound(_) => "plan_not_found",
            Self::PlanCodeTaken(_) => "plan_code_taken",
            Self::Subscribe(e) => {
                use crate::processing::subscribing::SubscribeError as S;
                match e {
                    S::PlanNotFound(_) => "plan_not_found",
                    S::PlanInactive(_) => "plan_inactive",
                    S::NotFound(_) => "subscription_not_found",
                    S::NotCancelable { .. } => "subscription_not_cancelable",
                    S::ProviderDisabled(_) => "provider_disabled",
                    S::KeyReused => "idempotency_key_reused",
                    S::Provider(_) => "provider_error",
                    S::Payment(_) => "provider_error",
                    S::Store(_) => "store_unavailable",
                }
            }
            Self::Refund(e) => match e {
                RefundError::NotRefundable { .. } => "payment_not_refundable",
                RefundError::Exceeds { .. } => "refund_exceeds_available",
                RefundError::Unsupported(_) => "refund_not_supported",
                RefundError::Provider { .. } => "provider_error",
                RefundError::NotFound(_) => "payment_not_found",
                RefundError::Store(_) => "store_unavailable",
            },
            Self::Cancel(e) => match e {
                CancelError::NotCancelable { .. } => "payment_not_cancelable",
                CancelError::Unsupported(_) => "cancel_not_supported",
                CancelError::Provider(_) => "provider_error",
                CancelError::NotFound(_) => "payment_not_found",
                CancelError::Store(_) => "store_unavailable",
            },
            Self::Create(e) => match e {
                CreateError::Request(RequestError::Malformed(_)) => "malformed_json",
                CreateError::Request(RequestError::Invalid { .. }) => "validation_failed",
                CreateError::Request(RequestError::UnknownProvider(_)) => "unknown_provider",
                CreateError::ProviderDisabled(_) => "provider_disabled",
                CreateError::InvalidIdempotencyKey(_) => "invalid_idempotency_key",
                CreateError::KeyReused => "idempotency_key_reused",
                CreateError::InFlight => "idempotency_key_in_flight",
                CreateError::Provider { .. } => "provider_error",
                CreateError::Store(_) => "store_unavailable",
            },
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
            Self::PaymentNotFound(_)
            | Self::NotFound
            | Self::EventNotFound(_)
            | Self::MessageNotFound(_)
            | Self::MerchantApiDisabled => StatusCode::NOT_FOUND,
            Self::Unauthorized
            | Self::MissingClientToken
            | Self::InvalidClientToken
            | Self::MissingApiKey
            | Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            Self::AlreadyPending(_) | Self::MessageNotReplayable(_) | Self::NotReconcilable(_) => StatusCode::CONFLICT,
            Self::ProviderUnavailable(_) => StatusCode::BAD_GATEWAY,
            Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RefundNotFound(_) | Self::StripeObjectNotFound(_) | Self::PlanNotFound(_) => StatusCode::NOT_FOUND,
            Self::PlanCodeTaken(_) => StatusCode::CONFLICT,
            Self::Subscribe(e) => {
                use crate::processing::subscribing::SubscribeError as S;
                match e {
                    S::PlanNotFound(_) | S::NotFound(_) => StatusCode::NOT_FOUND,
                    S::PlanInactive(_) | S::NotCancelable { .. } => StatusCode::CONFLICT,
                    S::ProviderDisabled(_) => StatusCode::BAD_REQUEST,
                    S::KeyReused => StatusCode::UNPROCESSABLE_ENTITY,
                    S::Provider(_) | S::Payment(_) => StatusCode::BAD_GATEWAY,
                    S::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                }
            }
            Self::Refund(e) => match e {
                RefundError::NotRefundable { .. } => StatusCode::CONFLICT,
                RefundError::Exceeds { .. } | RefundError::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
                RefundError::Provider { .. } => StatusCode::BAD_GATEWAY,
                RefundError::NotFound(_) => StatusCode::NOT_FOUND,
                RefundError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            Self::Cancel(e) => match e {
                CancelError::NotCancelable { .. } => StatusCode::CONFLICT,
                CancelError::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
                CancelError::Provider(_) => StatusCode::BAD_GATEWAY,
                CancelError::NotFound(_) => StatusCode::NOT_FOUND,
                CancelError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
            Self::Create(e) => match e {
                CreateError::Request(RequestError::Invalid { .. }) | CreateError::KeyReused => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                CreateError::Request(_) | CreateError::ProviderDisabled(_) | CreateError::InvalidIdempotencyKey(_) => {
                    StatusCode::BAD_REQUEST
                }
                CreateError::InFlight => StatusCode::CONFLICT,
                CreateError::Provider { .. } => StatusCode::BAD_GATEWAY,
                CreateError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::StoreUnavailable(e) = self {
            // The cause stays in the server log; the client gets the contract's sentence.
            tracing::error!(error = %e, "store unavailable");
        }
        match self {
            // Which field is wrong, machine-readable too, so a form can point at it.
            Self::Create(CreateError::Request(RequestError::Invalid { field, .. })) => {
                HttpResponse::build(self.status_code()).json(serde_json::json!({
                    "error": { "code": self.code(), "message": self.to_string(), "field": field }
                }))
            }
            // The payment row the failed creation left (status failed), so it can be looked at.
            Self::Create(CreateError::Provider {
                payment_id: Some(id), ..
            }) => HttpResponse::build(self.status_code()).json(serde_json::json!({
                "error": { "code": self.code(), "message": self.to_string(), "payment_id": id.to_string() }
            })),
            // The refund the provider refused or did not answer, so it can be looked at
            // (and, unanswered, asked again with the same Idempotency-Key).
            Self::Refund(RefundError::Provider { refund_id, .. }) => {
                HttpResponse::build(self.status_code()).json(serde_json::json!({
                    "error": { "code": self.code(), "message": self.to_string(), "refund_id": refund_id.to_string() }
                }))
            }
            Self::MissingApiKey | Self::InvalidApiKey => {
                let mut response = error_body(self.status_code(), self.code(), &self.to_string());
                response.headers_mut().insert(
                    actix_web::http::header::WWW_AUTHENTICATE,
                    actix_web::http::header::HeaderValue::from_static("Bearer"),
                );
                response
            }
            _ => error_body(self.status_code(), self.code(), &self.to_string()),
        }
    }
}

/// The contract's error body: `{"error":{"code":"…","message":"…"}}`.
pub fn error_body(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "error": { "code": code, "message": message } }))
}
