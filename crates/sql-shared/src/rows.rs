//! Row types and their mapping to and from domain types, for both stores.

use crate::schema::{outbox, payment_status_history, payments, webhook_events, webhook_logs};
use crate::types::{DbBytesRef, DbInstant, DbJson, DbJsonText, DbUuid};
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use payhook_domain::ports::{ClaimedEvent, StoreError};
use payhook_domain::{
    Checkout, Currency, EventApplication, EventId, HistoryEntry, InboxEntry, InboxId, Money, NewPayment, OutboxMessage,
    Outcome, Payment, PaymentId, PaymentStatus, ProcessingResult, UndeliveredMessage, WebhookEvent, WebhookRequest,
};

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// A forensic log row; with `outcome`, already stamped.
#[derive(Insertable)]
#[diesel(table_name = webhook_logs)]
pub struct NewLogRow<'a> {
    pub provider: &'a str,
    pub received_at: DbInstant,
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: DbJsonText,
    pub raw_body: DbBytesRef<'a>,
    pub remote_addr: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub external_id: Option<&'a str>,
    pub provider_status: Option<&'a str>,
    pub amount: Option<i64>,
    pub http_status: Option<i32>,
    pub processing_result: Option<&'a str>,
    pub processing_error: Option<&'a str>,
    pub completed_at: Option<DbInstant>,
    pub body_length: Option<i64>,
    pub body_sha256: Option<&'a str>,
    pub refused_count: Option<i64>,
}

impl<'a> NewLogRow<'a> {
    pub fn new(req: &'a WebhookRequest, outcome: Option<&'a Outcome>, completed_at: DateTime<Utc>) -> Self {
        let p = &req.primary;
        Self {
            provider: &req.provider,
            received_at: DbInstant(req.received_at),
            method: &req.method,
            path: &req.path,
            query: &req.query,
            // [[name, value], ...]; pairs of strings always serialize.
            headers: DbJsonText(serde_json::to_string(&req.headers).unwrap_or_else(|_| unreachable!())),
            raw_body: DbBytesRef(&req.body),
            remote_addr: req.remote_addr.as_deref(),
            event_id: p.event_id.as_deref(),
            event_type: p.event_type.as_deref(),
            external_id: p.external_id.as_deref(),
            provider_status: p.provider_status.as_deref(),
            amount: p.amount,
            http_status: outcome.map(|o| i32::from(o.http_status)),
            processing_result: outcome.map(|o| o.result.as_str()),
            processing_error: outcome.and_then(|o| o.error.as_deref()),
            completed_at: outcome.map(|_| DbInstant(completed_at)),
            body_length: req.cut.as_ref().map(|c| i64::try_from(c.length).unwrap_or(i64::MAX)),
            body_sha256: req.cut.as_ref().map(|c| c.sha256.as_str()),
            refused_count: req.refused_count.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        }
    }
}

/// A new inbox row: due at once, or already leased to the worker it is handed to.
#[derive(Insertable)]
#[diesel(table_name = webhook_events)]
pub struct NewEventRow<'a> {
    pub provider: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payment_ref: Option<String>,
    /// The Stripe Connect account, `""` for none.
    pub account: &'a str,
    pub payload: DbJsonText,
    pub status: &'static str,
    pub next_attempt_at: DbInstant,
    pub received_at: DbInstant,
    pub log_id: Option<i64>,
    pub locked_until: Option<DbInstant>,
}

impl<'a> NewEventRow<'a> {
    /// The inbox row of a new event, linked to its forensic row `log_id` (`None` where
    /// the statement that inserts it numbers its forensic rows itself); `lease_until`
    /// stores it leased, as a claim would.
    pub fn new(
        event: &'a WebhookEvent,
        received_at: DateTime<Utc>,
        log_id: Option<i64>,
        lease_until: Option<DateTime<Utc>>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            provider: event.provider.as_str(),
            event_id: event.event_id.as_str(),
            event_type: &event.event_type,
            payment_ref: event.payment.describe(),
            account: event.payment.account.as_deref().unwrap_or_default(),
            payload: DbJsonText(serde_json::to_string(event).map_err(|e| corrupt("event payload", e))?),
            status: "pending",
            next_attempt_at: DbInstant(received_at),
            received_at: DbInstant(received_at),
            log_id,
            locked_until: lease_until.map(DbInstant),
        })
    }
}

/// A payment whose check with its provider is due, as the due-check query finds it.
#[derive(QueryableByName)]
#[diesel(table_name = payments)]
pub struct DueRow {
    pub id: DbUuid,
    pub status: String,
}

/// What a claim returns of an inbox row.
#[derive(Queryable, QueryableByName)]
#[diesel(table_name = webhook_events)]
pub struct ClaimedRow {
    pub id: i64,
    pub payload: DbJson,
    pub attempts: i32,
}

impl ClaimedRow {
    /// `Err` carries the row id and why its payload is unreadable.
    pub fn into_claimed(self) -> Result<ClaimedEvent, (InboxId, String)> {
        match serde_json::from_value::<WebhookEvent>(self.payload.0) {
            Ok(event) => Ok(ClaimedEvent {
                id: InboxId(self.id),
                event,
                attempts: self.attempts,
            }),
            Err(e) => Err((InboxId(self.id), format!("stored payload is not a readable event: {e}"))),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = payments)]
pub struct NewPaymentRow<'a> {
    id: DbUuid,
    provider: &'a str,
    account: &'a str,
    provider_ref: Option<&'a str>,
    merchant_ref: Option<&'a str>,
    amount: i64,
    currency: String,
    status: &'static str,
    metadata: DbJson,
    customer_email: Option<&'a str>,
    description: Option<&'a str>,
    created_at: DbInstant,
    updated_at: DbInstant,
    client_token_hash: Option<&'a str>,
    callback_token_hash: Option<&'a str>,
    idempotency_key: Option<&'a str>,
    request_fingerprint: Option<&'a str>,
    next_reconcile_at: Option<DbInstant>,
}

impl<'a> From<&'a NewPayment> for NewPaymentRow<'a> {
    fn from(p: &'a NewPayment) -> Self {
        Self {
            id: DbUuid(p.id.as_uuid()),
            provider: p.provider.as_str(),
            account: &p.account,
            provider_ref: p.provider_ref.as_deref(),
            merchant_ref: p.merchant_ref.as_deref(),
            amount: p.amount.amount_minor(),
            currency: p.amount.currency().to_string(),
            status: PaymentStatus::Pending.as_str(),
            metadata: DbJson(p.metadata.clone()),
            customer_email: p.customer_email.as_deref(),
            description: p.description.as_deref(),
            created_at: DbInstant(p.created_at),
            updated_at: DbInstant(p.created_at),
            client_token_hash: p.client_token_hash.as_deref(),
            callback_token_hash: p.callback_token_hash.as_deref(),
            idempotency_key: p.idempotency.as_ref().map(|i| i.key.as_str()),
            request_fingerprint: p.idempotency.as_ref().map(|i| i.fingerprint.as_str()),
            next_reconcile_at: p.next_reconcile_at.map(DbInstant),
        }
    }
}

/// A payment not stored yet ([`Payment::UNSTORED`]), written in the state an applied
/// event left it in: stored payments start at version 1.
#[derive(Insertable)]
#[diesel(table_name = payments)]
pub struct UnstoredPaymentRow<'a> {
    pub id: DbUuid,
    pub provider: &'a str,
    pub account: &'a str,
    pub provider_ref: Option<&'a str>,
    pub merchant_ref: Option<&'a str>,
    pub amount: i64,
    pub currency: String,
    pub metadata: DbJson,
    pub customer_email: Option<&'a str>,
    pub description: Option<&'a str>,
    pub created_at: DbInstant,
    pub checkout_url: Option<&'a str>,
    pub qr_text: Option<&'a str>,
    pub expires_at: Option<DbInstant>,
    pub failure_reason: Option<&'a str>,
    pub checkout_extras: Option<DbJson>,
    pub version: i64,
    pub status: &'static str,
    pub paid_amount: i64,
    pub refunded_amount: i64,
    pub dispute_status: Option<&'static str>,
    pub updated_at: DbInstant,
    pub paid_at: Option<DbInstant>,
}

impl<'a> From<&'a Payment> for UnstoredPaymentRow<'a> {
    fn from(p: &'a Payment) -> Self {
        Self {
            id: DbUuid(p.id.as_uuid()),
            provider: p.provider.as_str(),
            account: &p.account,
            provider_ref: p.provider_ref.as_deref(),
            merchant_ref: p.merchant_ref.as_deref(),
            amount: p.amount.amount_minor(),
            currency: p.amount.currency().to_string(),
            metadata: DbJson(p.metadata.clone()),
            customer_email: p.customer_email.as_deref(),
            description: p.description.as_deref(),
            created_at: DbInstant(p.created_at),
            checkout_url: p.checkout_url.as_deref(),
            qr_text: p.qr_text.as_deref(),
            expires_at: p.expires_at.map(DbInstant),
            failure_reason: p.failure_reason.as_deref(),
            checkout_extras: p.checkout_extras.clone().map(DbJson),
            version: 1,
            status: p.status.as_str(),
            paid_amount: p.paid_amount,
            refunded_amount: p.refunded_amount,
            dispute_status: p.dispute_status.map(|d| d.as_str()),
            updated_at: DbInstant(p.updated_at),
            paid_at: p.paid_at.map(DbInstant),
        }
    }
}

/// What the provider answered when the payment was created there.
#[derive(AsChangeset)]
#[diesel(table_name = payments)]
pub struct CheckoutChanges<'a> {
    provider_ref: &'a str,
    checkout_url: Option<&'a str>,
    qr_text: Option<&'a str>,
    expires_at: Option<DbInstant>,
    checkout_extras: Option<DbJson>,
}

impl<'a> From<&'a Checkout> for CheckoutChanges<'a> {
    fn from(c: &'a Checkout) -> Self {
        Self {
            provider_ref: &c.provider_ref,
            checkout_url: c.checkout_url.as_deref(),
            qr_text: c.qr_text.as_deref(),
            expires_at: c.expires_at.map(DbInstant),
            checkout_extras: (!c.extras.is_null()).then(|| DbJson(c.extras.clone())),
        }
    }
}

/// The columns an applied event may change.
#[derive(AsChangeset)]
#[diesel(table_name = payments, treat_none_as_null = true)]
pub struct PaymentChanges {
    status: &'static str,
    paid_amount: i64,
    refunded_amount: i64,
    dispute_status: Option<&'static str>,
    updated_at: DbInstant,
    paid_at: Option<DbInstant>,
}

impl From<&Payment> for PaymentChanges {
    fn from(p: &Payment) -> Self {
        Self {
            status: p.status.as_str(),
            paid_amount: p.paid_amount,
            refunded_amount: p.refunded_amount,
            dispute_status: p.dispute_status.map(|d| d.as_str()),
            updated_at: DbInstant(p.updated_at),
            paid_at: p.paid_at.map(DbInstant),
        }
    }
}

/// The changes of many applied events as one column array each, for a set-based
/// UPDATE (Postgres `unnest`), in the order of the applications given.
#[derive(Default)]
pub struct PaymentChangeArrays {
    pub ids: Vec<DbUuid>,
    pub versions: Vec<i64>,
    pub statuses: Vec<&'static str>,
    pub paid_amounts: Vec<i64>,
    pub refunded_amounts: Vec<i64>,
    pub dispute_statuses: Vec<Option<&'static str>>,
    pub updated_ats: Vec<DbInstant>,
    pub paid_ats: Vec<Option<DbInstant>>,
}

impl PaymentChangeArrays {
    pub fn push(&mut self, p: &Payment) {
        let changes = PaymentChanges::from(p);
        self.ids.push(DbUuid(p.id.as_uuid()));
        self.versions.push(p.version);
        self.statuses.push(changes.status);
        self.paid_amounts.push(changes.paid_amount);
        self.refunded_amounts.push(changes.refunded_amount);
        self.dispute_statuses.push(changes.dispute_status);
        self.updated_ats.push(changes.updated_at);
        self.paid_ats.push(changes.paid_at);
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = payments)]
pub struct PaymentRow {
    id: DbUuid,
    provider: String,
    account: String,
    provider_ref: Option<String>,
    merchant_ref: Option<String>,
    amount: i64,
    currency: String,
    status: String,
    paid_amount: i64,
    refunded_amount: i64,
    dispute_status: Option<String>,
    checkout_url: Option<String>,
    qr_text: Option<String>,
    metadata: DbJson,
    customer_email: Option<String>,
    description: Option<String>,
    created_at: DbInstant,
    updated_at: DbInstant,
    paid_at: Option<DbInstant>,
    expires_at: Option<DbInstant>,
    version: i64,
    failure_reason: Option<String>,
    checkout_extras: Option<DbJson>,
    subscription_id: Option<DbUuid>,
    /// Only read to answer a repeated idempotency key.
    pub request_fingerprint: Option<String>,
}

impl TryFrom<PaymentRow> for Payment {
    type Error = StoreError;
    fn try_from(r: PaymentRow) -> Result<Self, StoreError> {
        let currency = Currency::parse(&r.currency).map_err(|e| corrupt("payments.currency", e))?;
        Ok(Payment {
            account: r.account,
            id: PaymentId::from_uuid(r.id.0),
            provider: r.provider.parse().map_err(|e| corrupt("payments.provider", e))?,
            provider_ref: r.provider_ref,
            merchant_ref: r.merchant_ref,
            amount: Money::new(r.amount, currency).map_err(|e| corrupt("payments.amount", e))?,
            status: r.status.parse().map_err(|e| corrupt("payments.status", e))?,
            paid_amount: r.paid_amount,
            refunded_amount: r.refunded_amount,
            dispute_status: r
                .dispute_status
                .map(|d| d.parse())
                .transpose()
                .map_err(|e| corrupt("payments.dispute_status", e))?,
            checkout_url: r.checkout_url,
            qr_text: r.qr_text,
            customer_email: r.customer_email,
            description: r.description,
            metadata: r.metadata.0,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
            paid_at: r.paid_at.map(|t| t.0),
            expires_at: r.expires_at.map(|t| t.0),
            failure_reason: r.failure_reason,
            checkout_extras: r.checkout_extras.map(|j| j.0),
            subscription_id: r
                .subscription_id
                .map(|id| payhook_domain::SubscriptionId::from_uuid(id.0)),
            version: r.version,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = payment_status_history)]
pub struct NewHistoryRow<'a> {
    pub payment_id: DbUuid,
    pub from_status: &'static str,
    pub to_status: &'static str,
    pub applied: bool,
    pub event_id: Option<&'a str>,
    pub reason: &'a str,
    pub at: DbInstant,
}

#[derive(Insertable)]
#[diesel(table_name = outbox)]
pub struct NewOutboxRow<'a> {
    pub topic: &'a str,
    pub payload: DbJsonText,
    pub created_at: DbInstant,
    pub next_attempt_at: DbInstant,
    pub locked_until: Option<DbInstant>,
}

/// The history and outbox rows an application writes; the outbox rows leased until
/// `outbox_lease` when given (handed to this instance's relay), else due at once.
pub fn application_rows<'a>(
    app: &'a EventApplication,
    now: DateTime<Utc>,
    outbox_lease: Option<DateTime<Utc>>,
) -> (Vec<NewHistoryRow<'a>>, Vec<NewOutboxRow<'a>>) {
    let payment_id = DbUuid(app.payment.id.as_uuid());
    let history = app
        .history
        .iter()
        .map(|h| NewHistoryRow {
            payment_id,
            from_status: h.from_status.as_str(),
            to_status: h.to_status.as_str(),
            applied: h.applied,
            event_id: h.event_id.as_ref().map(EventId::as_str),
            reason: &h.reason,
            at: DbInstant(h.at),
        })
        .collect();
    let outbox = app
        .publications
        .iter()
        .map(|p| NewOutboxRow {
            topic: &p.topic,
            // Written as text rather than through a copy of the `Value`.
            payload: DbJsonText(p.payload.to_string()),
            created_at: DbInstant(now),
            next_attempt_at: DbInstant(now),
            locked_until: outbox_lease.map(DbInstant),
        })
        .collect();
    (history, outbox)
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = payment_status_history)]
pub struct HistoryRow {
    from_status: String,
    to_status: String,
    applied: bool,
    event_id: Option<String>,
    reason: String,
    at: DbInstant,
}

impl TryFrom<HistoryRow> for HistoryEntry {
    type Error = StoreError;
    fn try_from(r: HistoryRow) -> Result<Self, StoreError> {
        Ok(HistoryEntry {
            from_status: r.from_status.parse().map_err(|e| corrupt("history.from_status", e))?,
            to_status: r.to_status.parse().map_err(|e| corrupt("history.to_status", e))?,
            applied: r.applied,
            event_id: r
                .event_id
                .map(EventId::parse)
                .transpose()
                .map_err(|e| corrupt("history.event_id", e))?,
            reason: r.reason,
            at: r.at.0,
        })
    }
}

/// The changes that count one failed attempt: due again at `retry_at`, or dead (since `now`).
#[diesel::dsl::auto_type(no_type_alias)]
pub fn failure_changes<'a>(error: &'a str, status: &'static str, next_attempt_at: DbInstant) -> _ {
    let no_lease: Option<DbInstant> = None;
    (
        webhook_events::attempts.eq(webhook_events::attempts + 1_i32),
        webhook_events::last_error.eq(error),
        webhook_events::locked_until.eq(no_lease),
        webhook_events::status.eq(status),
        webhook_events::next_attempt_at.eq(next_attempt_at),
    )
}

/// Status and next attempt after a failure: `failed` until `retry_at`, else `dead` as of `now`.
pub fn after_failure(retry_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> (&'static str, DbInstant) {
    match retry_at {
        Some(at) => ("failed", DbInstant(at)),
        None => ("dead", DbInstant(now)),
    }
}

/// The changes that mark an inbox event processed with its result.
#[diesel::dsl::auto_type(no_type_alias)]
pub fn processed_changes(result: &'static str, now: DbInstant) -> _ {
    let no_lease: Option<DbInstant> = None;
    let no_error: Option<&'static str> = None;
    let processed: &'static str = "processed";
    (
        webhook_events::status.eq(processed),
        webhook_events::result.eq(result),
        webhook_events::processed_at.eq(now),
        webhook_events::locked_until.eq(no_lease),
        webhook_events::last_error.eq(no_error),
    )
}

/// Processed without changing its payment (`stale_transition`). A repeated delivery of
/// such an event that is to be confirmed with the provider queues it again: the
/// provider may have moved on since (a QPay invoice paid in part, then in full, calls
/// back twice under one dedup key).
#[diesel::dsl::auto_type(no_type_alias)]
pub fn changed_nothing() -> _ {
    let processed: &'static str = "processed";
    let stale: &'static str = ProcessingResult::StaleTransition.as_str();
    webhook_events::status
        .eq(processed)
        .and(webhook_events::result.eq(stale))
}

/// Statuses the worker claims from (when due).
pub const CLAIMABLE: [&str; 2] = ["pending", "failed"];

/// The changes that make an event due now with a fresh set of attempts.
#[diesel::dsl::auto_type(no_type_alias)]
pub fn requeue_changes(now: DbInstant) -> _ {
    let no_lease: Option<DbInstant> = None;
    let pending: &'static str = "pending";
    (
        webhook_events::status.eq(pending),
        webhook_events::next_attempt_at.eq(now),
        webhook_events::locked_until.eq(no_lease),
        webhook_events::attempts.eq(0_i32),
    )
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = webhook_events)]
pub struct InboxEntryRow {
    id: i64,
    provider: String,
    event_id: String,
    event_type: String,
    payment_ref: Option<String>,
    status: String,
    result: Option<String>,
    attempts: i32,
    next_attempt_at: DbInstant,
    last_error: Option<String>,
    received_at: DbInstant,
    processed_at: Option<DbInstant>,
}

impl TryFrom<InboxEntryRow> for InboxEntry {
    type Error = StoreError;
    fn try_from(r: InboxEntryRow) -> Result<Self, StoreError> {
        Ok(InboxEntry {
            id: InboxId(r.id),
            provider: r.provider,
            event_id: r.event_id,
            event_type: r.event_type,
            payment_ref: r.payment_ref,
            status: r.status.parse().map_err(|e| corrupt("webhook_events.status", e))?,
            result: r.result,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at.0,
            last_error: r.last_error,
            received_at: r.received_at.0,
            processed_at: r.processed_at.map(|t| t.0),
        })
    }
}

/// What an outbox claim returns, and what a commit returns of the rows it wrote.
#[derive(Queryable, QueryableByName, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxRow {
    id: i64,
    topic: String,
    payload: DbJson,
    created_at: DbInstant,
    attempts: i32,
}

impl From<OutboxRow> for OutboxMessage {
    fn from(r: OutboxRow) -> Self {
        OutboxMessage {
            id: r.id,
            topic: r.topic,
            payload: r.payload.0,
            created_at: r.created_at.0,
            attempts: r.attempts,
        }
    }
}

/// An undelivered outbox row as an operator sees it.
#[derive(Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct UndeliveredRow {
    id: i64,
    topic: String,
    payload: DbJson,
    created_at: DbInstant,
    attempts: i32,
    last_error: Option<String>,
    next_attempt_at: DbInstant,
    dead_at: Option<DbInstant>,
}

impl From<UndeliveredRow> for UndeliveredMessage {
    fn from(r: UndeliveredRow) -> Self {
        UndeliveredMessage {
            id: r.id,
            topic: r.topic,
            payload: r.payload.0,
            created_at: r.created_at.0,
            attempts: r.attempts,
            last_error: r.last_error,
            next_attempt_at: r.next_attempt_at.0,
            dead_at: r.dead_at.map(|d| d.0),
        }
    }
}

/// The `next_attempt_at` of a message never to be claimed again on its own (far past
/// any `now`, and within what both stores' timestamps hold).
pub fn never() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Not held by a running worker's lease at `now`.
#[diesel::dsl::auto_type(no_type_alias)]
pub fn not_leased(now: DbInstant) -> _ {
    webhook_events::locked_until
        .is_null()
        .or(webhook_events::locked_until.le(now))
}

/// A `disputes` row.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Clone)]
#[diesel(table_name = crate::schema::disputes)]
pub struct DisputeRow {
    pub id: DbUuid,
    pub payment_id: DbUuid,
    pub provider_ref: String,
    pub amount: Option<i64>,
    pub currency: Option<String>,
    pub reason: Option<String>,
    pub status: String,
    pub evidence_due_by: Option<DbInstant>,
    pub created_at: DbInstant,
    pub updated_at: DbInstant,
    pub closed_at: Option<DbInstant>,
}

impl TryFrom<DisputeRow> for payhook_domain::Dispute {
    type Error = payhook_domain::ports::StoreError;

    fn try_from(r: DisputeRow) -> Result<Self, Self::Error> {
        let currency = r
            .currency
            .as_deref()
            .map(payhook_domain::Currency::parse)
            .transpose()
            .map_err(|e| payhook_domain::ports::StoreError::Corrupt(e.to_string()))?;
        Ok(Self {
            id: r.id.0,
            payment_id: PaymentId::from_uuid(r.payment_id.0),
            provider_ref: r.provider_ref,
            amount: r.amount,
            currency,
            reason: r.reason,
            status: r.status,
            evidence_due_by: r.evidence_due_by.map(|t| t.0),
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
            closed_at: r.closed_at.map(|t| t.0),
        })
    }
}

/// The row a dispute report makes or updates: `existing` keeps its id, creation time
/// and, once closed, its status and closing time (a closed dispute stays closed; a
/// late report of an open state does not reopen it).
pub fn dispute_row(
    existing: Option<DisputeRow>,
    payment_id: PaymentId,
    report: &payhook_domain::DisputeReport,
    at: DateTime<Utc>,
) -> DisputeRow {
    let closed_before = existing.as_ref().and_then(|e| e.closed_at);
    let keep = |new: Option<i64>, old: Option<i64>| new.or(old);
    match existing {
        Some(old) if closed_before.is_some() && !report.closed => old,
        Some(old) => DisputeRow {
            amount: keep(report.amount, old.amount),
            currency: report.currency.map(|c| c.code().to_owned()).or(old.currency.clone()),
            reason: report.reason.clone().or(old.reason.clone()),
            status: report.status.clone(),
            evidence_due_by: report.evidence_due_by.map(DbInstant).or(old.evidence_due_by),
            updated_at: DbInstant(at),
            closed_at: closed_before.or(report.closed.then_some(DbInstant(at))),
            ..old
        },
        None => DisputeRow {
            id: DbUuid(uuid::Uuid::new_v4()),
            payment_id: DbUuid(payment_id.as_uuid()),
            provider_ref: report.provider_ref.clone(),
            amount: report.amount,
            currency: report.currency.map(|c| c.code().to_owned()),
            reason: report.reason.clone(),
            status: report.status.clone(),
            evidence_due_by: report.evidence_due_by.map(DbInstant),
            created_at: DbInstant(at),
            updated_at: DbInstant(at),
            closed_at: report.closed.then_some(DbInstant(at)),
        },
    }
}

/// A `refunds` row.
#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = crate::schema::refunds)]
pub struct RefundRow {
    pub id: DbUuid,
    pub payment_id: DbUuid,
    pub provider_ref: Option<String>,
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    pub status: String,
    pub origin: String,
    pub idempotency_key: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DbInstant,
    pub updated_at: DbInstant,
    /// When the provider is next asked about it: from its creation while pending.
    pub next_check_at: Option<DbInstant>,
}

impl TryFrom<RefundRow> for payhook_domain::Refund {
    type Error = StoreError;

    fn try_from(r: RefundRow) -> Result<Self, Self::Error> {
        let corrupt = |e: String| StoreError::Corrupt(e);
        let currency = payhook_domain::Currency::parse(&r.currency).map_err(|e| corrupt(e.to_string()))?;
        Ok(Self {
            id: payhook_domain::RefundId::from_uuid(r.id.0),
            payment_id: PaymentId::from_uuid(r.payment_id.0),
            provider_ref: r.provider_ref,
            amount: payhook_domain::Money::new(r.amount, currency).map_err(|e| corrupt(e.to_string()))?,
            reason: r.reason,
            status: r.status.parse().map_err(corrupt)?,
            origin: r.origin.parse().map_err(corrupt)?,
            idempotency_key: r.idempotency_key,
            failure_reason: r.failure_reason,
            created_at: r.created_at.0,
            updated_at: r.updated_at.0,
        })
    }
}
