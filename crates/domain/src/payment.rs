//! The payment aggregate and the pure function that applies one event to it.
//! Stores persist the result (`EventApplication`) in one transaction; they never decide.

use crate::{
    Currency, DisputeStatus, EventId, Money, PaymentChange, PaymentId, PaymentStatus, ProcessingResult, Provider,
    WebhookEvent,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub id: PaymentId,
    pub provider: Provider,
    /// The Stripe Connect account it belongs to (`acct_…`), `""` for the platform's
    /// own and for providers without accounts: its `provider_ref` is unique within it.
    pub account: String,
    pub provider_ref: Option<String>,
    pub merchant_ref: Option<String>,
    pub amount: Money,
    pub status: PaymentStatus,
    pub paid_amount: i64,
    pub refunded_amount: i64,
    pub dispute_status: Option<DisputeStatus>,
    pub checkout_url: Option<String>,
    pub qr_text: Option<String>,
    pub customer_email: Option<String>,
    pub description: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    /// When the provider stops accepting payment for it, if it said.
    pub expires_at: Option<DateTime<Utc>>,
    /// Why creating it at the provider failed, for a payment that never got there.
    pub failure_reason: Option<String>,
    /// See `Checkout::extras`.
    pub checkout_extras: Option<serde_json::Value>,
    /// The subscription it pays for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<crate::SubscriptionId>,
    /// Optimistic-concurrency counter: a store refuses to commit an application
    /// computed from an older version. Stored payments start at 1;
    /// [`Payment::UNSTORED`] marks one not stored yet.
    pub version: i64,
}

/// A payment to insert. A store that already has `(provider, provider_ref)` returns
/// the existing row instead, so two workers racing to create it agree on one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewPayment {
    pub id: PaymentId,
    pub provider: Provider,
    /// See [`Payment::account`].
    pub account: String,
    pub provider_ref: Option<String>,
    pub merchant_ref: Option<String>,
    pub amount: Money,
    pub customer_email: Option<String>,
    pub description: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// SHA-256 (hex) of the token that lets a customer's browser follow the payment.
    pub client_token_hash: Option<String>,
    /// SHA-256 (hex) of the token in the provider's callback URL (QPay, JunglePay).
    pub callback_token_hash: Option<String>,
    pub idempotency: Option<Idempotency>,
    /// When to check it with its provider first, if its callback has not come by then
    /// (see [`crate::ReconcileSchedule`]); `None`: never.
    pub next_reconcile_at: Option<DateTime<Utc>>,
}

/// A caller's `Idempotency-Key` and the fingerprint of the request it first came with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

/// SHA-256 (hex) hashes of a payment's tokens; the tokens themselves are never stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenHashes {
    pub client: Option<String>,
    pub callback: Option<String>,
}

/// What opening a payment found.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// A new payment row, not yet known to the provider.
    New(Payment),
    /// The payment an earlier request with the same idempotency key opened, and that
    /// request's fingerprint.
    Existing { payment: Payment, fingerprint: String },
}

/// Why a payment whose creation was interrupted (payhook stopped between asking the
/// provider and recording its answer) failed: the provider had no payment for it. It
/// is the history reason and, on an idempotent replay, the error's message prefix.
pub const CREATION_INTERRUPTED: &str = "creation_interrupted";

impl Payment {
    /// Opened through the API and still waiting for the provider's answer.
    pub fn is_being_created(&self) -> bool {
        self.status == PaymentStatus::Pending && self.provider_ref.is_none() && self.failure_reason.is_none()
    }
}

/// One row of `payment_status_history`: every status decision, applied or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub from_status: PaymentStatus,
    pub to_status: PaymentStatus,
    pub applied: bool,
    pub event_id: Option<EventId>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

/// A domain event for the outbox (`payment.paid`, `payment.refunded`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publication {
    pub topic: String,
    pub payload: serde_json::Value,
}

/// The outcome of applying one event: the payment's next state and what to record.
#[derive(Debug, Clone, PartialEq)]
pub struct EventApplication {
    pub payment: Payment,
    /// Provider ids to remember for this payment (see `PaymentRef::aliases`).
    pub aliases: Vec<String>,
    pub history: Vec<HistoryEntry>,
    pub publications: Vec<Publication>,
    pub result: ProcessingResult,
    /// The provider's object the event carried, for the Stripe mirror: written in the
    /// same transaction, whatever the payment's result.
    pub mirror: Option<Box<crate::MirrorWrite>>,
    /// When it was computed (the clock's time given to [`Payment::apply`]): the
    /// store records the event processed and its domain events created at this time.
    pub at: DateTime<Utc>,
}

impl Payment {
    /// The version of a payment not stored yet: committing an application to it
    /// inserts it, unless a payment with its `(provider, provider_ref)` was stored
    /// meanwhile (then the application is stale, like any computed from an old read).
    pub const UNSTORED: i64 = 0;

    /// The payment `new` describes as it stands before anything happened to it, not
    /// stored yet: so a payment payhook learns of from its first event is written once,
    /// with that event applied, instead of inserted and then updated. `new`'s token
    /// hashes and idempotency key are not part of a `Payment`: this is for payments
    /// learned of from a provider's event, which have none.
    pub fn unstored(new: NewPayment) -> Payment {
        Payment {
            account: new.account,
            id: new.id,
            provider: new.provider,
            provider_ref: new.provider_ref,
            merchant_ref: new.merchant_ref,
            amount: new.amount,
            status: PaymentStatus::Pending,
            paid_amount: 0,
            refunded_amount: 0,
            dispute_status: None,
            checkout_url: None,
            qr_text: None,
            customer_email: new.customer_email,
            description: new.description,
            metadata: new.metadata,
            created_at: new.created_at,
            updated_at: new.created_at,
            paid_at: None,
            expires_at: None,
            failure_reason: None,
            checkout_extras: None,
            subscription_id: None,
            version: Self::UNSTORED,
        }
    }

    /// Applies `event` to this payment without touching any store. Moves that the
    /// state machine forbids are recorded in history as not applied and give
    /// `stale_transition`; the payment is then unchanged.
    pub fn apply(&self, event: &WebhookEvent, at: DateTime<Utc>) -> EventApplication {
        let mut next = self.clone();
        let mut steps = Steps {
            event,
            at,
            history: Vec::new(),
            publications: Vec::new(),
        };
        match &event.change {
            PaymentChange::Status { to, paid_amount } => {
                steps.move_status(&mut next, *to, *paid_amount);
            }
            PaymentChange::Refund {
                refunded_total,
                currency,
            } => {
                if steps.same_currency(&next, *currency) {
                    steps.refund(&mut next, *refunded_total);
                }
            }
            PaymentChange::Dispute { status, .. } => steps.dispute(&mut next, *status),
            PaymentChange::RefundUpdate { refund } => {
                // Applied alone (no refunds store settled it first): a succeeded
                // refund is a lower bound of the total refunded, like a single amount.
                if let crate::RefundReport::One {
                    amount,
                    currency,
                    status: crate::RefundStatus::Succeeded,
                    ..
                } = refund
                {
                    if steps.same_currency(&next, *currency) {
                        steps.refund(&mut next, *amount);
                    }
                }
            }
            PaymentChange::Capture { amount, currency } => {
                if steps.same_currency(&next, *currency) {
                    steps.capture(&mut next, *amount);
                }
            }
            PaymentChange::Nothing => {}
        }
        let applied = steps.history.iter().any(|h| h.applied);
        if applied {
            next.updated_at = at;
        }
        EventApplication {
            payment: next,
            aliases: self.aliases_from(event),
            history: steps.history,
            publications: steps.publications,
            mirror: event.mirror.clone(),
            at,
            result: if applied {
                ProcessingResult::Applied
            } else {
                ProcessingResult::StaleTransition
            },
        }
    }

    /// The provider's other ids for this payment that `event` teaches. An event that
    /// names the payment by payhook's own id and by a provider id the payment is not
    /// stored under (a Stripe Checkout Session's payment, stored under the session's
    /// id, and its PaymentIntent's events) adds that id, so later events naming only
    /// it (a refund, a dispute) find the payment.
    fn aliases_from(&self, event: &WebhookEvent) -> Vec<String> {
        let mut aliases = event.payment.aliases.clone();
        if let Some(reference) = &event.payment.provider_ref {
            if event.payment.payment_id == Some(self.id)
                && self.provider_ref.as_ref() != Some(reference)
                && !aliases.contains(reference)
            {
                aliases.push(reference.clone());
            }
        }
        aliases
    }

    fn received_or_requested(&self) -> i64 {
        if self.paid_amount > 0 {
            self.paid_amount
        } else {
            self.amount.amount_minor()
        }
    }
}

struct Steps<'a> {
    event: &'a WebhookEvent,
    at: DateTime<Utc>,
    history: Vec<HistoryEntry>,
    publications: Vec<Publication>,
}

impl Steps<'_> {
    fn move_status(&mut self, p: &mut Payment, to: PaymentStatus, paid_amount: Option<i64>) -> bool {
        let from = p.status;
        let restated = from == to && paid_amount.is_none_or(|paid| to != PaymentStatus::Paid || paid == p.paid_amount);
        if restated {
            // The state the payment already holds, said again: a provider's callback
            // and the reconciler's finding about the same payment, whichever came
            // second, or two event types meaning the same. Nothing changed, so the
            // history, which keeps changes, gets no entry (the inbox keeps the event).
            return false;
        }
        if let (PaymentStatus::Paid, Some(paid)) = (to, paid_amount) {
            if paid < p.amount.amount_minor() {
                // Less than asked for is not paid: recorded, and the payment stays as it is.
                let reason = format!(
                    "{} (partial payment: {paid} of {})",
                    self.event.event_type,
                    p.amount.amount_minor()
                );
                self.record(p, from, to, false, reason);
                return false;
            }
        }
        let applied = from.can_move_to(to);
        if applied {
            p.status = to;
            if to == PaymentStatus::Paid {
                p.paid_amount = paid_amount.unwrap_or(p.amount.amount_minor());
                p.paid_at = Some(self.at);
            }
        }
        self.record(p, from, to, applied, self.event.event_type.clone());
        applied
    }

    /// Money in another currency than the payment's is not this payment's money: the
    /// event is recorded, not applied.
    fn same_currency(&mut self, p: &Payment, currency: Currency) -> bool {
        if currency == p.amount.currency() {
            return true;
        }
        let reason = format!(
            "{} (in {currency}, but the payment is in {}: not applied)",
            self.event.event_type,
            p.amount.currency()
        );
        self.record(p, p.status, p.status, false, reason);
        false
    }

    /// A capture of held funds: paid, for what was captured, however much less than
    /// the amount that is (the merchant's choice).
    fn capture(&mut self, p: &mut Payment, amount: i64) {
        let from = p.status;
        if amount <= 0 || amount > p.amount.amount_minor() {
            let reason = format!(
                "{} (capture of {amount} for a payment of {}: not applied)",
                self.event.event_type,
                p.amount.amount_minor()
            );
            self.record(p, from, PaymentStatus::Paid, false, reason);
            return;
        }
        if from == PaymentStatus::Paid && p.paid_amount == amount {
            return; // said again
        }
        let applied = from.can_move_to(PaymentStatus::Paid);
        if applied {
            p.status = PaymentStatus::Paid;
            p.paid_amount = amount;
            p.paid_at = Some(self.at);
        }
        let reason = if amount < p.amount.amount_minor() {
            format!(
                "{} (captured {amount} of {})",
                self.event.event_type,
                p.amount.amount_minor()
            )
        } else {
            self.event.event_type.clone()
        };
        self.record(p, from, PaymentStatus::Paid, applied, reason);
    }

    fn refund(&mut self, p: &mut Payment, refunded_total: i64) {
        if refunded_total == p.refunded_amount && p.status.is_settled() {
            // The total already held, said again (a refund's event after the total it
            // made, a finding; or a refund of 0 on a payment with none): nothing
            // changed, so no history.
            return;
        }
        if refunded_total <= 0 {
            // A refund of nothing moves no money and proves nothing.
            let reason = format!("{} (refund of {refunded_total}: not applied)", self.event.event_type);
            self.record(p, p.status, p.status, false, reason);
            return;
        }
        let total = refunded_total.max(p.refunded_amount);
        if total <= p.refunded_amount && p.status.is_settled() && p.refunded_amount > 0 {
            // Nothing new: an older, smaller figure.
            self.record(p, p.status, p.status, false, self.event.event_type.clone());
            return;
        }
        if !self.settle_implied(p) {
            return;
        }
        let to = if total >= p.received_or_requested() {
            PaymentStatus::Refunded
        } else {
            PaymentStatus::PartiallyRefunded
        };
        let from = p.status;
        let applied = from.can_move_to(to);
        if applied {
            p.status = to;
            p.refunded_amount = total;
        }
        self.record(p, from, to, applied, self.event.event_type.clone());
    }

    /// A refund or a dispute proves the money was received, even if the `paid` event
    /// is late: settle first so the outcome does not depend on delivery order. `false`
    /// when the payment can no longer become paid (recorded as not applied).
    fn settle_implied(&mut self, p: &mut Payment) -> bool {
        if p.status.is_settled() {
            return true;
        }
        let implied = format!("{} (implies paid)", self.event.event_type);
        let from = p.status;
        if !from.can_move_to(PaymentStatus::Paid) {
            self.record(p, from, PaymentStatus::Paid, false, implied);
            return false;
        }
        p.status = PaymentStatus::Paid;
        p.paid_amount = p.amount.amount_minor();
        p.paid_at = Some(self.at);
        self.record(p, from, PaymentStatus::Paid, true, implied);
        true
    }

    fn dispute(&mut self, p: &mut Payment, to: DisputeStatus) {
        // Only a captured payment can be disputed. The dispute is tracked even where
        // the payment can no longer become paid: the merchant must hear of it.
        self.settle_implied(p);
        let applied = DisputeStatus::can_move_to(p.dispute_status, to);
        if applied {
            p.dispute_status = Some(to);
        }
        let reason = format!("{} (dispute {})", self.event.event_type, to.as_str());
        self.history.push(HistoryEntry {
            from_status: p.status,
            to_status: p.status,
            applied,
            event_id: Some(self.event.event_id.clone()),
            reason,
            at: self.at,
        });
        if applied {
            self.publish(p, &format!("payment.dispute_{}", to.as_str()), p.status);
        }
    }

    fn record(&mut self, p: &Payment, from: PaymentStatus, to: PaymentStatus, applied: bool, reason: String) {
        self.history.push(HistoryEntry {
            from_status: from,
            to_status: to,
            applied,
            event_id: Some(self.event.event_id.clone()),
            reason,
            at: self.at,
        });
        if applied {
            self.publish(p, &format!("payment.{}", to.as_str()), from);
        }
    }

    fn publish(&mut self, p: &Payment, topic: &str, previous: PaymentStatus) {
        self.publications.push(Publication {
            topic: topic.to_owned(),
            payload: serde_json::json!({
                "payment_id": p.id,
                "provider": p.provider,
                "provider_ref": p.provider_ref,
                "merchant_ref": p.merchant_ref,
                "status": p.status,
                "previous_status": previous,
                "dispute_status": p.dispute_status,
                "amount": p.amount.amount_minor(),
                "currency": p.amount.currency(),
                "paid_amount": p.paid_amount,
                "refunded_amount": p.refunded_amount,
                "event_id": self.event.event_id,
                "at": self.at,
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Currency, PaymentRef};
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0).single().unwrap()
    }

    fn payment(status: PaymentStatus) -> Payment {
        let usd = Currency::parse("USD").unwrap();
        Payment {
            account: String::new(),
            id: PaymentId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap(),
            provider: Provider::Stripe,
            provider_ref: Some("pi_1".into()),
            merchant_ref: None,
            amount: Money::new(1000, usd).unwrap(),
            status,
            paid_amount: if status.is_settled() { 1000 } else { 0 },
            refunded_amount: 0,
            dispute_status: None,
            checkout_url: None,
            qr_text: None,
            customer_email: None,
            description: None,
            metadata: serde_json::json!({}),
            created_at: at(0),
            updated_at: at(0),
            paid_at: None,
            expires_at: None,
            failure_reason: None,
            checkout_extras: None,
            subscription_id: None,
            version: 1,
        }
    }

    fn event(id: &str, change: PaymentChange) -> WebhookEvent {
        WebhookEvent {
            mirror: None,
            subscription: None,
            provider: Provider::Stripe,
            event_id: EventId::parse(id).unwrap(),
            event_type: "test.event".into(),
            occurred_at: at(0),
            payment: PaymentRef {
                account: None,
                payment_id: None,
                provider_ref: Some("pi_1".into()),
                aliases: Vec::new(),
            },
            change,
            details: None,
            confirm_with_provider: false,
        }
    }

    fn refund(total: i64) -> PaymentChange {
        PaymentChange::Refund {
            refunded_total: total,
            currency: Currency::parse("USD").unwrap(),
        }
    }

    #[test]
    fn paid_event_moves_pending_to_paid_with_one_history_row_and_publication() {
        let app = payment(PaymentStatus::Pending).apply(&event("e1", PaymentChange::paid(Some(1000))), at(5));
        assert_eq!(app.result, ProcessingResult::Applied);
        assert_eq!(app.payment.status, PaymentStatus::Paid);
        assert_eq!(app.payment.paid_amount, 1000);
        assert_eq!(app.payment.paid_at, Some(at(5)));
        assert_eq!(app.history.len(), 1);
        assert!(app.history[0].applied);
        assert_eq!(app.publications.len(), 1);
        assert_eq!(app.publications[0].topic, "payment.paid");
    }

    #[test]
    fn the_state_already_held_said_again_leaves_no_history() {
        let paid = payment(PaymentStatus::Pending)
            .apply(&event("callback", PaymentChange::paid(Some(1000))), at(5))
            .payment;
        for again in [PaymentChange::paid(Some(1000)), PaymentChange::paid(None)] {
            let app = paid.apply(&event("finding", again), at(6));
            assert!(app.history.is_empty(), "{:?}", app.history);
            assert!(app.publications.is_empty());
            assert_eq!(app.result, ProcessingResult::StaleTransition);
            assert_eq!(app.payment, paid);
        }
        let pending = payment(PaymentStatus::Pending);
        let still = pending.apply(
            &event(
                "pending",
                PaymentChange::Status {
                    to: PaymentStatus::Pending,
                    paid_amount: None,
                },
            ),
            at(6),
        );
        assert!(still.history.is_empty());
        // A different figure is not a restatement: recorded, not applied.
        let partial = paid.apply(&event("partial", PaymentChange::paid(Some(400))), at(7));
        assert_eq!(partial.history.len(), 1);
        assert!(!partial.history[0].applied);
    }

    fn capture(amount: i64, currency: &str) -> PaymentChange {
        PaymentChange::Capture {
            amount,
            currency: Currency::parse(currency).unwrap(),
        }
    }

    /// Held funds are not money received: authorized, never paid until captured; a
    /// late authorization does not un-pay a captured payment.
    #[test]
    fn held_funds_are_authorized_then_paid_by_their_capture() {
        let held = payment(PaymentStatus::Pending)
            .apply(&event("held", PaymentChange::status(PaymentStatus::Authorized)), at(1));
        assert_eq!(held.payment.status, PaymentStatus::Authorized);
        assert_eq!(held.payment.paid_amount, 0);
        assert_eq!(held.publications[0].topic, "payment.authorized");
        let captured = held.payment.apply(&event("captured", capture(1000, "USD")), at(2));
        assert_eq!(captured.payment.status, PaymentStatus::Paid);
        assert_eq!(captured.payment.paid_amount, 1000);
        let late = captured
            .payment
            .apply(&event("late", PaymentChange::status(PaymentStatus::Authorized)), at(3));
        assert_eq!(late.result, ProcessingResult::StaleTransition);
        assert_eq!(late.payment.status, PaymentStatus::Paid);
    }

    /// A partial capture is paid for what was captured; a customer paying less than
    /// asked is not.
    #[test]
    fn a_partial_capture_is_paid_for_what_was_captured() {
        let held = payment(PaymentStatus::Authorized);
        let app = held.apply(&event("captured", capture(600, "USD")), at(2));
        assert_eq!(app.result, ProcessingResult::Applied);
        assert_eq!(
            (app.payment.status, app.payment.paid_amount),
            (PaymentStatus::Paid, 600)
        );
        assert!(
            app.history[0].reason.contains("captured 600 of 1000"),
            "{:?}",
            app.history
        );
        let underpaid = payment(PaymentStatus::Pending).apply(&event("short", PaymentChange::paid(Some(600))), at(2));
        assert_eq!(underpaid.payment.status, PaymentStatus::Pending);
        // A refund after a partial capture refunds the captured amount in full.
        let refunded = app.payment.apply(&event("refund", refund(600)), at(3));
        assert_eq!(refunded.payment.status, PaymentStatus::Refunded);
        for nonsense in [0, -5, 1001] {
            let app = held.apply(&event("odd", capture(nonsense, "USD")), at(2));
            assert_eq!(app.result, ProcessingResult::StaleTransition, "{nonsense}");
            assert_eq!(app.payment, held);
        }
    }

    /// A payment stored under one provider id (a Checkout Session) and found by
    /// payhook's id in an event naming another (its PaymentIntent) learns that id.
    #[test]
    fn an_event_naming_the_payment_by_another_provider_id_teaches_it() {
        let mut session = payment(PaymentStatus::Pending);
        session.provider_ref = Some("cs_1".into());
        let mut paid = event("e1", PaymentChange::paid(Some(1000)));
        paid.payment.payment_id = Some(session.id);
        assert_eq!(session.apply(&paid, at(1)).aliases, vec!["pi_1".to_owned()]);
        let same = payment(PaymentStatus::Pending);
        paid.payment.payment_id = Some(same.id);
        assert!(same.apply(&paid, at(1)).aliases.is_empty(), "already its id");
        paid.payment.payment_id = None;
        assert!(
            session.apply(&paid, at(1)).aliases.is_empty(),
            "found by that id: nothing to learn"
        );
    }

    /// A provider's answer that a held payment was captured for less is a capture.
    #[test]
    fn a_captured_answer_from_the_provider_is_a_capture() {
        let held = payment(PaymentStatus::Authorized);
        let found = crate::ProviderPaymentStatus {
            captured: true,
            ..crate::ProviderPaymentStatus::new(PaymentStatus::Paid, Some(600))
        };
        assert_eq!(found.change_for(&held), capture(600, "USD"));
        let uncaptured = crate::ProviderPaymentStatus::new(PaymentStatus::Paid, Some(600));
        assert_eq!(uncaptured.change_for(&held), PaymentChange::paid(Some(600)));
    }

    /// Money in another currency is recorded, not applied, for refunds and captures.
    #[test]
    fn refunds_and_captures_in_another_currency_are_recorded_not_applied() {
        let paid = payment(PaymentStatus::Paid);
        let eur_refund = PaymentChange::Refund {
            refunded_total: 500,
            currency: Currency::parse("EUR").unwrap(),
        };
        let app = paid.apply(&event("eur", eur_refund), at(2));
        assert_eq!(app.result, ProcessingResult::StaleTransition);
        assert_eq!(app.payment, paid);
        assert_eq!(app.history.len(), 1);
        assert!(!app.history[0].applied);
        assert!(
            app.history[0].reason.contains("in EUR, but the payment is in USD"),
            "{:?}",
            app.history
        );
        let held = payment(PaymentStatus::Authorized);
        let app = held.apply(&event("eur", capture(1000, "EUR")), at(2));
        assert_eq!(app.payment, held);
        assert!(!app.history[0].applied);
    }

    /// A refund of nothing changes nothing (it used to make a payment partially refunded).
    #[test]
    fn a_zero_refund_changes_nothing() {
        let paid = payment(PaymentStatus::Paid);
        let app = paid.apply(&event("zero", refund(0)), at(2));
        assert_eq!(app.result, ProcessingResult::StaleTransition);
        assert_eq!(app.payment, paid);
        assert!(app.publications.is_empty());
        let pending = payment(PaymentStatus::Pending);
        assert_eq!(
            pending.apply(&event("zero", refund(0)), at(2)).payment,
            pending,
            "nor implies paid"
        );
    }

    #[test]
    fn late_failure_does_not_regress_paid_payment() {
        let paid = payment(PaymentStatus::Paid);
        let app = paid.apply(&event("e2", PaymentChange::status(PaymentStatus::Failed)), at(5));
        assert_eq!(app.result, ProcessingResult::StaleTransition);
        assert_eq!(app.payment, paid, "a stale event must leave the payment untouched");
        assert_eq!(app.history.len(), 1);
        assert!(!app.history[0].applied);
        assert!(app.publications.is_empty());
    }

    #[test]
    fn order_of_success_and_failure_does_not_change_the_outcome() {
        let p = payment(PaymentStatus::Pending);
        let success = event("s", PaymentChange::paid(None));
        let failure = event("f", PaymentChange::status(PaymentStatus::Failed));
        let a = p.apply(&success, at(1)).payment.apply(&failure, at(2)).payment;
        let b = p.apply(&failure, at(1)).payment.apply(&success, at(2)).payment;
        assert_eq!(a.status, PaymentStatus::Paid);
        assert_eq!(b.status, PaymentStatus::Paid);
    }

    #[test]
    fn partial_then_full_refund() {
        let p = payment(PaymentStatus::Paid);
        let partial = p.apply(&event("r1", refund(300)), at(1));
        assert_eq!(partial.payment.status, PaymentStatus::PartiallyRefunded);
        assert_eq!(partial.payment.refunded_amount, 300);
        let full = partial.payment.apply(&event("r2", refund(1000)), at(2));
        assert_eq!(full.payment.status, PaymentStatus::Refunded);
        assert_eq!(full.payment.refunded_amount, 1000);
    }

    #[test]
    fn an_older_smaller_refund_figure_never_lowers_the_refunded_amount() {
        let p = payment(PaymentStatus::Paid);
        let after = p.apply(&event("r2", refund(600)), at(1)).payment;
        let app = after.apply(&event("r1", refund(300)), at(2));
        assert_eq!(app.result, ProcessingResult::StaleTransition);
        assert_eq!(app.payment.refunded_amount, 600);
    }

    #[test]
    fn refund_before_paid_settles_the_payment_first() {
        let app = payment(PaymentStatus::Pending).apply(&event("r", refund(1000)), at(1));
        assert_eq!(app.payment.status, PaymentStatus::Refunded);
        let moves: Vec<_> = app
            .history
            .iter()
            .map(|h| (h.from_status, h.to_status, h.applied))
            .collect();
        assert_eq!(
            moves,
            vec![
                (PaymentStatus::Pending, PaymentStatus::Paid, true),
                (PaymentStatus::Paid, PaymentStatus::Refunded, true)
            ]
        );
        // A late `paid` afterwards changes nothing.
        let late = app.payment.apply(&event("p", PaymentChange::paid(None)), at(2));
        assert_eq!(late.result, ProcessingResult::StaleTransition);
        assert_eq!(late.payment.status, PaymentStatus::Refunded);
    }

    #[test]
    fn a_partial_payment_is_recorded_but_not_paid() {
        let app = payment(PaymentStatus::Pending).apply(&event("p", PaymentChange::paid(Some(400))), at(1));
        assert_eq!(app.result, ProcessingResult::StaleTransition);
        assert_eq!(app.payment.status, PaymentStatus::Pending);
        assert_eq!(app.payment.paid_amount, 0);
        assert!(!app.history[0].applied);
        assert!(
            app.history[0].reason.contains("partial payment: 400 of 1000"),
            "{}",
            app.history[0].reason
        );
        let full = app.payment.apply(&event("f", PaymentChange::paid(Some(1000))), at(2));
        assert_eq!(full.payment.status, PaymentStatus::Paid);
    }

    #[test]
    fn dispute_before_paid_settles_the_payment_first() {
        let lost = PaymentChange::Dispute {
            status: DisputeStatus::Lost,
            detail: None,
        };
        let app = payment(PaymentStatus::Pending).apply(&event("d", lost.clone()), at(1));
        assert_eq!(app.result, ProcessingResult::Applied);
        assert_eq!(
            (app.payment.status, app.payment.dispute_status, app.payment.paid_amount),
            (PaymentStatus::Paid, Some(DisputeStatus::Lost), 1000)
        );
        let topics: Vec<_> = app.publications.iter().map(|p| p.topic.as_str()).collect();
        assert_eq!(topics, ["payment.paid", "payment.dispute_lost"]);
        // The other order ends the same: the outcome does not depend on delivery order.
        let paid_first = payment(PaymentStatus::Pending)
            .apply(&event("p", PaymentChange::paid(None)), at(1))
            .payment
            .apply(&event("d", lost.clone()), at(2));
        assert_eq!(
            (paid_first.payment.status, paid_first.payment.dispute_status),
            (app.payment.status, app.payment.dispute_status)
        );
        let late_paid = app.payment.apply(&event("p", PaymentChange::paid(None)), at(2));
        assert_eq!(late_paid.result, ProcessingResult::StaleTransition);
        // A payment that can no longer be paid keeps its status, and the dispute is tracked.
        let canceled = payment(PaymentStatus::Canceled).apply(&event("d", lost), at(1));
        assert_eq!(canceled.payment.status, PaymentStatus::Canceled);
        assert_eq!(canceled.payment.dispute_status, Some(DisputeStatus::Lost));
        assert!(
            !canceled.history[0].applied,
            "the implied payment is recorded as refused"
        );
    }

    #[test]
    fn dispute_is_tracked_beside_the_status() {
        let p = payment(PaymentStatus::Paid);
        let opened = p.apply(
            &event(
                "d1",
                PaymentChange::Dispute {
                    status: DisputeStatus::Open,
                    detail: None,
                },
            ),
            at(1),
        );
        assert_eq!(opened.payment.status, PaymentStatus::Paid);
        assert_eq!(opened.payment.dispute_status, Some(DisputeStatus::Open));
        assert_eq!(opened.publications[0].topic, "payment.dispute_open");
        let lost = opened.payment.apply(
            &event(
                "d2",
                PaymentChange::Dispute {
                    status: DisputeStatus::Lost,
                    detail: None,
                },
            ),
            at(2),
        );
        assert_eq!(lost.payment.dispute_status, Some(DisputeStatus::Lost));
        let late_open = lost.payment.apply(
            &event(
                "d1",
                PaymentChange::Dispute {
                    status: DisputeStatus::Open,
                    detail: None,
                },
            ),
            at(3),
        );
        assert_eq!(late_open.result, ProcessingResult::StaleTransition);
        assert_eq!(late_open.payment.dispute_status, Some(DisputeStatus::Lost));
    }
}
