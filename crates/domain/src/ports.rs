//! Ports: what the application needs from the outside world, as narrow async traits.
//! Each has a mockall mock behind the `mock` feature (`MockPaymentStore`, ...).

use crate::{
    Checkout, CheckoutRequest, EventApplication, GatewayError, HistoryEntry, InboxEntry, InboxFilter, InboxId,
    InboxStatus, LogId, NewPayment, Opened, OutboxMessage, Outcome, Payment, PaymentFilter, PaymentId, PaymentRef,
    Provider, ProviderPaymentStatus, PublishError, Replay, ReplayFilter, Retained, TokenHashes, UndeliveredMessage,
    WebhookEvent, WebhookRequest,
};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached or refused the operation; worth retrying.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The row changed since it was read (optimistic concurrency); recompute and retry.
    #[error("concurrent update of {0}")]
    Conflict(String),
    /// A stored value could not be read back into a domain type.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// The store did not answer within `limit` (a hung database, a lost connection).
    pub fn timed_out(limit: std::time::Duration) -> Self {
        Self::Unavailable(format!("no answer within {} ms", limit.as_millis()))
    }
}

/// The durable record of every inbound request, whatever happens to it.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ForensicLog: Send + Sync {
    /// Records a request that does not reach the inbox, together with its outcome.
    async fn record(&self, request: &WebhookRequest, outcome: &Outcome) -> Result<LogId, StoreError>;
}

/// Whether an admitted event was new or a repeat of one already in the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accepted(InboxId),
    Duplicate(InboxId),
}

/// What became of one application in [`PaymentStore::commit_applications`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Stored: the payment's new state, its history and outbox rows, the event processed.
    Committed,
    /// The payment changed since it was read, so nothing of this one was stored;
    /// recompute it from the fresh payment.
    Stale,
}

/// What [`PaymentStore::commit_applications`] stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Committed {
    /// One per application, in the order given.
    pub commits: Vec<Commit>,
    /// The domain events the commit wrote to the outbox, in commit order.
    pub messages: Vec<OutboxMessage>,
}

/// An inbox event handed to one worker until its lease runs out.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedEvent {
    pub id: InboxId,
    pub event: WebhookEvent,
    /// Failed attempts so far.
    pub attempts: i32,
}

/// The durable inbox of authenticated events, deduplicated on `(provider, event_id)`.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait WebhookInbox: Send + Sync {
    /// Records each request in the forensic log and stores its event, unless the
    /// provider sent it before; the log row carries the outcome (`accepted` or
    /// `duplicate`). Concurrent repeats resolve to one inbox row. All deliveries share
    /// one transaction, so many concurrent webhooks pay for one commit (group commit);
    /// an error means none of them was stored.
    ///
    /// With `lease_until`, each new event is stored already leased to the caller until
    /// then, as [`WebhookInbox::claim_due`] would leave it: the caller hands it to its
    /// worker itself. Repeats are never leased.
    async fn admit_all(
        &self,
        deliveries: &[(WebhookRequest, WebhookEvent)],
        lease_until: Option<DateTime<Utc>>,
    ) -> Result<Vec<Admission>, StoreError>;

    /// [`WebhookInbox::admit_all`] for one delivery, not leased.
    async fn admit(&self, request: &WebhookRequest, event: &WebhookEvent) -> Result<Admission, StoreError> {
        let mut admissions = self.admit_all(&[(request.clone(), event.clone())], None).await?;
        admissions
            .pop()
            .ok_or_else(|| StoreError::Corrupt("the store gave no answer for a delivery".into()))
    }

    /// Leases up to `limit` due events to the caller until `lease_until`. Rows leased
    /// by another worker are skipped; expired leases are due again.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<ClaimedEvent>, StoreError>;

    /// Counts a failed attempt: `retry_at` makes it due again then (status `failed`);
    /// `None` marks it `dead`.
    async fn record_failure(&self, id: InboxId, error: &str, retry_at: Option<DateTime<Utc>>)
        -> Result<(), StoreError>;

    /// Gives up leases: the events are due again at once. For a worker stopping with
    /// events it did not finish.
    async fn release(&self, ids: &[InboxId]) -> Result<u64, StoreError>;

    /// Marks an event processed with `result`, for an event whose effects were written
    /// on their own (a word about a subscription with no mirror to keep).
    async fn mark_processed(
        &self,
        id: InboxId,
        result: crate::ProcessingResult,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Clears leases that ran out before `now` (their workers died); returns how many.
    async fn release_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Events matching `filter`, newest first.
    async fn list(&self, filter: &InboxFilter) -> Result<Vec<InboxEntry>, StoreError>;

    /// Makes a `failed`, `dead` or `processed` event due now.
    async fn replay(&self, id: InboxId, now: DateTime<Utc>) -> Result<Replay, StoreError>;

    /// Makes up to `limit` events matching `filter` due now (oldest first, none
    /// leased by a worker); returns how many. Callers loop until fewer come back, so
    /// no statement holds many rows (see `payhook-app`'s `replay_matching`).
    async fn replay_batch(&self, filter: &ReplayFilter, now: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// How many events are in each status (statuses with none are left out).
    async fn depth(&self) -> Result<Vec<(InboxStatus, i64)>, StoreError>;
}

/// The outbox: domain events committed with the payment change that caused them,
/// waiting to be delivered to subscribers at least once.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Leases up to `limit` undelivered messages that are due, oldest first.
    async fn claim_unpublished(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Marks delivered messages, one statement for a whole batch.
    async fn mark_published(&self, ids: &[i64], at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Counts a failed delivery; the message is due again at `retry_at`, or, with
    /// `None`, is dead (never claimed again until replayed).
    async fn record_publish_failure(
        &self,
        id: i64,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;

    /// Messages not yet delivered (dead ones included).
    async fn backlog(&self) -> Result<i64, StoreError>;

    /// Dead messages.
    async fn dead_count(&self) -> Result<i64, StoreError>;

    /// Undelivered messages, newest first: only the dead ones when `dead`, else the
    /// ones still being retried.
    async fn list_undelivered(&self, dead: bool, limit: u32) -> Result<Vec<UndeliveredMessage>, StoreError>;

    /// Makes an undelivered message due at `now` with its attempts reset.
    async fn replay_message(&self, id: i64, now: DateTime<Utc>) -> Result<Replay, StoreError>;
}

/// A subscriber to domain events. Delivery is at least once: the same message may
/// arrive again (after a crash, or when another subscriber failed), so subscribers
/// must be idempotent, keyed on the message id.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventPublisher: Send + Sync {
    async fn publish(&self, message: &OutboxMessage) -> Result<(), PublishError>;

    /// Publishes a batch in order: one result per message. One `publish` each unless
    /// the subscriber can take a batch at once (the Postgres fan-out, where each call
    /// is a round trip to the database).
    async fn publish_all(&self, messages: &[OutboxMessage]) -> Vec<Result<(), PublishError>> {
        let mut results = Vec::with_capacity(messages.len());
        for message in messages {
            results.push(self.publish(message).await);
        }
        results
    }
}

/// Domain events shared by every instance on one store, so that whichever instance
/// applies a change, subscribers in all of them (status streams) hear of it:
/// `publish` announces a message to every instance, `listen` follows what any
/// instance announces (Postgres LISTEN/NOTIFY, docs/architecture.md).
#[async_trait]
pub trait FanOut: EventPublisher {
    async fn listen(&self) -> Result<Box<dyn FanOutListener>, StoreError>;
}

/// One instance's view of [`FanOut`] announcements.
#[async_trait]
pub trait FanOutListener: Send {
    /// The next message any instance announced. An error means this listener is
    /// broken (its connection was lost): listen again; what was announced meanwhile
    /// is not heard.
    async fn next(&mut self) -> Result<OutboxMessage, StoreError>;
}

/// Payments and their history.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PaymentStore: Send + Sync {
    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError>;

    /// Finds the payment each event names, in one pass for a whole batch: by payhook id
    /// first, then by the provider's reference, then by another of the provider's ids
    /// remembered for it. The answer is in the order asked.
    async fn find_payments(&self, wanted: &[(Provider, PaymentRef)]) -> Result<Vec<Option<Payment>>, StoreError>;

    /// [`PaymentStore::find_payments`] for one event.
    async fn find_payment(&self, provider: Provider, reference: &PaymentRef) -> Result<Option<Payment>, StoreError> {
        let mut found = self.find_payments(&[(provider, reference.clone())]).await?;
        Ok(found.pop().flatten())
    }

    /// Inserts a payment payhook learns of from an event; if one is already stored
    /// under its `(provider, provider_ref)`, that one comes back instead. (A batch
    /// writes such payments through [`PaymentStore::commit_applications`].)
    async fn create_payment(&self, payment: &NewPayment) -> Result<Payment, StoreError>;

    /// Commits the effects of inbox events under one commit. For each `(inbox,
    /// application)`: the payment's new state, only if it is still at
    /// `application.payment.version` (else that one is [`Commit::Stale`] and nothing
    /// of it is stored), its history rows, its outbox rows, and the event marked
    /// processed with the application's result. A payment at [`Payment::UNSTORED`] is
    /// inserted in its new state, only if no payment with its `(provider,
    /// provider_ref)` is stored (else `Stale`). At most one application per payment.
    /// The outbox rows are stored leased until `outbox_lease` when it is given (the
    /// caller hands the messages to this instance's relay, so no relay claims them
    /// before then), else due at once. An error means nothing was stored.
    async fn commit_applications(
        &self,
        applications: &[(InboxId, EventApplication)],
        outbox_lease: Option<DateTime<Utc>>,
    ) -> Result<Committed, StoreError>;

    /// [`PaymentStore::commit_applications`] for one event, its outbox rows due at
    /// once; a stale one is `Conflict`.
    async fn commit_application(&self, inbox: InboxId, application: &EventApplication) -> Result<(), StoreError> {
        let committed = self.commit_applications(&[(inbox, application.clone())], None).await?;
        match committed.commits.first() {
            Some(Commit::Committed) => Ok(()),
            Some(Commit::Stale) => Err(StoreError::Conflict(format!("payment {}", application.payment.id))),
            None => Err(StoreError::Corrupt(
                "the store gave no answer for an application".into(),
            )),
        }
    }

    async fn history(&self, id: PaymentId) -> Result<Vec<HistoryEntry>, StoreError>;

    /// The payments `filter` selects, newest first (by creation time, then id), at
    /// most `filter.limit`, after `filter.after` when given.
    async fn list_payments(&self, filter: &PaymentFilter) -> Result<Vec<Payment>, StoreError>;

    /// Inserts a payment requested through the API, before the provider is asked.
    /// When its idempotency key was used before, nothing is inserted and the payment
    /// that key opened comes back instead.
    async fn open_payment(&self, payment: &NewPayment) -> Result<Opened, StoreError>;

    /// Records the provider's answer for a payment being created.
    async fn record_checkout(&self, id: PaymentId, checkout: &Checkout) -> Result<Payment, StoreError>;

    /// Marks a payment the provider did not create as failed, with the reason, in its
    /// history too. A payment that moved on meanwhile (a callback raced the answer)
    /// keeps its status.
    async fn record_creation_failure(
        &self,
        id: PaymentId,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<Payment, StoreError>;

    /// Replaces the hash of the payment's client token.
    async fn replace_client_token(&self, id: PaymentId, hash: &str) -> Result<(), StoreError>;

    /// The stored token hashes of a payment, to check a presented token against.
    async fn token_hashes(&self, id: PaymentId) -> Result<Option<TokenHashes>, StoreError>;
}

/// A provider's payment API: create a payment there, and read its status back.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    fn provider(&self) -> Provider;

    /// Refuses a request the provider cannot take (`GatewayError::Invalid`), before
    /// anything is stored or sent.
    fn check(&self, request: &CheckoutRequest) -> Result<(), GatewayError> {
        let _ = request;
        Ok(())
    }

    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<Checkout, GatewayError>;

    async fn fetch_status(&self, provider_ref: &str) -> Result<ProviderPaymentStatus, GatewayError>;

    /// The checkout the provider made for a payment whose creation was interrupted
    /// (payhook stopped between asking and recording the answer), found by the payment
    /// id payhook sent with the request; `None` when the provider has no such object,
    /// or offers no way to look one up by that id. Either way no customer can have been
    /// shown how to pay it: payhook answers with a checkout only once it is recorded.
    async fn find_checkout(&self, payment_id: PaymentId) -> Result<Option<Checkout>, GatewayError>;

    /// Cancels an unpaid payment at the provider (it can no longer be paid) and
    /// answers where it stands then: canceled, or what it became first (paid, say).
    /// `GatewayError::Unsupported` for a provider whose API cannot cancel.
    async fn cancel(&self, provider_ref: &str) -> Result<ProviderPaymentStatus, GatewayError> {
        let _ = provider_ref;
        Err(GatewayError::Unsupported {
            provider: self.provider(),
            operation: "cancel",
        })
    }

    /// Asks the provider to refund part or all of a paid payment, idempotently on the
    /// refund's id. `GatewayError::Unsupported` for a provider payhook cannot refund
    /// through.
    async fn refund(&self, request: &crate::RefundRequest) -> Result<crate::ProviderRefund, GatewayError> {
        let _ = request;
        Err(GatewayError::Unsupported {
            provider: self.provider(),
            operation: "refund",
        })
    }

    /// Where one of payhook's refunds stands at the provider, for a refund still
    /// `pending` whose webhook never came. By default the payment's status is read and
    /// its refunded total reported (JunglePay answers refunds that way); a provider
    /// with a refund of its own to read (Stripe, Xendit) reports that one.
    async fn fetch_refund(&self, lookup: &crate::RefundLookup) -> Result<crate::RefundReport, GatewayError> {
        let found = self.fetch_status(&lookup.payment_ref).await?;
        Ok(crate::RefundReport::Total {
            refunded_total: found.refunded_amount.unwrap_or(0),
            currency: lookup.amount.currency(),
        })
    }
}

/// Refunds as rows of their own.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RefundStore: Send + Sync {
    /// Reserves a refund the merchant asks for, in one transaction holding the
    /// payment's row: a payment that holds no money is `NotRefundable`; an amount more
    /// than what is left (paid, less every pending or succeeded refund), or not
    /// positive, `Exceeds`; a key the payment already used answers that refund. Refunds
    /// reserved at the same moment can never together exceed the payment.
    async fn reserve_refund(&self, refund: &crate::NewRefund) -> Result<crate::Reservation, StoreError>;

    async fn refund(&self, id: crate::RefundId) -> Result<Option<crate::Refund>, StoreError>;

    /// Records the provider's answer to a refund payhook asked for: its id, and a
    /// status (`pending` until settled; `failed` with a reason when refused). A final
    /// status publishes `refund.succeeded` or `refund.failed`. Only a pending refund
    /// changes.
    async fn record_refund_answer(
        &self,
        id: crate::RefundId,
        provider_ref: Option<String>,
        status: crate::RefundStatus,
        failure_reason: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<crate::Refund, StoreError>;

    /// Settles a payment's refunds by what its provider reports, in one transaction
    /// holding the payment's row, publishing `refund.succeeded` / `refund.failed` for
    /// each refund it settles:
    /// - one refund: found by payhook's id, else the provider's; a pending one takes
    ///   the reported status. A refund payhook does not know (made at the provider) is
    ///   added with origin `provider`, unless an unnamed one of the same amount, added
    ///   from a total, is waiting for its name.
    /// - a total: what it adds to the succeeded refunds settles pending merchant
    ///   refunds, oldest first, as far as they fit; the rest is one refund of origin
    ///   `provider`.
    ///
    /// A report in another currency than the payment's settles nothing.
    async fn settle_refunds(
        &self,
        payment_id: PaymentId,
        report: &crate::RefundReport,
        at: DateTime<Utc>,
    ) -> Result<crate::Settlement, StoreError>;

    /// A payment's refunds, oldest first.
    async fn refunds_of(&self, payment_id: PaymentId) -> Result<Vec<crate::Refund>, StoreError>;

    /// Claims up to `limit` pending refunds whose check with the provider is due at
    /// `now`, the longest due first, and holds them until `lease_until`, like
    /// [`ReconcileQueue::claim_due_checks`] holds payments (SKIP LOCKED on Postgres). A
    /// pending refund is due from its creation; refunds settled meanwhile are taken off
    /// the schedule on the way.
    async fn claim_due_refund_checks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueRefundCheck>, StoreError>;

    /// After a refund's check: `checks` made so far, and when the next is due
    /// (`None`: no more).
    async fn schedule_refund_check(
        &self,
        id: crate::RefundId,
        checks: u32,
        next: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;
}

/// A pending refund due for a check with its provider.
#[derive(Debug, Clone, PartialEq)]
pub struct DueRefundCheck {
    pub refund: crate::Refund,
    pub provider: Provider,
    /// The payment's id at the provider.
    pub payment_ref: Option<String>,
    /// Checks made so far.
    pub checks: u32,
}

/// The Stripe mirror's rows (`stripe_objects`), written under the ordering rule of
/// [`crate::MirrorWrite::against`]: an older write never replaces a newer one.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StripeMirror: Send + Sync {
    /// Writes the objects of events that only update the mirror and marks the events
    /// processed, in one transaction. One outcome per event, in order.
    async fn apply_mirror_events(
        &self,
        events: &[(InboxId, crate::MirrorWrite)],
        at: DateTime<Utc>,
    ) -> Result<Vec<crate::MirrorOutcome>, StoreError>;

    /// Writes one object read from Stripe's API (`payhook stripe resync`).
    async fn write_object(
        &self,
        write: &crate::MirrorWrite,
        at: DateTime<Utc>,
    ) -> Result<crate::MirrorOutcome, StoreError>;

    async fn object(
        &self,
        account: &str,
        object_type: crate::StripeObjectType,
        object_id: &str,
    ) -> Result<Option<crate::MirroredObject>, StoreError>;

    /// Objects by id, ascending, after `filter.after`.
    async fn list_objects(&self, filter: &crate::MirrorFilter) -> Result<Vec<crate::MirroredObject>, StoreError>;

    /// Where a backfill of `account`'s objects of `object_type` created since `since`
    /// stands; `None` when it never ran.
    async fn backfill_cursor(
        &self,
        account: &str,
        object_type: crate::StripeObjectType,
        since: Option<i64>,
    ) -> Result<Option<crate::BackfillCursor>, StoreError>;

    /// Writes a backfill page's objects and where the backfill then stands, in one
    /// transaction, so a backfill run again after an interruption goes on from the
    /// last page stored and never skips one.
    async fn save_backfill_page(
        &self,
        cursor: &crate::BackfillCursor,
        writes: &[crate::MirrorWrite],
        at: DateTime<Utc>,
    ) -> Result<Vec<crate::MirrorOutcome>, StoreError>;
}

/// Stripe's API read as raw JSON, for the mirror: objects are kept whole, so no typed
/// parse may drop or refuse a field.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StripeObjectApi: Send + Sync {
    /// `GET /v1/{type}/{id}` with the type's expansions, as `account` (`""`: the
    /// platform): the object's JSON text.
    async fn retrieve(
        &self,
        account: &str,
        object_type: crate::StripeObjectType,
        object_id: &str,
    ) -> Result<String, GatewayError>;

    /// `GET /v1/{type}?limit=&starting_after=&created[gte]=`, as `account`.
    async fn list(
        &self,
        account: &str,
        object_type: crate::StripeObjectType,
        created_gte: Option<i64>,
        starting_after: Option<String>,
        limit: u32,
    ) -> Result<crate::ObjectPage, GatewayError>;
}

/// What storing a new plan found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanCreated {
    Created(crate::Plan),
    /// A plan already has this code: that one.
    CodeTaken(crate::Plan),
}

/// Plans (`plans`).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait PlanStore: Send + Sync {
    /// Stores `plan` unless its code is taken.
    async fn create_plan(&self, plan: &crate::Plan) -> Result<PlanCreated, StoreError>;

    async fn plan(&self, id: crate::PlanId) -> Result<Option<crate::Plan>, StoreError>;

    async fn plan_by_code(&self, code: &str) -> Result<Option<crate::Plan>, StoreError>;

    /// Every plan, oldest first.
    async fn plans(&self) -> Result<Vec<crate::Plan>, StoreError>;

    /// Records the Stripe Price that bills `id`, unless it has one: answers the plan as
    /// stored (with the first price recorded).
    async fn set_stripe_price(&self, id: crate::PlanId, price_id: &str) -> Result<Option<crate::Plan>, StoreError>;
}

/// Subscriptions (`subscriptions`, `subscription_history`), and their payments.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Stores a new subscription, or answers the one its idempotency key (or, for
    /// Stripe, its `(provider, account, provider_ref)`) already names.
    async fn open_subscription(&self, new: &crate::NewSubscription) -> Result<crate::SubscriptionOpened, StoreError>;

    async fn subscription(&self, id: crate::SubscriptionId) -> Result<Option<crate::Subscription>, StoreError>;

    /// The subscription a provider knows as `provider_ref` in `account`.
    async fn subscription_by_provider_ref(
        &self,
        provider: Provider,
        account: &str,
        provider_ref: &str,
    ) -> Result<Option<crate::Subscription>, StoreError>;

    /// Its history, oldest first.
    async fn subscription_history(
        &self,
        id: crate::SubscriptionId,
    ) -> Result<Vec<crate::SubscriptionHistoryEntry>, StoreError>;

    /// Newest first.
    async fn list_subscriptions(
        &self,
        filter: &crate::SubscriptionFilter,
    ) -> Result<Vec<crate::Subscription>, StoreError>;

    /// Stores the subscription's new state, its history and its domain events in one
    /// transaction; `StoreError::Conflict` when it is no longer at `expected_version`.
    async fn save_subscription(&self, save: &crate::SubscriptionSave) -> Result<(), StoreError>;

    /// Sets when the scheduler next looks at it, nothing else.
    async fn schedule_subscription(
        &self,
        id: crate::SubscriptionId,
        next_due_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError>;

    /// Subscriptions due at `now`, at most `limit`, leased until `lease_until` (their
    /// `next_due_at` moves there), so another instance claims none of them meanwhile
    /// (`FOR UPDATE SKIP LOCKED` on Postgres).
    async fn claim_due_subscriptions(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<crate::SubscriptionId>, StoreError>;

    /// Marks `payment` as one of the subscription's payments (once: a payment already
    /// of a subscription keeps it).
    async fn link_payment(&self, payment: PaymentId, subscription: crate::SubscriptionId) -> Result<(), StoreError>;

    /// The subscription's payments, oldest first.
    async fn subscription_payments(&self, id: crate::SubscriptionId) -> Result<Vec<Payment>, StoreError>;
}

/// A subscription Stripe-style providers run themselves: payhook opens it with a
/// hosted page and learns the rest from events.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait SubscriptionGateway: Send + Sync {
    /// Creates the provider's price for `plan` (once: the plan's id is the request's
    /// idempotency key), answering its id.
    async fn create_price(&self, plan: &crate::Plan) -> Result<String, GatewayError>;

    /// A hosted page where the customer starts the subscription.
    async fn open_subscription_checkout(
        &self,
        request: &SubscriptionCheckoutRequest,
    ) -> Result<SubscriptionCheckout, GatewayError>;

    /// Closes the hosted page of a subscription not started yet (`session_id`, what
    /// [`SubscriptionCheckout::session_id`] named), so nobody can start it any more.
    async fn expire_subscription_checkout(&self, session_id: &str) -> Result<(), GatewayError>;

    /// Cancels it at the provider: now, or at the end of the paid period.
    async fn cancel_subscription(
        &self,
        account: &str,
        provider_ref: &str,
        at_period_end: bool,
    ) -> Result<(), GatewayError>;
}

/// What [`SubscriptionGateway::open_subscription_checkout`] is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionCheckoutRequest {
    pub subscription_id: crate::SubscriptionId,
    pub price_id: String,
    pub customer_ref: String,
    pub customer_email: Option<String>,
    pub success_url: Option<String>,
    pub cancel_url: Option<String>,
    pub trial_days: u32,
}

/// The hosted page opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionCheckout {
    /// The Checkout Session's id.
    pub session_id: String,
    pub checkout_url: String,
}

/// Disputes as rows of their own (several per payment).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait DisputeStore: Send + Sync {
    /// Records what a provider says about one of a payment's disputes, in one
    /// transaction: the row is created or updated (a closed dispute stays closed), and
    /// `dispute.opened` (its first report) and `dispute.closed` (the report that closed
    /// it) are written to the outbox. Recording the same report again changes nothing
    /// and publishes nothing.
    async fn record_dispute(
        &self,
        payment_id: PaymentId,
        report: &crate::DisputeReport,
        at: DateTime<Utc>,
    ) -> Result<crate::DisputeRecorded, StoreError>;

    /// A payment's disputes, oldest first.
    async fn disputes_of(&self, payment_id: PaymentId) -> Result<Vec<crate::Dispute>, StoreError>;
}

/// Deletes what the retention policy lets go, a small batch at a time, so no
/// statement holds a long lock on a table the ingest path writes.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Retention: Send + Sync {
    /// Deletes up to `limit` of the oldest records of `kind` dated before `before`
    /// that may go (any forensic row; `processed` or `ignored` inbox events;
    /// delivered outbox messages) and answers how many it deleted.
    async fn purge(&self, kind: Retained, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError>;

    /// How many records of `kind` [`Retention::purge`] would delete for `before`.
    async fn count_purgeable(&self, kind: Retained, before: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// A payment due for a check with its provider, and how many checks it has had.
#[derive(Debug, Clone, PartialEq)]
pub struct DueCheck {
    pub payment: Payment,
    pub checks: u32,
}

/// The schedule of checks with the providers (reconciliation): when each open payment
/// is next asked about.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ReconcileQueue: Send + Sync {
    /// Claims up to `limit` open payments whose check is due at `now`, the longest
    /// due first, and holds them until `lease_until` (a crashed checker's payments are
    /// due again then), so that each is asked once per round however many instances
    /// claim (SKIP LOCKED on Postgres). Payments that settled while scheduled are taken
    /// off the schedule on the way.
    async fn claim_due_checks(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<DueCheck>, StoreError>;

    /// After a check: `checks` made so far, and when the next is due (`None`: no more).
    async fn schedule_check(&self, id: PaymentId, checks: u32, next: Option<DateTime<Utc>>) -> Result<(), StoreError>;

    /// Open payments whose check is due at `now` (the `payhook_reconcile_due` gauge).
    async fn count_due_checks(&self, now: DateTime<Utc>) -> Result<i64, StoreError>;
}

/// Whether the store answers (for readiness probes).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait StoreHealth: Send + Sync {
    async fn check(&self) -> Result<(), StoreError>;
}

/// The only source of "now" for services, so tests can pin time.
#[cfg_attr(feature = "mock", mockall::automock)]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}
