//! Listing payments, newest first, a page at a time.
//!
//! Pages are cut by the last payment's creation time and id, not by an offset: a
//! payment created while someone pages through the list is newer than everything on
//! the first page, so it never pushes a payment from one page onto the next (a
//! duplicate) or past it (a gap).

use crate::{PaymentId, PaymentStatus, Provider};
use chrono::{DateTime, TimeZone, Utc};

/// The most payments one page holds.
pub const MAX_PAGE: u32 = 100;

/// Which payments to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub merchant_ref: Option<String>,
    pub status: Option<PaymentStatus>,
    pub provider: Option<Provider>,
    pub customer_email: Option<String>,
    pub subscription_id: Option<crate::SubscriptionId>,
    /// Only payments listed after this one (the previous page's last).
    pub after: Option<PageCursor>,
    /// At most this many (1 to [`MAX_PAGE`]).
    pub limit: u32,
}

/// Where a page ended: the creation time and id of its last payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: DateTime<Utc>,
    pub id: PaymentId,
}

impl PageCursor {
    /// The opaque text a client passes back: `{microseconds}_{id}`.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.created_at.timestamp_micros(), self.id)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('_')?;
        let created_at = Utc.timestamp_micros(micros.parse().ok()?).single()?;
        Some(Self {
            created_at,
            id: PaymentId::parse(id)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_and_nonsense_is_refused() {
        let cursor = PageCursor {
            created_at: Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap() + chrono::Duration::microseconds(7),
            id: PaymentId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap(),
        };
        assert_eq!(PageCursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "",
            "abc",
            "12_",
            "_67e55044-10b1-426f-9247-bb680e5fe0c8",
            "x_67e55044-10b1-426f-9247-bb680e5fe0c8",
            "12_not-a-uuid",
        ] {
            assert_eq!(PageCursor::decode(bad), None, "{bad:?}");
        }
    }
}
