//! Domain events waiting in the outbox, and their delivery to subscribers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
