//! When payhook asks a provider about a payment whose outcome it has not heard of.
//!
//! Callbacks get lost (a provider that does not retry after a timeout, an endpoint
//! that was down, providers that sign nothing and never resend), so a payment still
//! open is checked with the provider: first `pending_after` after its creation, then
//! after waits that grow by `factor` each time (10 min, 40 min, 2 h 10, 6 h 40, …
//! with the defaults), until it settles or `give_up_after` has passed since creation.
//! Most payments settle within minutes, so the growing waits keep the calls a forgotten
//! payment costs small.

use crate::PaymentStatus;
use chrono::{DateTime, Duration, Utc};

/// The schedule of checks for one open payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileSchedule {
    /// From creation to the first check.
    pub pending_after: Duration,
    /// Each wait is the previous one times this (at least 1).
    pub factor: u32,
    /// No check is due later than this after creation.
    pub give_up_after: Duration,
}

impl ReconcileSchedule {
    /// The growth factor: each wait about three times the last.
    pub const FACTOR: u32 = 3;

    /// Statuses worth asking the provider about: not settled yet.
    pub fn is_open(status: PaymentStatus) -> bool {
        matches!(
            status,
            PaymentStatus::Pending | PaymentStatus::RequiresAction | PaymentStatus::Authorized
        )
    }

    /// When a payment created at `created_at` is first due.
    pub fn first_due(&self, created_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.within_limit(created_at, created_at + self.pending_after)
    }

    /// When the check after the `checks`-th one (1 for the first) is due, counted
    /// from the previous due time; `None` once past `give_up_after`.
    pub fn due_after(&self, created_at: DateTime<Utc>, checks: u32) -> Option<DateTime<Utc>> {
        let mut due = created_at + self.pending_after;
        let mut wait = self.pending_after;
        for _ in 0..checks {
            wait = wait.checked_mul(i32::try_from(self.factor.max(1)).unwrap_or(i32::MAX))?;
            due = due.checked_add_signed(wait)?;
        }
        self.within_limit(created_at, due)
    }

    fn within_limit(&self, created_at: DateTime<Utc>, due: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (due <= created_at + self.give_up_after).then_some(due)
    }

    /// How many checks one payment that never settles costs within `window` of its
    /// creation.
    pub fn checks_within(&self, window: Duration) -> u32 {
        (0..)
            .map_while(|n| self.due_after(DateTime::<Utc>::UNIX_EPOCH, n))
            .take_while(|due| *due <= DateTime::<Utc>::UNIX_EPOCH + window)
            .count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn defaults() -> ReconcileSchedule {
        ReconcileSchedule {
            pending_after: Duration::seconds(600),
            factor: ReconcileSchedule::FACTOR,
            give_up_after: Duration::hours(168),
        }
    }

    #[test]
    fn the_first_check_comes_after_pending_after_then_each_wait_triples() {
        let created = Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap();
        let s = defaults();
        let dues: Vec<_> = (0..7).map(|n| s.due_after(created, n)).collect();
        let at = |h: u32, m: u32| Some(created + Duration::hours(h.into()) + Duration::minutes(m.into()));
        assert_eq!(s.first_due(created), at(0, 10));
        assert_eq!(
            dues,
            [
                at(0, 10),  // +10 min
                at(0, 40),  // +30 min
                at(2, 10),  // +90 min
                at(6, 40),  // +4 h 30
                at(20, 10), // +13 h 30
                at(60, 40), // +40 h 30
                None,       // +121 h 30 would pass the 168 h limit
            ]
        );
    }

    #[test]
    fn a_never_settling_payment_costs_five_checks_in_its_first_day_and_six_in_all() {
        let s = defaults();
        assert_eq!(s.checks_within(Duration::hours(24)), 5);
        assert_eq!(s.checks_within(Duration::hours(168)), 6);
        assert_eq!(s.checks_within(Duration::days(3650)), 6, "none after give_up_after");
    }

    #[test]
    fn a_limit_shorter_than_the_first_wait_means_no_check() {
        let s = ReconcileSchedule {
            give_up_after: Duration::seconds(60),
            ..defaults()
        };
        assert_eq!(s.first_due(Utc::now()), None);
        assert_eq!(s.checks_within(Duration::hours(24)), 0);
    }

    #[test]
    fn only_unsettled_payments_are_asked_about() {
        let open: Vec<_> = PaymentStatus::ALL
            .into_iter()
            .filter(|s| ReconcileSchedule::is_open(*s))
            .collect();
        assert_eq!(
            open,
            [
                PaymentStatus::Pending,
                PaymentStatus::RequiresAction,
                PaymentStatus::Authorized
            ]
        );
    }

    #[test]
    fn huge_factors_do_not_overflow() {
        let s = ReconcileSchedule {
            factor: u32::MAX,
            give_up_after: Duration::days(365_000),
            ..defaults()
        };
        assert!(s.checks_within(Duration::days(365_000)) < 10);
    }
}
