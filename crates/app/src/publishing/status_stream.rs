//! `GET /payments/{id}/events?token=…`: the payment's status as Server-Sent Events,
//! for the customer's browser. The client token from `POST /payments` authorizes it
//! (compared with the stored hash in constant time). The first event is the current
//! status, then one per change; a comment line every 15 s keeps proxies from closing
//! the connection.

use crate::api::credentials::check_client_token;
use crate::api::{ApiError, AppState};
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use payhook_domain::ports::PaymentStore;
use payhook_domain::{OutboxMessage, Payment, PaymentId};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;

const HEARTBEAT: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub struct StreamQuery {
    pub token: Option<String>,
}

pub async fn stream(
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = check_client_token(state.payments.as_ref(), &raw, query.token.as_deref()).await?;
    // Subscribe before reading the payment, so no change falls between the two.
    let changes = state.bus.subscribe();
    let payment = state
        .payments
        .payment(id)
        .await?
        .ok_or(ApiError::PaymentNotFound(raw))?;
    let stream = StatusStream {
        id,
        payments: state.payments.clone(),
        changes,
        first: Some(status_event(&status_of(&payment))),
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(futures_util::stream::unfold(stream, StatusStream::next)))
}

struct StatusStream {
    id: PaymentId,
    payments: Arc<dyn PaymentStore>,
    changes: Receiver<OutboxMessage>,
    first: Option<Bytes>,
}

impl StatusStream {
    /// The next chunk: the current status first, then this payment's changes and
    /// heartbeats. Ends when the gateway shuts down (the bus closes).
    async fn next(mut self) -> Option<(Result<Bytes, actix_web::Error>, Self)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        loop {
            let chunk = tokio::select! {
                received = self.changes.recv() => match received {
                    Ok(message) if message.payload["payment_id"] == self.id.to_string() => {
                        Some(status_event(&message.payload))
                    }
                    Ok(_) => None,
                    // Too slow to keep up: missed changes are summed up by the current state.
                    Err(RecvError::Lagged(_)) => match self.payments.payment(self.id).await {
                        Ok(Some(p)) => Some(status_event(&status_of(&p))),
                        _ => None,
                    },
                    Err(RecvError::Closed) => return None,
                },
                _ = tokio::time::sleep(HEARTBEAT) => Some(Bytes::from_static(b": heartbeat\n\n")),
            };
            if let Some(chunk) = chunk {
                return Some((Ok(chunk), self));
            }
        }
    }
}

/// The payment's state in the shape of the domain events' payload.
fn status_of(p: &Payment) -> serde_json::Value {
    serde_json::json!({
        "payment_id": p.id,
        "status": p.status,
        "dispute_status": p.dispute_status,
        "amount": p.amount.amount_minor(),
        "currency": p.amount.currency(),
        "paid_amount": p.paid_amount,
        "refunded_amount": p.refunded_amount,
    })
}

fn status_event(data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("event: status\ndata: {data}\n\n"))
}
