//! Domain events waiting in the outbox, and their delivery to subscribers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A domain event not delivered yet, as an operator sees it (`GET /admin/outbox`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UndeliveredMessage {
    pub id: i64,
    pub topic: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    /// When it was given up on, if it has been.
    pub dead_at: Option<DateTime<Utc>>,
}

/// One outbox row handed to the relay: `payment.paid`, `payment.refunded`, ...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: i64,
    pub topic: String,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// Failed deliveries so far.
    pub attempts: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{subscriber}: {reason}")]
pub struct PublishError {
    pub subscriber: String,
    pub reason: String,
}
