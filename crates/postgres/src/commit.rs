//! Postgres commit of a worker batch's applications in one statement: the new and the
//! version-checked payments, then, for the payments that moved, their history, outbox
//! and alias rows and their events marked processed.
//!
//! Why one statement, as for the admission (see `admission`): BEGIN, the payment
//! INSERT and UPDATE, an INSERT per table, an UPDATE per result and COMMIT were up to
//! nine round trips per batch, each a wait for the database and for a core; and the
//! multi-row INSERTs were `VALUES` lists of a new length every batch, so Postgres
//! parsed and planned each anew. The text is fixed (columns travel as arrays), so each
//! pool connection prepares it once.
//!
//! How: the payments that moved are the ones the INSERT or the UPDATE returned
//! (`moved`); every other row is written only for them. The outbox ids are drawn from
//! their sequence first, in the order the messages were given, so the statement can
//! answer them without reading the payloads back. The foreign keys to the new payments
//! are checked at the end of the statement, when they exist.

use chrono::{DateTime, SubsecRound, Utc};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use payhook_domain::ports::{Commit, StoreError};
use payhook_domain::{EventApplication, InboxId, InboxStatus, MirrorWrite, OutboxMessage, Payment, PaymentId};
use payhook_sql_shared::rows::{application_rows, PaymentChangeArrays, UnstoredPaymentRow};
use payhook_sql_shared::types::{DbInstant, DbJson, DbJsonText, DbUuid, Instant, Json, Uuid};
use std::collections::HashSet;

// The statement's text, between its bind parameters (see `walk_ast`).

/// Payments not stored yet, inserted in the order given (key order, so two batches
/// inserting the same payments take their locks alike and cannot deadlock); one that
/// another worker stored first is left alone (and its application is stale).
const NEW_PAYMENTS: &str = "WITH inserted AS (
    INSERT INTO payments (id, provider, account, provider_ref, merchant_ref, amount, currency, metadata,
        customer_email, description, created_at, checkout_url, qr_text, expires_at, failure_reason,
        checkout_extras, version, status, paid_amount, refunded_amount, dispute_status, updated_at, paid_at)
    SELECT id, provider, account, provider_ref, merchant_ref, amount, currency, metadata,
        customer_email, description, created_at, checkout_url, qr_text, expires_at, failure_reason,
        checkout_extras, 1, status, paid_amount, refunded_amount, dispute_status, updated_at, paid_at
    FROM unnest(";
/// Stored payments change only at the version their application was computed from.
const CHANGED_PAYMENTS: &str =
    ") WITH ORDINALITY AS n(id, provider, account, provider_ref, merchant_ref, amount, currency,
        metadata, customer_email, description, created_at, checkout_url, qr_text, expires_at,
        failure_reason, checkout_extras, status, paid_amount, refunded_amount, dispute_status,
        updated_at, paid_at, ord)
    ORDER BY ord
    ON CONFLICT (provider, account, provider_ref) DO NOTHING
    RETURNING id
), updated AS (
    UPDATE payments AS p SET status = u.status, paid_amount = u.paid_amount,
        refunded_amount = u.refunded_amount, dispute_status = u.dispute_status,
        updated_at = u.updated_at, paid_at = u.paid_at, version = p.version + 1
    FROM unnest(";
/// The history rows of the payments that moved.
const HISTORY: &str = ") AS u(id, version, status, paid_amount, refunded_amount, dispute_status, updated_at, paid_at)
    WHERE p.id = u.id AND p.version = u.version
    RETURNING p.id
), moved AS (
    SELECT id FROM inserted UNION ALL SELECT id FROM updated
), history AS (
    INSERT INTO payment_status_history (payment_id, from_status, to_status, applied, event_id, reason, at)
    SELECT payment_id, from_status, to_status, applied, event_id, reason, at
    FROM unnest(";
/// Their outbox messages, numbered in the order given, ...
const PUBLICATIONS: &str =
    ") WITH ORDINALITY AS h(payment_id, from_status, to_status, applied, event_id, reason, at, ord)
    WHERE payment_id IN (SELECT id FROM moved)
    ORDER BY ord
), publication AS MATERIALIZED (
    SELECT ord, topic, payload, nextval('outbox_id_seq') AS id FROM (
        SELECT ord, topic, payload
        FROM unnest(";
/// ... then stored (created and due now, then `locked_until` follow: the relay's
/// lease, or NULL for due at once).
const OUTBOX: &str = ") WITH ORDINALITY AS o(payment_id, topic, payload, ord)
        WHERE payment_id IN (SELECT id FROM moved)
        ORDER BY ord
    ) AS given
), outboxed AS (
    INSERT INTO outbox (id, topic, payload, created_at, next_attempt_at, locked_until)
    SELECT id, topic, payload, ";
/// Their other provider ids (sorted and without repeats, so the INSERT locks in key order).
const ALIASES: &str = "
    FROM publication ORDER BY id
), aliased AS (
    INSERT INTO payment_aliases (provider, alias, payment_id)
    SELECT provider, alias, payment_id FROM unnest(";
/// The Stripe objects their events carried (one per object: `mirror::winners`),
/// written where what is stored is older (the time follows, then the columns).
const MIRRORED: &str = ") AS a(provider, alias, payment_id)
    WHERE payment_id IN (SELECT id FROM moved)
    ON CONFLICT DO NOTHING
), mirrored AS (
    INSERT INTO stripe_objects AS s (account, object_type, object_id, data, livemode, deleted, customer,
        status_rank, source_event_id, source_event_created, updated_at)
    SELECT account, object_type, object_id, data, livemode, deleted, customer,
        status_rank, source_event_id, source_event_created, ";
const MIRRORED_WHICH: &str = "
    FROM unnest(";
/// Their events, processed with each application's result (the status follows).
const PROCESSED: &str = concat!(
    ") AS m(account, object_type, object_id, data, livemode, deleted, customer,
        status_rank, source_event_id, source_event_created, payment_id)
    WHERE payment_id IN (SELECT id FROM moved)",
    crate::mirror::newer_wins!(),
    "
), processed AS (
    UPDATE webhook_events AS e SET locked_until = NULL, last_error = NULL, result = a.result, status = "
);
/// (The time follows, then each event's id, payment and result.)
const PROCESSED_AT: &str = ", processed_at = ";
const PROCESSED_WHICH: &str = "
    FROM unnest(";
/// The answer: the payments that moved, then each stored message's position and id.
const ANSWER: &str = ") AS a(inbox, payment_id, result)
    WHERE e.id = a.inbox AND a.payment_id IN (SELECT id FROM moved)
)
SELECT id, NULL::bigint, NULL::bigint FROM moved
UNION ALL
SELECT NULL, ord, id FROM publication";

/// The batch as columns, plus the values every row shares.
struct CommitBatch<'a> {
    new: NewPaymentColumns<'a>,
    changed: PaymentChangeArrays,
    history: HistoryColumns<'a>,
    outbox: OutboxColumns<'a>,
    aliases: AliasColumns<'a>,
    mirror: MirrorColumns<'a>,
    processed: ProcessedColumns,
    now: DbInstant,
    outbox_lease: Option<DbInstant>,
}

#[derive(Default)]
struct NewPaymentColumns<'a> {
    id: Vec<DbUuid>,
    provider: Vec<&'a str>,
    account: Vec<&'a str>,
    provider_ref: Vec<Option<&'a str>>,
    merchant_ref: Vec<Option<&'a str>>,
    amount: Vec<i64>,
    currency: Vec<String>,
    metadata: Vec<DbJson>,
    customer_email: Vec<Option<&'a str>>,
    description: Vec<Option<&'a str>>,
    created_at: Vec<DbInstant>,
    checkout_url: Vec<Option<&'a str>>,
    qr_text: Vec<Option<&'a str>>,
    expires_at: Vec<Option<DbInstant>>,
    failure_reason: Vec<Option<&'a str>>,
    checkout_extras: Vec<Option<DbJson>>,
    status: Vec<&'static str>,
    paid_amount: Vec<i64>,
    refunded_amount: Vec<i64>,
    dispute_status: Vec<Option<&'static str>>,
    updated_at: Vec<DbInstant>,
    paid_at: Vec<Option<DbInstant>>,
}

impl<'a> NewPaymentColumns<'a> {
    fn push(&mut self, row: UnstoredPaymentRow<'a>) {
        self.id.push(row.id);
        self.provider.push(row.provider);
        self.account.push(row.account);
        self.provider_ref.push(row.provider_ref);
        self.merchant_ref.push(row.merchant_ref);
        self.amount.push(row.amount);
        self.currency.push(row.currency);
        self.metadata.push(row.metadata);
        self.customer_email.push(row.customer_email);
        self.description.push(row.description);
        self.created_at.push(row.created_at);
        self.checkout_url.push(row.checkout_url);
        self.qr_text.push(row.qr_text);
        self.expires_at.push(row.expires_at);
        self.failure_reason.push(row.failure_reason);
        self.checkout_extras.push(row.checkout_extras);
        self.status.push(row.status);
        self.paid_amount.push(row.paid_amount);
        self.refunded_amount.push(row.refunded_amount);
        self.dispute_status.push(row.dispute_status);
        self.updated_at.push(row.updated_at);
        self.paid_at.push(row.paid_at);
    }
}

#[derive(Default)]
struct HistoryColumns<'a> {
    payment_id: Vec<DbUuid>,
    from_status: Vec<&'static str>,
    to_status: Vec<&'static str>,
    applied: Vec<bool>,
    event_id: Vec<Option<&'a str>>,
    reason: Vec<&'a str>,
    at: Vec<DbInstant>,
}

#[derive(Default)]
struct OutboxColumns<'a> {
    payment_id: Vec<DbUuid>,
    topic: Vec<&'a str>,
    payload: Vec<DbJsonText>,
}

#[derive(Default)]
struct AliasColumns<'a> {
    provider: Vec<&'a str>,
    alias: Vec<&'a str>,
    payment_id: Vec<DbUuid>,
}

#[derive(Default)]
struct MirrorColumns<'a> {
    account: Vec<&'a str>,
    object_type: Vec<&'static str>,
    object_id: Vec<&'a str>,
    data: Vec<&'a str>,
    livemode: Vec<bool>,
    deleted: Vec<bool>,
    customer: Vec<Option<&'a str>>,
    status_rank: Vec<i32>,
    source_event_id: Vec<&'a str>,
    source_event_created: Vec<i64>,
    payment_id: Vec<DbUuid>,
}

#[derive(Default)]
struct ProcessedColumns {
    inbox: Vec<i64>,
    payment_id: Vec<DbUuid>,
    result: Vec<&'static str>,
}

impl<'a> CommitBatch<'a> {
    /// The rows of `applications`, each mapped as `rows` maps it for every store.
    fn new(
        applications: &'a [(InboxId, EventApplication)],
        now: DateTime<Utc>,
        outbox_lease: Option<DateTime<Utc>>,
    ) -> Self {
        let mut batch = CommitBatch {
            new: NewPaymentColumns::default(),
            changed: PaymentChangeArrays::default(),
            history: HistoryColumns::default(),
            outbox: OutboxColumns::default(),
            aliases: AliasColumns::default(),
            mirror: MirrorColumns::default(),
            processed: ProcessedColumns::default(),
            now: DbInstant(now),
            outbox_lease: outbox_lease.map(DbInstant),
        };
        let mut aliases = Vec::new();
        let mut unstored = Vec::new();
        for (inbox, app) in applications {
            let payment = &app.payment;
            let payment_id = DbUuid(payment.id.as_uuid());
            if payment.version == Payment::UNSTORED {
                unstored.push(payment);
            } else {
                batch.changed.push(payment);
            }
            let (history, outbox) = application_rows(app, now, outbox_lease);
            for h in history {
                batch.history.payment_id.push(h.payment_id);
                batch.history.from_status.push(h.from_status);
                batch.history.to_status.push(h.to_status);
                batch.history.applied.push(h.applied);
                batch.history.event_id.push(h.event_id);
                batch.history.reason.push(h.reason);
                batch.history.at.push(h.at);
            }
            for o in outbox {
                batch.outbox.payment_id.push(payment_id);
                batch.outbox.topic.push(o.topic);
                batch.outbox.payload.push(o.payload);
            }
            for alias in &app.aliases {
                aliases.push((payment.provider.as_str(), alias.as_str(), payment_id));
            }
            batch.processed.inbox.push(inbox.0);
            batch.processed.payment_id.push(payment_id);
            batch.processed.result.push(app.result.as_str());
        }
        unstored.sort_by(|a, b| {
            (a.provider.as_str(), &a.account, &a.provider_ref).cmp(&(b.provider.as_str(), &b.account, &b.provider_ref))
        });
        for payment in unstored {
            batch.new.push(UnstoredPaymentRow::from(payment));
        }
        let writes: Vec<(&MirrorWrite, DbUuid)> = applications
            .iter()
            .filter_map(|(_, app)| app.mirror.as_deref().map(|w| (w, DbUuid(app.payment.id.as_uuid()))))
            .collect();
        let only: Vec<&MirrorWrite> = writes.iter().map(|(w, _)| *w).collect();
        for i in payhook_sql_shared::mirror::winners(&only) {
            let (w, payment_id) = writes[i];
            let m = &mut batch.mirror;
            m.account.push(&w.account);
            m.object_type.push(w.object_type.as_str());
            m.object_id.push(&w.object_id);
            m.data.push(&w.data);
            m.livemode.push(w.livemode);
            m.deleted.push(w.deleted);
            m.customer.push(w.customer.as_deref());
            m.status_rank.push(w.status_rank);
            m.source_event_id.push(&w.source_event_id);
            m.source_event_created.push(w.source_event_created);
            m.payment_id.push(payment_id);
        }
        aliases.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        aliases.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
        for (provider, alias, payment_id) in aliases {
            batch.aliases.provider.push(provider);
            batch.aliases.alias.push(alias);
            batch.aliases.payment_id.push(payment_id);
        }
        batch
    }
}

impl QueryFragment<Pg> for CommitBatch<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let (new, changed, history, outbox) = (&self.new, &self.changed, &self.history, &self.outbox);
        out.push_sql(NEW_PAYMENTS);
        comma_separated_binds!(
            out,
            Array<Uuid> => new.id,
            Array<Text> => new.provider,
            Array<Text> => new.account,
            Array<Nullable<Text>> => new.provider_ref,
            Array<Nullable<Text>> => new.merchant_ref,
            Array<BigInt> => new.amount,
            Array<Text> => new.currency,
            Array<Json> => new.metadata,
            Array<Nullable<Text>> => new.customer_email,
            Array<Nullable<Text>> => new.description,
            Array<Instant> => new.created_at,
            Array<Nullable<Text>> => new.checkout_url,
            Array<Nullable<Text>> => new.qr_text,
            Array<Nullable<Instant>> => new.expires_at,
            Array<Nullable<Text>> => new.failure_reason,
            Array<Nullable<Json>> => new.checkout_extras,
            Array<Text> => new.status,
            Array<BigInt> => new.paid_amount,
            Array<BigInt> => new.refunded_amount,
            Array<Nullable<Text>> => new.dispute_status,
            Array<Instant> => new.updated_at,
            Array<Nullable<Instant>> => new.paid_at,
        );
        out.push_sql(CHANGED_PAYMENTS);
        comma_separated_binds!(
            out,
            Array<Uuid> => changed.ids,
            Array<BigInt> => changed.versions,
            Array<Text> => changed.statuses,
            Array<BigInt> => changed.paid_amounts,
            Array<BigInt> => changed.refunded_amounts,
            Array<Nullable<Text>> => changed.dispute_statuses,
            Array<Instant> => changed.updated_ats,
            Array<Nullable<Instant>> => changed.paid_ats,
        );
        out.push_sql(HISTORY);
        comma_separated_binds!(
            out,
            Array<Uuid> => history.payment_id,
            Array<Text> => history.from_status,
            Array<Text> => history.to_status,
            Array<Bool> => history.applied,
            Array<Nullable<Text>> => history.event_id,
            Array<Text> => history.reason,
            Array<Instant> => history.at,
        );
        out.push_sql(PUBLICATIONS);
        comma_separated_binds!(
            out,
            Array<Uuid> => outbox.payment_id,
            Array<Text> => outbox.topic,
            Array<Json> => outbox.payload,
        );
        out.push_sql(OUTBOX);
        comma_separated_binds!(
            out,
            Instant => self.now,
            Instant => self.now,
            Nullable<Instant> => self.outbox_lease,
        );
        out.push_sql(ALIASES);
        comma_separated_binds!(
            out,
            Array<Text> => self.aliases.provider,
            Array<Text> => self.aliases.alias,
            Array<Uuid> => self.aliases.payment_id,
        );
        out.push_sql(MIRRORED);
        out.push_bind_param::<Instant, _>(&self.now)?;
        out.push_sql(MIRRORED_WHICH);
        let m = &self.mirror;
        comma_separated_binds!(
            out,
            Array<Text> => m.account,
            Array<Text> => m.object_type,
            Array<Text> => m.object_id,
            Array<Text> => m.data,
            Array<Bool> => m.livemode,
            Array<Bool> => m.deleted,
            Array<Nullable<Text>> => m.customer,
            Array<Integer> => m.status_rank,
            Array<Text> => m.source_event_id,
            Array<BigInt> => m.source_event_created,
            Array<Uuid> => m.payment_id,
        );
        out.push_sql(PROCESSED);
        out.push_bind_param::<Text, _>(InboxStatus::Processed.as_str())?;
        out.push_sql(PROCESSED_AT);
        out.push_bind_param::<Instant, _>(&self.now)?;
        out.push_sql(PROCESSED_WHICH);
        comma_separated_binds!(
            out,
            Array<BigInt> => self.processed.inbox,
            Array<Uuid> => self.processed.payment_id,
            Array<Text> => self.processed.result,
        );
        out.push_sql(ANSWER);
        Ok(())
    }
}

/// The statement's identity for diesel's cache of prepared statements.
struct CommitBatchId;

impl QueryId for CommitBatch<'_> {
    type QueryId = CommitBatchId;
    // The text never changes, so each connection prepares it once.
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// What the statement answers: a payment that moved, or a stored message's position
/// (from 1, in the order given) and id.
type AnswerRow = (Option<DbUuid>, Option<i64>, Option<i64>);

impl Query for CommitBatch<'_> {
    type SqlType = (Nullable<Uuid>, Nullable<BigInt>, Nullable<BigInt>);
}

/// Stores the applications in one statement: a `Commit` per application, in order,
/// and the outbox messages stored, in the order they were given.
pub async fn commit_batch(
    conn: &mut AsyncPgConnection,
    applications: &[(InboxId, EventApplication)],
    now: DateTime<Utc>,
    outbox_lease: Option<DateTime<Utc>>,
) -> Result<(Vec<Commit>, Vec<OutboxMessage>), StoreError> {
    if applications.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let rows: Vec<AnswerRow> = CommitBatch::new(applications, now, outbox_lease)
        .load(conn)
        .await
        .map_err(payhook_sql_shared::db_error)?;
    let mut moved = HashSet::new();
    let mut stored = Vec::new();
    for row in rows {
        match row {
            (Some(payment), None, None) => {
                moved.insert(PaymentId::from_uuid(payment.0));
            }
            (None, Some(position), Some(id)) => stored.push((position, id)),
            other => return Err(StoreError::Corrupt(format!("unexpected commit answer {other:?}"))),
        }
    }
    let commits = applications
        .iter()
        .map(|(_, app)| {
            if moved.contains(&app.payment.id) {
                Commit::Committed
            } else {
                Commit::Stale
            }
        })
        .collect();
    // The messages as stored: the text binds `now` as their creation time, which
    // Postgres keeps to the microsecond.
    let created_at = now.trunc_subsecs(6);
    let publications: Vec<_> = applications.iter().flat_map(|(_, app)| &app.publications).collect();
    stored.sort_unstable();
    let messages = stored
        .into_iter()
        .map(|(position, id)| {
            let publication = usize::try_from(position - 1)
                .ok()
                .and_then(|i| publications.get(i))
                .ok_or_else(|| StoreError::Corrupt(format!("no outbox message at position {position}")))?;
            Ok(OutboxMessage {
                id,
                topic: publication.topic.clone(),
                payload: publication.payload.clone(),
                created_at,
                attempts: 0,
            })
        })
        .collect::<Result<_, StoreError>>()?;
    Ok((commits, messages))
}
