//! Plans and subscriptions: a customer pays a plan, has access until the end of the
//! period, renews or lapses. Pure, like `Payment::apply`: a change is applied to a
//! subscription without touching any store, moves the state machine forbids are
//! recorded and not applied, and every applied move is a domain event.
//!
//! Periods are counted in whole calendar units from the subscription's anchor (the
//! start of its first period): the n-th period ends n × `interval_count` units after the
//! anchor, on the anchor's day of the month, or the month's last day when it has no
//! such day. A monthly plan started on 31 January renews on 28 (29) February, then on
//! 31 March: the short month does not move the later renewals.

use crate::{Money, Provider};
use chrono::{DateTime, Duration, Months, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The unit a plan is billed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

impl Interval {
    pub const ALL: [Interval; 4] = [Self::Day, Self::Week, Self::Month, Self::Year];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
            Self::Year => "year",
        }
    }

    /// `anchor` plus `n` of these units; months and years keep the anchor's day of
    /// the month, or take the month's last day when it has none. `None` past the
    /// calendar's end.
    pub fn after(self, anchor: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
        match self {
            Self::Day => anchor.checked_add_signed(Duration::try_days(i64::from(n))?),
            Self::Week => anchor.checked_add_signed(Duration::try_weeks(i64::from(n))?),
            // chrono clamps to the month's last day: 31 Jan + 1 month = 28/29 Feb.
            Self::Month => anchor.checked_add_months(Months::new(n)),
            Self::Year => anchor.checked_add_months(Months::new(n.checked_mul(12)?)),
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Interval {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|i| i.as_str() == s)
            .ok_or_else(|| format!("unknown interval {s:?}; one of day, week, month, year"))
    }
}

crate::ids::uuid_id!(
    /// payhook's own id of a plan.
    PlanId
);

crate::ids::uuid_id!(
    /// payhook's own id of a subscription.
    SubscriptionId
);

/// What a customer subscribes to: an amount every `interval_count` × `interval`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub id: PlanId,
    /// The merchant's own name for it, unique (`pro-monthly`).
    pub code: String,
    pub name: String,
    pub amount: Money,
    pub interval: Interval,
    pub interval_count: u32,
    /// Days of free access before the first payment is due; 0: none.
    pub trial_days: u32,
    /// The Stripe Price that bills it, when it is sold through Stripe.
    pub stripe_price_id: Option<String>,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

impl Plan {
    /// The end of the `n`-th period (from 1) of a subscription anchored at `anchor`.
    pub fn period_end(&self, anchor: DateTime<Utc>, n: u32) -> Option<DateTime<Utc>> {
        self.interval.after(anchor, n.checked_mul(self.interval_count.max(1))?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// The first payment is not paid yet.
    Pending,
    Trialing,
    Active,
    /// The period is over and its renewal unpaid, within the grace time.
    PastDue,
    Canceled,
    Expired,
}

impl SubscriptionStatus {
    pub const ALL: [SubscriptionStatus; 6] = [
        Self::Pending,
        Self::Trialing,
        Self::Active,
        Self::PastDue,
        Self::Canceled,
        Self::Expired,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Expired => "expired",
        }
    }

    /// Whether a subscription in `self` may move to `to`: forward only, so the outcome
    /// does not depend on the order events arrive in. A late renewal payment brings an
    /// expired subscription back (money received); canceled is final.
    pub fn can_move_to(self, to: SubscriptionStatus) -> bool {
        use SubscriptionStatus::*;
        matches!(
            (self, to),
            (Pending, Trialing | Active | Canceled | Expired)
                | (Trialing, Active | PastDue | Canceled | Expired)
                | (Active, PastDue | Canceled | Expired)
                | (PastDue, Active | Canceled | Expired)
                | (Expired, Active)
        )
    }

    /// The status's place in a subscription's life, for ordering what a provider says
    /// within one second: a later place wins a tie.
    pub fn rank(self) -> i32 {
        match self {
            Self::Pending => 0,
            Self::Trialing => 1,
            Self::Active => 2,
            Self::PastDue => 3,
            Self::Expired => 4,
            Self::Canceled => 5,
        }
    }

    /// Whether the customer has access now.
    pub fn grants_access(self) -> bool {
        matches!(self, Self::Trialing | Self::Active | Self::PastDue)
    }

    /// The domain event of moving to this status.
    pub fn topic(self) -> Option<&'static str> {
        match self {
            Self::Active => Some("subscription.activated"),
            Self::PastDue => Some("subscription.past_due"),
            Self::Canceled => Some("subscription.canceled"),
            Self::Expired => Some("subscription.expired"),
            Self::Pending | Self::Trialing => None,
        }
    }
}

impl fmt::Display for SubscriptionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubscriptionStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown subscription status {s:?}"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub plan: Plan,
    pub provider: Provider,
    /// The Stripe Connect account, `""` for none.
    pub account: String,
    /// Stripe's subscription id; `None` where payhook runs the schedule.
    pub provider_ref: Option<String>,
    /// The merchant's id of the customer (its user id).
    pub customer_ref: String,
    pub customer_email: Option<String>,
    pub status: SubscriptionStatus,
    /// The start of the first paid period: what periods are counted from.
    pub anchor: Option<DateTime<Utc>>,
    /// Periods paid for so far (the current one included).
    pub periods: u32,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub metadata: serde_json::Value,
    /// Where the customer pays to start it, when the provider hosts a page for the
    /// subscription itself (a Stripe Checkout Session in subscription mode).
    pub checkout_url: Option<String>,
    /// The newest provider word applied (Stripe): later words older than it are stale.
    pub provider_stamp: Option<ProviderStamp>,
    /// The idempotency key of the renewal payment whose `subscription.renewal_due` was
    /// published: published once per renewal.
    pub renewal_notified: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// For optimistic concurrency, like a payment's.
    pub version: i64,
}

/// Orders what a provider says about a subscription: its event's `created` (whole
/// seconds), then, within one second, the status's place in the life of a
/// subscription ([`SubscriptionStatus::rank`]), never the order of arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProviderStamp {
    pub created: i64,
    pub rank: i32,
}

/// A subscription not stored yet (`POST /subscriptions`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewSubscription {
    pub subscription: Subscription,
    /// The caller's `Idempotency-Key` and its request's fingerprint.
    pub idempotency: Option<crate::Idempotency>,
    /// When the scheduler first looks at it.
    pub next_due_at: Option<DateTime<Utc>>,
}

/// What opening a subscription found.
#[derive(Debug, Clone, PartialEq)]
pub enum SubscriptionOpened {
    New(Subscription),
    /// The idempotency key was used before: that subscription, and the fingerprint of
    /// the request it came with.
    Existing {
        subscription: Subscription,
        fingerprint: Option<String>,
    },
}

/// `GET /subscriptions` filters, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionFilter {
    pub customer_ref: Option<String>,
    pub status: Option<SubscriptionStatus>,
    pub plan: Option<PlanId>,
    /// Only those listed after this one (the previous page's last): created, id.
    pub after: Option<(DateTime<Utc>, SubscriptionId)>,
    pub limit: u32,
}

/// A subscription's new state to store, if it is still at `expected_version`.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionSave {
    pub subscription: Subscription,
    pub expected_version: i64,
    pub history: Vec<SubscriptionHistoryEntry>,
    pub publications: Vec<crate::payment::Publication>,
    pub next_due_at: Option<DateTime<Utc>>,
}

/// What a Stripe event says about a subscription Stripe runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionSignal {
    /// Stripe's subscription id.
    pub provider_ref: String,
    /// payhook's id, from the subscription's `metadata.payhook_subscription_id`.
    pub subscription_id: Option<SubscriptionId>,
    /// Where the subscription stands, when the event says (`None`: an invoice event
    /// that only adds a payment).
    pub status: Option<SubscriptionStatus>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    /// `None`: the event does not say (an invoice).
    pub cancel_at_period_end: Option<bool>,
    /// Stripe's customer id: the `customer_ref` of a subscription payhook adopts.
    pub customer: Option<String>,
    pub customer_email: Option<String>,
    /// The price it bills, to adopt it under a plan.
    pub price: Option<SignalPrice>,
    /// The event's `created`.
    pub created: i64,
}

/// A Stripe Price as an event shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalPrice {
    pub id: String,
    pub amount: crate::Money,
    pub interval: Interval,
    pub interval_count: u32,
    pub product_name: Option<String>,
}

impl SubscriptionSignal {
    /// Where this word stands in the subscription's order of events.
    pub fn stamp(&self) -> ProviderStamp {
        ProviderStamp {
            created: self.created,
            rank: self.status.map_or(-1, SubscriptionStatus::rank),
        }
    }
}

/// What happens to a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SubscriptionChange {
    /// A payment for it was paid at `paid_at`: the first activates it (or ends its
    /// trial); a later one renews it, extending the period from the old end (an early
    /// payer loses nothing), or from `paid_at` when it had expired.
    Paid { paid_at: DateTime<Utc> },
    /// A trial starts now (a plan with trial days, no payment due yet).
    StartTrial,
    /// The period ended unpaid: `past_due` (access kept through the grace time).
    PeriodLapsed,
    /// The grace time ended unpaid: `expired`.
    GraceOver,
    /// The merchant cancels: now, or at the end of the paid period.
    Cancel { at_period_end: bool },
    /// A cancellation at period end comes due.
    PeriodEndedCanceled,
    /// A subscription payment was refunded in full: the period it paid for is no
    /// longer paid, so access ends now (`expired`), not silently at the period's end.
    PaymentRefunded,
    /// The provider runs the subscription (Stripe) and says where it stands, as of
    /// `stamp`: a word older than the newest applied is recorded, not applied.
    ProviderSays {
        stamp: ProviderStamp,
        status: SubscriptionStatus,
        period_start: Option<DateTime<Utc>>,
        period_end: Option<DateTime<Utc>>,
        /// `None`: the word does not say (an invoice).
        cancel_at_period_end: Option<bool>,
    },
}

/// One move, applied or not, for `subscription_history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionHistoryEntry {
    pub from_status: SubscriptionStatus,
    pub to_status: SubscriptionStatus,
    pub applied: bool,
    /// What caused it: an event id, `renewal`, `scheduler`, `canceled_by_merchant`…
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// What applying a change did.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionApplication {
    pub subscription: Subscription,
    pub history: Vec<SubscriptionHistoryEntry>,
    pub publications: Vec<crate::payment::Publication>,
    /// Whether anything changed.
    pub applied: bool,
}

impl Subscription {
    /// Applies `change` (for `reason`) at `at`, without touching any store.
    pub fn apply(&self, change: &SubscriptionChange, reason: &str, at: DateTime<Utc>) -> SubscriptionApplication {
        let mut next = self.clone();
        let mut steps = Steps {
            reason,
            at,
            history: Vec::new(),
            publications: Vec::new(),
        };
        match change {
            SubscriptionChange::Paid { paid_at } => steps.paid(&mut next, *paid_at),
            SubscriptionChange::StartTrial => {
                if steps.moved(&mut next, SubscriptionStatus::Trialing) {
                    let trial = Duration::try_days(i64::from(next.plan.trial_days)).unwrap_or_default();
                    next.current_period_start = Some(at);
                    next.current_period_end = Some(at + trial);
                }
            }
            SubscriptionChange::PeriodLapsed => {
                let due = next.current_period_end.is_some_and(|end| end <= at);
                if due {
                    steps.moved(&mut next, SubscriptionStatus::PastDue);
                } else {
                    steps.refused(&next, SubscriptionStatus::PastDue, "the period has not ended");
                }
            }
            SubscriptionChange::GraceOver => {
                steps.moved(&mut next, SubscriptionStatus::Expired);
            }
            SubscriptionChange::Cancel { at_period_end } => {
                let paid_period_left = next.status.grants_access() && next.current_period_end.is_some_and(|e| e > at);
                if *at_period_end && paid_period_left {
                    if !next.cancel_at_period_end && next.status != SubscriptionStatus::Canceled {
                        next.cancel_at_period_end = true;
                        steps.record(next.status, next.status, true, "cancel_at_period_end");
                    }
                } else if steps.moved(&mut next, SubscriptionStatus::Canceled) {
                    next.canceled_at = Some(at);
                }
            }
            SubscriptionChange::PeriodEndedCanceled => {
                if next.cancel_at_period_end && next.current_period_end.is_some_and(|end| end <= at) {
                    if steps.moved(&mut next, SubscriptionStatus::Canceled) {
                        next.canceled_at = Some(at);
                    }
                } else {
                    steps.refused(&next, SubscriptionStatus::Canceled, "no cancellation is due");
                }
            }
            SubscriptionChange::PaymentRefunded => {
                if steps.moved(&mut next, SubscriptionStatus::Expired) {
                    next.current_period_end = Some(at);
                }
            }
            SubscriptionChange::ProviderSays {
                stamp,
                status,
                period_start,
                period_end,
                cancel_at_period_end,
            } => {
                let from = next.status;
                if next.provider_stamp.is_some_and(|held| *stamp <= held) {
                    steps.refused(&next, *status, "older than what the provider said before");
                    return steps.done(next);
                }
                next.provider_stamp = Some(*stamp);
                // A move the state machine refuses (a late `incomplete` after `active`)
                // is recorded and changes nothing else.
                if *status == from || steps.moved(&mut next, *status) {
                    if let Some(end) = *period_end {
                        if next.current_period_end.is_none_or(|held| end > held) {
                            let renewed = next.current_period_end.is_some()
                                && from == *status
                                && *status == SubscriptionStatus::Active;
                            next.anchor = next.anchor.or(*period_start);
                            next.current_period_start = period_start.or(next.current_period_start);
                            next.current_period_end = Some(end);
                            if renewed {
                                next.periods += 1;
                                steps.record(from, from, true, "renewed");
                                steps.publish(&next, "subscription.renewed");
                            } else if next.periods == 0 && next.status.grants_access() {
                                next.periods = 1;
                            }
                        }
                    }
                    let cancel = cancel_at_period_end.unwrap_or(next.cancel_at_period_end);
                    if next.cancel_at_period_end != cancel && next.status != SubscriptionStatus::Canceled {
                        next.cancel_at_period_end = cancel;
                        steps.record(next.status, next.status, true, "cancel_at_period_end");
                    }
                }
            }
        }
        steps.done(next)
    }

    /// The domain event payload of this subscription.
    pub fn event_payload(&self) -> serde_json::Value {
        serde_json::json!({
            "subscription_id": self.id,
            "plan": self.plan.code,
            "provider": self.provider,
            "customer_ref": self.customer_ref,
            "status": self.status,
            "current_period_start": self.current_period_start,
            "current_period_end": self.current_period_end,
            "cancel_at_period_end": self.cancel_at_period_end,
        })
    }
}

struct Steps<'a> {
    reason: &'a str,
    at: DateTime<Utc>,
    history: Vec<SubscriptionHistoryEntry>,
    publications: Vec<crate::payment::Publication>,
}

impl Steps<'_> {
    fn done(self, mut next: Subscription) -> SubscriptionApplication {
        let applied = self.history.iter().any(|h| h.applied);
        if applied {
            next.updated_at = self.at;
        }
        SubscriptionApplication {
            subscription: next,
            history: self.history,
            publications: self.publications,
            applied,
        }
    }

    fn record(&mut self, from: SubscriptionStatus, to: SubscriptionStatus, applied: bool, why: &str) {
        let reason = if why.is_empty() || why == self.reason {
            self.reason.to_owned()
        } else {
            format!("{} ({why})", self.reason)
        };
        self.history.push(SubscriptionHistoryEntry {
            from_status: from,
            to_status: to,
            applied,
            reason,
            at: self.at,
        });
    }

    fn refused(&mut self, s: &Subscription, to: SubscriptionStatus, why: &str) {
        self.record(s.status, to, false, why);
    }

    fn publish(&mut self, s: &Subscription, topic: &str) {
        self.publications.push(crate::payment::Publication {
            topic: topic.to_owned(),
            payload: s.event_payload(),
        });
    }

    /// Moves `s` to `to` when the state machine allows it (recording either way);
    /// `true` when it moved.
    fn moved(&mut self, s: &mut Subscription, to: SubscriptionStatus) -> bool {
        let from = s.status;
        if from == to {
            return false;
        }
        let applied = from.can_move_to(to);
        if applied {
            s.status = to;
        }
        self.record(from, to, applied, "");
        if applied {
            if let Some(topic) = to.topic() {
                self.publish(s, topic);
            }
        }
        applied
    }

    /// A payment for the subscription was paid.
    fn paid(&mut self, s: &mut Subscription, paid_at: DateTime<Utc>) {
        let from = s.status;
        match from {
            SubscriptionStatus::Canceled => self.refused(s, SubscriptionStatus::Active, "canceled is final"),
            // The first payment: the first period starts now; paid during a trial, it
            // starts when the trial ends (the trial's days are not lost).
            SubscriptionStatus::Pending | SubscriptionStatus::Trialing => {
                let start = match (from, s.current_period_end) {
                    (SubscriptionStatus::Trialing, Some(trial_end)) => trial_end.max(paid_at),
                    _ => paid_at,
                };
                s.anchor = Some(start);
                s.periods = 1;
                s.current_period_start = Some(start);
                s.current_period_end = s.plan.period_end(start, 1);
                self.moved(s, SubscriptionStatus::Active);
            }
            // A renewal: the next period follows the paid one, whenever it was paid.
            SubscriptionStatus::Active | SubscriptionStatus::PastDue => {
                let anchor = s.anchor.unwrap_or(paid_at);
                s.periods += 1;
                s.current_period_start = s.current_period_end.or(Some(paid_at));
                s.current_period_end = s.plan.period_end(anchor, s.periods);
                if from == SubscriptionStatus::PastDue {
                    self.moved(s, SubscriptionStatus::Active);
                } else {
                    self.record(from, from, true, "renewed");
                }
                self.publish(s, "subscription.renewed");
            }
            // Paid after it expired: it starts again from the payment.
            SubscriptionStatus::Expired => {
                s.anchor = Some(paid_at);
                s.periods = 1;
                s.current_period_start = Some(paid_at);
                s.current_period_end = s.plan.period_end(paid_at, 1);
                s.cancel_at_period_end = false;
                self.moved(s, SubscriptionStatus::Active);
            }
        }
    }
}

#[cfg(test)]
#[path = "subscription_tests.rs"]
mod tests;
