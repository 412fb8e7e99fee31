//! The inbox as operators see it: statuses, listing and replay.

use crate::{InboxId, Provider};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an inbox event stands. `failed` events are waiting for a retry; `dead` ones
/// ran out of attempts and wait for an operator to replay them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxStatus {
    Pending,
    Processed,
    Ignored,
    Failed,
    Dead,
}

impl InboxStatus {
    pub const ALL: [InboxStatus; 5] = [Self::Pending, Self::Processed, Self::Ignored, Self::Failed, Self::Dead];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processed => "processed",
            Self::Ignored => "ignored",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

impl fmt::Display for InboxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown inbox status {0:?} (pending, processed, ignored, failed or dead)")]
pub struct UnknownInboxStatus(pub String);

impl FromStr for InboxStatus {
    type Err = UnknownInboxStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownInboxStatus(s.to_owned()))
    }
}

/// One inbox event, as listed for operators (the payload stays in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEntry {
    pub id: InboxId,
    pub provider: String,
    pub event_id: String,
    pub event_type: String,
    pub payment_ref: Option<String>,
    pub status: InboxStatus,
    pub result: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
}

/// Which inbox events to list (newest first) or replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxFilter {
    pub status: Option<InboxStatus>,
    pub provider: Option<Provider>,
    pub limit: u32,
}

/// Which inbox events a bulk replay makes due again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayFilter {
    /// Never `pending` (those are due already).
    pub status: InboxStatus,
    pub provider: Option<Provider>,
    /// Only events received at or after this.
    pub since: Option<DateTime<Utc>>,
}

/// What a replay request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Due again now (it was failed, dead or processed; re-applying a processed event
    /// changes no payment, the state machine sees to that).
    Requeued,
    /// Already waiting to be processed: nothing to do.
    AlreadyPending,
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for st in InboxStatus::ALL {
            assert_eq!(st.as_str().parse::<InboxStatus>(), Ok(st));
        }
        assert!("done".parse::<InboxStatus>().is_err());
    }
}
