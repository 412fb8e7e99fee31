//! Postgres admission of a group commit's batch in one statement: forensic rows, inbox
//! rows, the stamp of each forensic row and the requeue of repeated callbacks, in one
//! round trip and one implicit transaction.
//!
//! Why one statement: on a saturated machine each round trip costs a wake-up of the
//! database backend and one of payhook, each waiting for a core. BEGIN, two INSERTs
//! and COMMIT were four; the batch's answer waited for all of them (measured in
//! docs/performance.md: the floor's own two-INSERT transaction doubles its rate when
//! sent as one statement). The text is fixed (columns travel as arrays), so each pool
//! connection prepares it once.
//!
//! How: the forensic ids are drawn from their sequence first, so the inbox rows can
//! name them; the inbox INSERT runs before the forensic one, so each forensic row is
//! stamped `accepted` or `duplicate` as it is written. The foreign key from the inbox
//! to the forensic log is checked at the end of the statement, when both exist.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::query_builder::AsChangeset;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use payhook_domain::ports::{Admission, StoreError};
use payhook_domain::{InboxId, Outcome, WebhookEvent, WebhookRequest};
use payhook_sql_shared::rows::{changed_nothing, requeue_changes, NewEventRow, NewLogRow};
use payhook_sql_shared::types::{Bytes, DbBytesRef, DbInstant, DbJsonText, Instant, Json};

// The statement's text, between its bind parameters (see `walk_ast`).

/// The deliveries, from one array per column, in order (`ord`).
const DELIVERIES: &str = "WITH delivery AS (
    SELECT * FROM unnest(";
/// Forensic ids first; then the inbox rows in key order, so two batches that share
/// events take their locks in the same order and cannot deadlock; then the forensic
/// rows, stamped (their `http_status`, then results, then `completed_at` follow).
const INBOX_THEN_FORENSIC: &str =
    ") WITH ORDINALITY AS d(log_provider, received_at, method, path, query, headers, raw_body,
        remote_addr, log_event_id, log_event_type, external_id, provider_status, amount,
        provider, event_id, event_type, payment_ref, account, payload, status, next_attempt_at,
        locked_until, confirm, ord)
), numbered AS MATERIALIZED (
    SELECT ord, nextval('webhook_logs_id_seq') AS log_id FROM delivery
), inserted AS (
    INSERT INTO webhook_events (provider, event_id, event_type, payment_ref, account, payload, status,
        next_attempt_at, received_at, log_id, locked_until)
    SELECT d.provider, d.event_id, d.event_type, d.payment_ref, d.account, d.payload, d.status,
        d.next_attempt_at, d.received_at, n.log_id, d.locked_until
    FROM delivery d JOIN numbered n USING (ord)
    ORDER BY d.provider, d.event_id
    ON CONFLICT (provider, event_id) DO NOTHING
    RETURNING id, log_id, provider, event_id
), logged AS (
    INSERT INTO webhook_logs (id, provider, received_at, method, path, query, headers, raw_body,
        remote_addr, event_id, event_type, external_id, provider_status, amount,
        http_status, processing_result, completed_at)
    SELECT n.log_id, d.log_provider, d.received_at, d.method, d.path, d.query, d.headers, d.raw_body,
        d.remote_addr, d.log_event_id, d.log_event_type, d.external_id, d.provider_status, d.amount, ";
/// A repeat of an event that was confirmed with the provider without changing
/// anything (`rows::changed_nothing`) is due again (`rows::requeue_changes`, the SET
/// that follows): the provider may know more now (QPay's second callback after a
/// partial payment). The UPDATE sees only rows stored before this statement, which is
/// all a repeat can find changed. A batch with nothing to confirm (every Stripe and
/// Xendit batch) skips it before touching the table: the EXISTS is a one-time filter,
/// whatever plan the inbox's statistics give the join.
const REQUEUE: &str = "
    FROM delivery d JOIN numbered n USING (ord) LEFT JOIN inserted i ON i.log_id = n.log_id
), requeued AS (
    UPDATE webhook_events SET ";
/// (`rows::changed_nothing` follows.)
const REQUEUE_WHICH: &str = "
    FROM delivery d
    WHERE EXISTS (SELECT 1 FROM delivery WHERE confirm)
      AND webhook_events.provider = d.provider AND webhook_events.event_id = d.event_id AND d.confirm
      AND ";
/// Per delivery: the inbox id it was stored under; for a repeat only, the id of the
/// event stored before this statement, else of the same event stored earlier in
/// this batch (CASE runs the look-ups only for repeats).
const ANSWER: &str = "
)
SELECT n.ord,
    i.id,
    CASE WHEN i.id IS NULL THEN
        (SELECT e.id FROM webhook_events e WHERE e.provider = d.provider AND e.event_id = d.event_id)
    END,
    CASE WHEN i.id IS NULL THEN
        (SELECT j.id FROM inserted j WHERE j.provider = d.provider AND j.event_id = d.event_id)
    END
FROM delivery d JOIN numbered n USING (ord) LEFT JOIN inserted i ON i.log_id = n.log_id
ORDER BY n.ord";

/// The batch as columns, plus the values every row shares; the requeue's changes and
/// condition are `rows`' own (`Requeue`, `Unchanged`), written into the text.
struct AdmitBatch<'a, Requeue, Unchanged> {
    log_provider: Vec<&'a str>,
    received_at: Vec<DbInstant>,
    method: Vec<&'a str>,
    path: Vec<&'a str>,
    query: Vec<&'a str>,
    headers: Vec<DbJsonText>,
    raw_body: Vec<DbBytesRef<'a>>,
    remote_addr: Vec<Option<&'a str>>,
    log_event_id: Vec<Option<&'a str>>,
    log_event_type: Vec<Option<&'a str>>,
    external_id: Vec<Option<&'a str>>,
    provider_status: Vec<Option<&'a str>>,
    amount: Vec<Option<i64>>,
    provider: Vec<&'a str>,
    event_id: Vec<&'a str>,
    event_type: Vec<&'a str>,
    payment_ref: Vec<Option<String>>,
    account: Vec<&'a str>,
    payload: Vec<DbJsonText>,
    status: Vec<&'static str>,
    next_attempt_at: Vec<DbInstant>,
    locked_until: Vec<Option<DbInstant>>,
    confirm: Vec<bool>,
    now: DbInstant,
    http_status: i32,
    accepted: &'static str,
    duplicate: &'static str,
    requeue: Requeue,
    unchanged: Unchanged,
}

/// Builds the statement for `deliveries`, each row mapped as `NewLogRow` and
/// `NewEventRow` map it for every store.
fn admit_batch_statement(
    deliveries: &[(WebhookRequest, WebhookEvent)],
    now: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
) -> Result<AdmitBatch<'_, impl QueryFragment<Pg> + Send, impl QueryFragment<Pg> + Send>, StoreError> {
    let n = deliveries.len();
    let accepted = Outcome::accepted();
    let mut batch = AdmitBatch {
        log_provider: Vec::with_capacity(n),
        received_at: Vec::with_capacity(n),
        method: Vec::with_capacity(n),
        path: Vec::with_capacity(n),
        query: Vec::with_capacity(n),
        headers: Vec::with_capacity(n),
        raw_body: Vec::with_capacity(n),
        remote_addr: Vec::with_capacity(n),
        log_event_id: Vec::with_capacity(n),
        log_event_type: Vec::with_capacity(n),
        external_id: Vec::with_capacity(n),
        provider_status: Vec::with_capacity(n),
        amount: Vec::with_capacity(n),
        provider: Vec::with_capacity(n),
        event_id: Vec::with_capacity(n),
        event_type: Vec::with_capacity(n),
        payment_ref: Vec::with_capacity(n),
        account: Vec::with_capacity(n),
        payload: Vec::with_capacity(n),
        status: Vec::with_capacity(n),
        next_attempt_at: Vec::with_capacity(n),
        locked_until: Vec::with_capacity(n),
        confirm: Vec::with_capacity(n),
        now: DbInstant(now),
        http_status: i32::from(accepted.http_status),
        accepted: accepted.result.as_str(),
        duplicate: Outcome::duplicate().result.as_str(),
        requeue: requeue_changes(DbInstant(now)).as_changeset(),
        unchanged: changed_nothing(),
    };
    for (request, event) in deliveries {
        let log = NewLogRow::new(request, None, now);
        // Its forensic row is numbered by the statement itself.
        let row = NewEventRow::new(event, request.received_at, None, lease_until)?;
        batch.log_provider.push(log.provider);
        batch.received_at.push(log.received_at);
        batch.method.push(log.method);
        batch.path.push(log.path);
        batch.query.push(log.query);
        batch.headers.push(log.headers);
        batch.raw_body.push(log.raw_body);
        batch.remote_addr.push(log.remote_addr);
        batch.log_event_id.push(log.event_id);
        batch.log_event_type.push(log.event_type);
        batch.external_id.push(log.external_id);
        batch.provider_status.push(log.provider_status);
        batch.amount.push(log.amount);
        batch.provider.push(row.provider);
        batch.event_id.push(row.event_id);
        batch.event_type.push(row.event_type);
        batch.payment_ref.push(row.payment_ref);
        batch.account.push(row.account);
        batch.payload.push(row.payload);
        batch.status.push(row.status);
        batch.next_attempt_at.push(row.next_attempt_at);
        batch.locked_until.push(row.locked_until);
        batch.confirm.push(event.confirm_with_provider);
    }
    Ok(batch)
}

impl<Requeue, Unchanged> QueryFragment<Pg> for AdmitBatch<'_, Requeue, Unchanged>
where
    Requeue: QueryFragment<Pg>,
    Unchanged: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(DELIVERIES);
        // One array per column, in the order `INBOX_THEN_FORENSIC` names them.
        comma_separated_binds!(
            out,
            Array<Text> => self.log_provider,
            Array<Instant> => self.received_at,
            Array<Text> => self.method,
            Array<Text> => self.path,
            Array<Text> => self.query,
            Array<Json> => self.headers,
            Array<Bytes> => self.raw_body,
            Array<Nullable<Text>> => self.remote_addr,
            Array<Nullable<Text>> => self.log_event_id,
            Array<Nullable<Text>> => self.log_event_type,
            Array<Nullable<Text>> => self.external_id,
            Array<Nullable<Text>> => self.provider_status,
            Array<Nullable<BigInt>> => self.amount,
            Array<Text> => self.provider,
            Array<Text> => self.event_id,
            Array<Text> => self.event_type,
            Array<Nullable<Text>> => self.payment_ref,
            Array<Text> => self.account,
            Array<Json> => self.payload,
            Array<Text> => self.status,
            Array<Instant> => self.next_attempt_at,
            Array<Nullable<Instant>> => self.locked_until,
            Array<Bool> => self.confirm,
        );
        out.push_sql(INBOX_THEN_FORENSIC);
        out.push_bind_param::<Integer, _>(&self.http_status)?;
        out.push_sql(", CASE WHEN i.id IS NULL THEN ");
        out.push_bind_param::<Text, _>(self.duplicate)?;
        out.push_sql(" ELSE ");
        out.push_bind_param::<Text, _>(self.accepted)?;
        out.push_sql(" END, ");
        out.push_bind_param::<Instant, _>(&self.now)?;
        out.push_sql(REQUEUE);
        self.requeue.walk_ast(out.reborrow())?;
        out.push_sql(REQUEUE_WHICH);
        self.unchanged.walk_ast(out.reborrow())?;
        out.push_sql(ANSWER);
        Ok(())
    }
}

/// The statement's identity for diesel's cache of prepared statements.
struct AdmitBatchId;

impl<Requeue, Unchanged> QueryId for AdmitBatch<'_, Requeue, Unchanged> {
    type QueryId = AdmitBatchId;
    // The text never changes, so each connection prepares it once.
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// What the statement answers per delivery: its position, then the three ids of
/// `ANSWER`.
type AnswerRow = (i64, Option<i64>, Option<i64>, Option<i64>);

impl<Requeue, Unchanged> Query for AdmitBatch<'_, Requeue, Unchanged> {
    type SqlType = (BigInt, Nullable<BigInt>, Nullable<BigInt>, Nullable<BigInt>);
}

/// Stores a batch of authenticated deliveries in one statement; an `Admission` per
/// delivery, in order.
pub async fn admit_batch(
    conn: &mut AsyncPgConnection,
    deliveries: &[(WebhookRequest, WebhookEvent)],
    now: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
) -> Result<Vec<Admission>, StoreError> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<AnswerRow> = admit_batch_statement(deliveries, now, lease_until)?
        .load(conn)
        .await
        .map_err(payhook_sql_shared::db_error)?;
    if rows.len() != deliveries.len() {
        return Err(StoreError::Corrupt(format!(
            "{} admissions for {} deliveries",
            rows.len(),
            deliveries.len()
        )));
    }
    let answered: Vec<Option<Admission>> = rows
        .into_iter()
        .map(
            |(_, inserted, stored_before, stored_now)| match (inserted, stored_before.or(stored_now)) {
                (Some(id), _) => Some(Admission::Accepted(InboxId(id))),
                (None, Some(id)) => Some(Admission::Duplicate(InboxId(id))),
                // Stored by a concurrent batch that committed after this statement's
                // snapshot was taken: looked up below, with a fresh one.
                (None, None) => None,
            },
        )
        .collect();
    if answered.iter().all(Option::is_some) {
        return Ok(answered.into_iter().flatten().collect());
    }
    let stored = stored_elsewhere(conn, deliveries, &answered).await?;
    answered
        .into_iter()
        .zip(deliveries)
        .map(|(answer, (_, event))| match answer {
            Some(admission) => Ok(admission),
            None => stored
                .iter()
                .find(|(p, e, _)| p == event.provider.as_str() && e == event.event_id.as_str())
                .map(|(_, _, id)| Admission::Duplicate(InboxId(*id)))
                .ok_or_else(|| StoreError::Corrupt(format!("no inbox row for repeated event {}", event.event_id))),
        })
        .collect()
}

/// `(provider, event_id, id)` of the inbox rows of the deliveries left unanswered.
async fn stored_elsewhere(
    conn: &mut AsyncPgConnection,
    deliveries: &[(WebhookRequest, WebhookEvent)],
    answered: &[Option<Admission>],
) -> Result<Vec<(String, String, i64)>, StoreError> {
    use diesel::{ExpressionMethods, QueryDsl};
    use payhook_sql_shared::schema::webhook_events as ev;
    let ids: Vec<&str> = deliveries
        .iter()
        .zip(answered)
        .filter(|(_, answer)| answer.is_none())
        .map(|((_, event), _)| event.event_id.as_str())
        .collect();
    ev::table
        .filter(ev::event_id.eq_any(&ids))
        .select((ev::provider, ev::event_id, ev::id))
        .load(conn)
        .await
        .map_err(payhook_sql_shared::db_error)
}
