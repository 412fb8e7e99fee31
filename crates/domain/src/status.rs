//! Payment status and the forward-only transition rules (docs/architecture.md).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    RequiresAction,
    /// Funds held on the customer's card, not captured yet: not money received.
    Authorized,
    Paid,
    Failed,
    Canceled,
    Expired,
    PartiallyRefunded,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 9] = [
        Self::Pending,
        Self::RequiresAction,
        Self::Authorized,
        Self::Paid,
        Self::Failed,
        Self::Canceled,
        Self::Expired,
        Self::PartiallyRefunded,
        Self::Refunded,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::RequiresAction => "requires_action",
            Self::Authorized => "authorized",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
        }
    }

    /// Whether a payment in `self` may move to `to`. Everything not listed is a
    /// stale transition: events arrive late and out of order, and the status only
    /// moves forward so that the outcome does not depend on their order.
    pub fn can_move_to(self, to: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, to),
            (Pending, RequiresAction | Authorized | Paid | Failed | Canceled | Expired)
                | (RequiresAction, Authorized | Paid | Failed | Canceled | Expired)
                // held funds are captured (paid), released (canceled) or lapse (expired)
                | (Authorized, Paid | Canceled | Expired)
                // a retried payment can still succeed, and a late payment is still money received
                | (Failed | Expired, Paid)
                | (Paid, PartiallyRefunded | Refunded)
                | (PartiallyRefunded, PartiallyRefunded | Refunded)
        )
    }

    /// Statuses in which the customer's money has been received at some point.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Paid | Self::PartiallyRefunded | Self::Refunded)
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown payment status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for PaymentStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Disputes are tracked beside the status and never overwrite it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DisputeStatus {
    Open,
    Won,
    Lost,
}

impl DisputeStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Won => "won",
            Self::Lost => "lost",
        }
    }

    /// A closed dispute is final: a late `open` does not reopen it, and the first
    /// verdict stands.
    pub fn can_move_to(current: Option<DisputeStatus>, to: DisputeStatus) -> bool {
        match current {
            None => true,
            Some(DisputeStatus::Open) => to != DisputeStatus::Open,
            Some(DisputeStatus::Won | DisputeStatus::Lost) => false,
        }
    }
}

impl FromStr for DisputeStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "open" => Ok(Self::Open),
            "won" => Ok(Self::Won),
            "lost" => Ok(Self::Lost),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus::*;
    use super::*;

    /// The contract's table, written out independently of `can_move_to`.
    const ALLOWED: &[(PaymentStatus, PaymentStatus)] = &[
        (Pending, RequiresAction),
        (Pending, Authorized),
        (Pending, Paid),
        (Pending, Failed),
        (Pending, Canceled),
        (Pending, Expired),
        (RequiresAction, Authorized),
        (RequiresAction, Paid),
        (RequiresAction, Failed),
        (RequiresAction, Canceled),
        (RequiresAction, Expired),
        (Authorized, Paid),
        (Authorized, Canceled),
        (Authorized, Expired),
        (Failed, Paid),
        (Expired, Paid),
        (Paid, PartiallyRefunded),
        (Paid, Refunded),
        (PartiallyRefunded, PartiallyRefunded),
        (PartiallyRefunded, Refunded),
    ];

    #[test]
    fn every_from_to_pair_follows_the_contract() {
        let mut checked = 0;
        for from in PaymentStatus::ALL {
            for to in PaymentStatus::ALL {
                let expected = ALLOWED.contains(&(from, to));
                assert_eq!(from.can_move_to(to), expected, "{from} -> {to}");
                checked += 1;
            }
        }
        assert_eq!(checked, 81);
    }

    #[test]
    fn late_failure_cannot_regress_a_paid_payment() {
        assert!(!Paid.can_move_to(Failed));
        assert!(!Paid.can_move_to(Authorized), "a late authorization never un-pays");
        assert!(
            !Authorized.can_move_to(Failed),
            "held funds are released (canceled), not failed"
        );
        assert!(!Refunded.can_move_to(Paid));
        for from in PaymentStatus::ALL {
            assert!(!from.can_move_to(Pending), "{from} -> pending must be stale");
        }
    }

    #[test]
    fn names_round_trip() {
        for st in PaymentStatus::ALL {
            assert_eq!(st.as_str().parse::<PaymentStatus>(), Ok(st));
        }
    }

    #[test]
    fn closed_disputes_are_final() {
        use DisputeStatus::*;
        assert!(DisputeStatus::can_move_to(None, Open));
        assert!(DisputeStatus::can_move_to(Some(Open), Won));
        assert!(DisputeStatus::can_move_to(Some(Open), Lost));
        assert!(!DisputeStatus::can_move_to(Some(Open), Open));
        assert!(!DisputeStatus::can_move_to(Some(Won), Open));
        assert!(!DisputeStatus::can_move_to(Some(Lost), Won));
    }
}
