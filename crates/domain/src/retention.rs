//! How long payhook keeps what it records, and what may never be deleted.
//!
//! The forensic log holds every raw request body, which carries customers' personal
//! data; processed inbox events and delivered domain events are only history. Each
//! kind has its own age limit in days (0: kept for ever). Inbox events still to be
//! processed or dead, and domain events not yet delivered (dead or retrying), are
//! never purged whatever their age: they are work, not history.

use chrono::{DateTime, Duration, Utc};

/// A kind of record the retention policy deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Retained {
    /// `webhook_logs`: every inbound request, by when it was received.
    ForensicLog,
    /// `webhook_events` that are `processed` or `ignored`, by when they were processed.
    Inbox,
    /// `outbox` messages that were delivered, by when they were delivered.
    Outbox,
}

impl Retained {
    pub const ALL: [Retained; 3] = [Retained::ForensicLog, Retained::Inbox, Retained::Outbox];

    /// The name used in logs, metrics and `payhook purge`'s output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForensicLog => "forensic_log",
            Self::Inbox => "inbox",
            Self::Outbox => "outbox",
        }
    }
}

/// Age limits in days; 0 keeps that kind for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub forensic_days: u32,
    pub inbox_days: u32,
    pub outbox_days: u32,
}

impl RetentionPolicy {
    pub fn days(&self, kind: Retained) -> u32 {
        match kind {
            Retained::ForensicLog => self.forensic_days,
            Retained::Inbox => self.inbox_days,
            Retained::Outbox => self.outbox_days,
        }
    }

    /// Records of `kind` dated before this instant may be deleted; `None` when that
    /// kind is kept for ever.
    pub fn cutoff(&self, kind: Retained, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.days(kind) {
            0 => None,
            days => Some(now - Duration::days(i64::from(days))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn each_kind_has_its_own_cutoff_and_zero_keeps_for_ever() {
        let policy = RetentionPolicy {
            forensic_days: 90,
            inbox_days: 0,
            outbox_days: 30,
        };
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap();
        assert_eq!(
            policy.cutoff(Retained::ForensicLog, now),
            Some(Utc.with_ymd_and_hms(2026, 9, 6, 12, 0, 0).unwrap())
        );
        assert_eq!(policy.cutoff(Retained::Inbox, now), None);
        assert_eq!(
            policy.cutoff(Retained::Outbox, now),
            Some(Utc.with_ymd_and_hms(2026, 11, 5, 12, 0, 0).unwrap())
        );
    }

    #[test]
    fn names_are_distinct() {
        let names: std::collections::HashSet<_> = Retained::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), 3);
    }
}
