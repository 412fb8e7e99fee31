//! The Stripe mirror: the billing objects behind payments (customers, invoices,
//! subscriptions, …) kept as Stripe sent them, per Connect account, so a billing team
//! can query them in its own database.
//!
//! Events arrive out of order and more than once, so a write carries where it comes
//! from: the event's `created` (whole seconds), and the object's place in its own
//! status order. A write replaces what is stored only when it is newer: a later
//! `created`, or the same second and a later status. Two writes of the same second and
//! the same status are a tie: the first is kept (and the tie counted), unless the
//! object can be read back from Stripe's API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The object types payhook mirrors, named as Stripe names them in `object`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StripeObjectType {
    Customer,
    Product,
    Price,
    Invoice,
    Subscription,
    Charge,
    Refund,
    Dispute,
    PaymentIntent,
    CheckoutSession,
}

impl StripeObjectType {
    pub const ALL: [StripeObjectType; 10] = [
        Self::Customer,
        Self::Product,
        Self::Price,
        Self::Invoice,
        Self::Subscription,
        Self::Charge,
        Self::Refund,
        Self::Dispute,
        Self::PaymentIntent,
        Self::CheckoutSession,
    ];

    /// The name in an object's `object` field, and in payhook's routes and tables.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Product => "product",
            Self::Price => "price",
            Self::Invoice => "invoice",
            Self::Subscription => "subscription",
            Self::Charge => "charge",
            Self::Refund => "refund",
            Self::Dispute => "dispute",
            Self::PaymentIntent => "payment_intent",
            Self::CheckoutSession => "checkout.session",
        }
    }

    /// The API path of the object's collection, under `/v1`.
    pub fn api_path(&self) -> &'static str {
        match self {
            Self::Customer => "customers",
            Self::Product => "products",
            Self::Price => "prices",
            Self::Invoice => "invoices",
            Self::Subscription => "subscriptions",
            Self::Charge => "charges",
            Self::Refund => "refunds",
            Self::Dispute => "disputes",
            Self::PaymentIntent => "payment_intents",
            Self::CheckoutSession => "checkout/sessions",
        }
    }

    /// What is expanded when the object is read from the API. An invoice's `lines` and
    /// a subscription's `items` come with the object (their first page, as in events);
    /// a Checkout Session's line items only when expanded.
    pub fn expansions(&self) -> &'static [&'static str] {
        match self {
            Self::CheckoutSession => &["line_items"],
            _ => &[],
        }
    }

    /// The object's place in its status order: a later status ranks higher, so of two
    /// writes stamped in the same second the later status wins. `None`: the type has no
    /// status (customers, products, prices), or a status outside the order.
    ///
    /// - invoice: draft < open < uncollectible < paid = void
    /// - subscription: incomplete < trialing < active < past_due = paused < unpaid <
    ///   canceled = incomplete_expired
    /// - payment_intent: requires_payment_method < requires_confirmation <
    ///   requires_action < processing < requires_capture < succeeded = canceled
    /// - charge: pending < succeeded = failed
    /// - refund: pending = requires_action < succeeded = failed = canceled
    /// - dispute: warning_needs_response = needs_response < warning_under_review =
    ///   under_review < warning_closed = won = lost
    /// - checkout session: open < complete = expired
    pub fn status_rank(&self, status: &str) -> Option<i32> {
        let order: &[&[&str]] = match self {
            Self::Invoice => &[&["draft"], &["open"], &["uncollectible"], &["paid", "void"]],
            Self::Subscription => &[
                &["incomplete"],
                &["trialing"],
                &["active"],
                &["past_due", "paused"],
                &["unpaid"],
                &["canceled", "incomplete_expired"],
            ],
            Self::PaymentIntent => &[
                &["requires_payment_method"],
                &["requires_confirmation"],
                &["requires_action"],
                &["processing"],
                &["requires_capture"],
                &["succeeded", "canceled"],
            ],
            Self::Charge => &[&["pending"], &["succeeded", "failed"]],
            Self::Refund => &[&["pending", "requires_action"], &["succeeded", "failed", "canceled"]],
            Self::Dispute => &[
                &["warning_needs_response", "needs_response"],
                &["warning_under_review", "under_review"],
                &["warning_closed", "won", "lost"],
            ],
            Self::CheckoutSession => &[&["open"], &["complete", "expired"]],
            Self::Customer | Self::Product | Self::Price => &[],
        };
        order
            .iter()
            .position(|rank| rank.contains(&status))
            .and_then(|rank| i32::try_from(rank).ok())
    }
}

impl fmt::Display for StripeObjectType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StripeObjectType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
            format!("unknown Stripe object type {s:?}; one of {}", known.join(", "))
        })
    }
}

/// The rank of a deleted object: nothing of the same second undoes a deletion.
pub const DELETED_RANK: i32 = 1_000;

/// The rank of an object without a place in a status order.
pub const UNRANKED: i32 = -1;

/// One object to write into the mirror, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorWrite {
    /// The Connect account (`acct_…`), `""` for the platform's own objects.
    pub account: String,
    pub object_type: StripeObjectType,
    pub object_id: String,
    /// The object's JSON text exactly as Stripe sent it. Text, not a parsed value: a
    /// parsed value would sort its keys, and JSONB would too.
    pub data: String,
    pub livemode: bool,
    /// The object's `customer` (for a customer, its own id): what listings filter by.
    pub customer: Option<String>,
    /// A `*.deleted` event: the row is marked deleted and keeps this data.
    pub deleted: bool,
    /// The event it came from, or `resync:…` / `backfill:…` for a read from the API.
    pub source_event_id: String,
    /// The event's `created` (unix seconds), or the time of the read from the API.
    pub source_event_created: i64,
    /// See [`StripeObjectType::status_rank`]: [`UNRANKED`] without one,
    /// [`DELETED_RANK`] when deleted.
    pub status_rank: i32,
}

/// The few fields of an object the mirror reads; the rest is kept as text.
#[derive(Deserialize)]
struct ObjectHead {
    /// The object's type, as Stripe names it.
    object: Option<String>,
    id: Option<String>,
    #[serde(default)]
    livemode: bool,
    status: Option<String>,
    /// An id, or the customer object itself when expanded.
    customer: Option<serde_json::Value>,
}

impl MirrorWrite {
    /// The write of `data`, the JSON text of an object of `object_type` as Stripe sent
    /// it, ranked by its own `status`. `None` when it is not an object with an `id`.
    pub fn of(
        account: &str,
        object_type: StripeObjectType,
        data: &str,
        deleted: bool,
        source_event_id: String,
        source_event_created: i64,
    ) -> Option<Self> {
        let head: ObjectHead = serde_json::from_str(data).ok()?;
        Self::from_head(
            head,
            account,
            object_type,
            data,
            deleted,
            source_event_id,
            source_event_created,
        )
    }

    /// The write of `data` when its own `object` field names a type payhook mirrors
    /// (an event's `data.object`); `None` otherwise. One read of the object's head:
    /// this runs on the webhook ingest path.
    pub fn of_object(
        account: &str,
        data: &str,
        deleted: bool,
        source_event_id: String,
        source_event_created: i64,
    ) -> Option<Self> {
        let head: ObjectHead = serde_json::from_str(data).ok()?;
        let object_type: StripeObjectType = head.object.as_deref()?.parse().ok()?;
        Self::from_head(
            head,
            account,
            object_type,
            data,
            deleted,
            source_event_id,
            source_event_created,
        )
    }

    fn from_head(
        head: ObjectHead,
        account: &str,
        object_type: StripeObjectType,
        data: &str,
        deleted: bool,
        source_event_id: String,
        source_event_created: i64,
    ) -> Option<Self> {
        let object_id = head.id?;
        let status_rank = if deleted {
            DELETED_RANK
        } else {
            head.status
                .as_deref()
                .and_then(|status| object_type.status_rank(status))
                .unwrap_or(UNRANKED)
        };
        let customer = match (object_type, head.customer) {
            (StripeObjectType::Customer, _) => Some(object_id.clone()),
            (_, Some(serde_json::Value::String(id))) => Some(id),
            (_, Some(serde_json::Value::Object(customer))) => customer
                .get("id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            _ => None,
        };
        Some(Self {
            account: account.to_owned(),
            object_type,
            object_id,
            data: data.to_owned(),
            livemode: head.livemode,
            customer,
            deleted,
            source_event_id,
            source_event_created,
            status_rank,
        })
    }

    /// Whether this write replaces what is stored (`Written`), loses to it (`Older`),
    /// or cannot be told from it by time and status (`Tie`; `Same` when it is the very
    /// write stored, a replayed event).
    pub fn against(&self, stored_event: &str, stored_created: i64, stored_rank: i32) -> MirrorOutcome {
        match (self.source_event_created, self.status_rank).cmp(&(stored_created, stored_rank)) {
            std::cmp::Ordering::Greater => MirrorOutcome::Written,
            std::cmp::Ordering::Less => MirrorOutcome::Older,
            std::cmp::Ordering::Equal if stored_event == self.source_event_id => MirrorOutcome::Same,
            std::cmp::Ordering::Equal => MirrorOutcome::Tie,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MirrorOutcome {
    /// Stored: the first of its object, or newer than what was stored.
    Written,
    /// Not stored: what is stored is newer.
    Older,
    /// Not stored: the same second and the same status as what is stored, from
    /// another source; the first is kept.
    Tie,
    /// Not stored: the very write already stored (a replayed event).
    Same,
}

/// A mirrored object as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirroredObject {
    pub account: String,
    pub object_type: StripeObjectType,
    pub object_id: String,
    /// The object's JSON text as Stripe sent it.
    pub data: String,
    pub livemode: bool,
    pub deleted: bool,
    pub source_event_id: String,
    pub source_event_created: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which mirrored objects to list: one account's objects of one type, by id, a page
/// at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorFilter {
    pub account: String,
    pub object_type: StripeObjectType,
    /// Only objects whose `customer` is this id (invoices, subscriptions, charges…),
    /// or, listing customers, this customer.
    pub customer: Option<String>,
    /// Ids after this one.
    pub after: Option<String>,
    pub limit: u32,
}

/// Where a backfill of one account's objects of one type stands, so that running it
/// again after an interruption goes on from the last page stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillCursor {
    pub account: String,
    pub object_type: StripeObjectType,
    /// `created[gte]` the backfill runs with (unix seconds), `None`: all.
    pub since: Option<i64>,
    /// The last object id stored: the next page starts after it.
    pub starting_after: Option<String>,
    /// Objects stored so far.
    pub stored: i64,
    pub done: bool,
}

/// One page of a list from Stripe's API: each object's JSON text as Stripe sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPage {
    pub data: Vec<String>,
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_status_ranks_higher_and_types_without_one_are_unranked() {
        let rank = |t: StripeObjectType, s: &str| t.status_rank(s);
        assert!(rank(StripeObjectType::Invoice, "draft") < rank(StripeObjectType::Invoice, "open"));
        assert!(rank(StripeObjectType::Invoice, "open") < rank(StripeObjectType::Invoice, "paid"));
        assert_eq!(
            rank(StripeObjectType::Invoice, "paid"),
            rank(StripeObjectType::Invoice, "void")
        );
        assert!(rank(StripeObjectType::Subscription, "incomplete") < rank(StripeObjectType::Subscription, "active"));
        assert!(rank(StripeObjectType::Subscription, "active") < rank(StripeObjectType::Subscription, "canceled"));
        assert_eq!(rank(StripeObjectType::Customer, "active"), None);
        assert_eq!(rank(StripeObjectType::Invoice, "something_new"), None);
    }

    #[test]
    fn a_write_is_newer_by_second_then_by_status() {
        let data = r#"{"id": "in_1", "object": "invoice", "status": "open", "livemode": true, "customer": "cus_9"}"#;
        let w = MirrorWrite::of("", StripeObjectType::Invoice, data, false, "evt_1".into(), 100).unwrap();
        assert!(w.livemode);
        assert_eq!(w.data, data, "kept as sent");
        assert_eq!(w.customer.as_deref(), Some("cus_9"));
        let open = StripeObjectType::Invoice.status_rank("open").unwrap();
        let paid = StripeObjectType::Invoice.status_rank("paid").unwrap();
        assert_eq!(
            w.against("evt_0", 99, paid),
            MirrorOutcome::Written,
            "a later second wins"
        );
        assert_eq!(w.against("evt_0", 101, UNRANKED), MirrorOutcome::Older);
        assert_eq!(
            w.against("evt_0", 100, paid),
            MirrorOutcome::Older,
            "paid comes after open"
        );
        assert_eq!(w.against("evt_0", 100, open), MirrorOutcome::Tie);
        assert_eq!(w.against("evt_1", 100, open), MirrorOutcome::Same);
        let deleted = MirrorWrite::of(
            "",
            StripeObjectType::Customer,
            r#"{"id":"cus_1"}"#,
            true,
            "evt_2".into(),
            100,
        )
        .unwrap();
        assert_eq!(deleted.customer.as_deref(), Some("cus_1"));
        assert_eq!(
            deleted.against("evt_0", 100, UNRANKED),
            MirrorOutcome::Written,
            "a deletion wins its second"
        );
        assert!(MirrorWrite::of("", StripeObjectType::Customer, "{}", false, "e".into(), 1).is_none());
        assert!(MirrorWrite::of("", StripeObjectType::Customer, "[1]", false, "e".into(), 1).is_none());
    }

    #[test]
    fn an_events_object_names_its_own_type() {
        let w = MirrorWrite::of_object(
            "acct_1",
            r#"{"object":"checkout.session","id":"cs_1","status":"open"}"#,
            false,
            "e".into(),
            5,
        )
        .unwrap();
        assert_eq!(
            (w.object_type, w.object_id.as_str(), w.account.as_str()),
            (StripeObjectType::CheckoutSession, "cs_1", "acct_1")
        );
        assert_eq!(w.status_rank, 0);
        assert!(MirrorWrite::of_object("", r#"{"object":"coupon","id":"25OFF"}"#, false, "e".into(), 5).is_none());
        assert!(
            MirrorWrite::of_object("", r#"{"id":"cus_1"}"#, false, "e".into(), 5).is_none(),
            "no type"
        );
    }

    #[test]
    fn type_names_round_trip() {
        for t in StripeObjectType::ALL {
            assert_eq!(t.as_str().parse::<StripeObjectType>(), Ok(t));
        }
        assert!("coupon".parse::<StripeObjectType>().is_err());
    }
}
