//! Identifiers as newtypes, so a payment id can never be passed where an event id is meant.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares an id that payhook hands out as a UUID newtype: built from a UUID, parsed
/// from any of its usual text forms (`None` for anything else), shown as the UUID.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $id:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $id(uuid::Uuid);

        impl $id {
            pub fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }

            /// Parses a UUID in any of its usual text forms; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                uuid::Uuid::parse_str(s).ok().map(Self)
            }

            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl std::fmt::Display for $id {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
pub(crate) use uuid_id;

uuid_id!(
    /// payhook's own payment id (a UUID it hands out and providers echo back).
    PaymentId
);

/// The provider's id for one delivery's event: the deduplication key together with the provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventIdError {
    #[error("event id is empty")]
    Empty,
    #[error("event id is longer than {max} characters", max = EventId::MAX_LEN)]
    TooLong,
}

impl EventId {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: impl Into<String>) -> Result<Self, EventIdError> {
        let s = s.into();
        if s.trim().is_empty() {
            Err(EventIdError::Empty)
        } else if s.chars().count() > Self::MAX_LEN {
            Err(EventIdError::TooLong)
        } else {
            Ok(Self(s))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = EventIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(s)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> Self {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Row id of an event in the inbox (`webhook_events.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InboxId(pub i64);

/// Row id of a forensic log record (`webhook_logs.id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogId(pub i64);

impl fmt::Display for InboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_must_be_non_empty_and_bounded() {
        assert_eq!(EventId::parse(""), Err(EventIdError::Empty));
        assert_eq!(EventId::parse("   "), Err(EventIdError::Empty));
        assert_eq!(EventId::parse("x".repeat(256)), Err(EventIdError::TooLong));
        assert!(EventId::parse("evt_123").is_ok());
    }

    #[test]
    fn payment_id_parses_only_uuids() {
        assert!(PaymentId::parse("not-a-uuid").is_none());
        assert!(PaymentId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").is_some());
    }
}
