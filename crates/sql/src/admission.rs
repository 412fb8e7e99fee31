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

use crate::rows::{NewEventRow, NewLogRow};
use crate::types::{Bytes, DbBytesRef, DbInstant, DbJson, Instant, Json};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bool, Integer, Nullable, Text};
use diesel::QueryResult;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use payhook_domain::ports::{Admission, StoreError};
use payhook_domain::{InboxId, Outcome, ProcessingResult, WebhookEvent, WebhookRequest};

// The statement's text, between its bind parameters (see `walk_ast`).

/// The deliveries, from one array per column, in order (`ord`).
const DELIVERIES: &str = "WITH delivery AS (
    SELECT * FROM unnest(";
/// Forensic ids first; then the inbox rows (their `locked_until` follows), in key
/// order, so two batches that share events take their locks in the same order and
/// cannot deadlock.
const INBOX: &str = ") WITH ORDINALITY AS d(log_provider, received_at, method, path, query, headers, raw_body,
        remote_addr, log_event_id, log_event_type, external_id, provider_status, amount,
        provider, event_id, event_type, payment_ref, payload, confirm, ord)
), numbered AS MATERIALIZED (
    SELECT ord, nextval('webhook_logs_id_seq') AS log_id FROM delivery
), inserted AS (
    INSERT INTO webhook_events (provider, event_id, event_type, payment_ref, payload, status,
        next_attempt_at, received_at, log_id, locked_until)
    SELECT d.provider, d.event_id, d.event_type, d.payment_ref, d.payload, 'pending',
        d.received_at, d.received_at, n.log_id, ";
/// The forensic rows, stamped (their `http_status`, then results, then `completed_at`
/// follow).
const FORENSIC: &str = "
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
/// anything makes it due again (`next_attempt_at` follows): the provider may know more
/// now (QPay's second callback after a partial payment). The UPDATE sees only rows
/// stored before this statement, which is all a repeat can find changed. A batch
/// with nothing to confirm (every Stripe and Xendit batch) skips it before touching
/// the table: the EXISTS is a one-time filter, whatever plan the inbox's statistics
/// give the join.
const REQUEUE: &str = "
    FROM delivery d JOIN numbered n USING (ord) LEFT JOIN inserted i ON i.log_id = n.log_id
), requeued AS (
    UPDATE webhook_events e SET status = 'pending', locked_until = NULL, attempts = 0, next_attempt_at = ";
/// (`result` of an event confirmed without change follows.)
const REQUEUE_WHICH: &str = "
    FROM delivery d
    WHERE EXISTS (SELECT 1 FROM delivery WHERE confirm)
      AND e.provider = d.provider AND e.event_id = d.event_id AND d.confirm
      AND e.status = 'processed' AND e.result = ";
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

/// The batch as columns, plus the values every row shares.
struct AdmitBatch<'a> {
    log_provider: Vec<&'a str>,
    received_at: Vec<DbInstant>,
    method: Vec<&'a str>,
    path: Vec<&'a str>,
    query: Vec<&'a str>,
    headers: Vec<DbJson>,
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
    payload: Vec<DbJson>,
    confirm: Vec<bool>,
    lease_until: Option<DbInstant>,
    now: DbInstant,
    http_status: i32,
    accepted: &'static str,
    duplicate: &'static str,
    stale: &'static str,
}

impl<'a> AdmitBatch<'a> {
    fn new(
        deliveries: &'a [(WebhookRequest, WebhookEvent)],
        now: DbInstant,
        lease_until: Option<DbInstant>,
    ) -> Result<Self, StoreError> {
        let n = deliveries.len();
        let accepted = Outcome::accepted();
        let mut batch = Self {
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
            payload: Vec::with_capacity(n),
            confirm: Vec::with_capacity(n),
            lease_until,
            now,
            http_status: i32::from(accepted.http_status),
            accepted: accepted.result.as_str(),
            duplicate: Outcome::duplicate().result.as_str(),
            stale: ProcessingResult::StaleTransition.as_str(),
        };
        for (request, event) in deliveries {
            let log = NewLogRow::new(request, None, now.0);
            let row = NewEventRow::new(event, request.received_at, None, None)?;
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
            batch.payload.push(row.payload);
            batch.confirm.push(event.confirm_with_provider);
        }
        Ok(batch)
    }
}

/// Pushes each value as a bind parameter of its SQL type, separated by commas.
macro_rules! comma_separated_binds {
    ($out:ident, $first_type:ty => $first:expr $(, $sql_type:ty => $value:expr)* $(,)?) => {
        $out.push_bind_param::<$first_type, _>(&$first)?;
        $(
            $out.push_sql(", ");
            $out.push_bind_param::<$sql_type, _>(&$value)?;
        )*
    };
}

impl QueryFragment<Pg> for AdmitBatch<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(DELIVERIES);
        // One array per column, in the order `INBOX` names them.
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
            Array<Json> => self.payload,
            Array<Bool> => self.confirm,
        );
        out.push_sql(INBOX);
        out.push_bind_param::<Nullable<Instant>, _>(&self.lease_until)?;
        out.push_sql(FORENSIC);
        out.push_bind_param::<Integer, _>(&self.http_status)?;
        out.push_sql(", CASE WHEN i.id IS NULL THEN ");
        out.push_bind_param::<Text, _>(self.duplicate)?;
        out.push_sql(" ELSE ");
        out.push_bind_param::<Text, _>(self.accepted)?;
        out.push_sql(" END, ");
        out.push_bind_param::<Instant, _>(&self.now)?;
        out.push_sql(REQUEUE);
        out.push_bind_param::<Instant, _>(&self.now)?;
        out.push_sql(REQUEUE_WHICH);
        out.push_bind_param::<Text, _>(self.stale)?;
        out.push_sql(ANSWER);
        Ok(())
    }
}

impl QueryId for AdmitBatch<'_> {
    type QueryId = AdmitBatch<'static>;
    // The text never changes, so each connection prepares it once.
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// What the statement answers per delivery: its position, then the three ids of
/// `ANSWER`.
type AnswerRow = (i64, Option<i64>, Option<i64>, Option<i64>);

impl Query for AdmitBatch<'_> {
    type SqlType = (BigInt, Nullable<BigInt>, Nullable<BigInt>, Nullable<BigInt>);
}

/// Stores a batch of authenticated deliveries in one statement; an `Admission` per
/// delivery, in order.
pub async fn admit_batch(
    conn: &mut AsyncPgConnection,
    deliveries: &[(WebhookRequest, WebhookEvent)],
    now: chrono::DateTime<chrono::Utc>,
    lease_until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<Vec<Admission>, StoreError> {
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let batch = AdmitBatch::new(deliveries, DbInstant(now), lease_until.map(DbInstant))?;
    let rows: Vec<AnswerRow> = batch.load(conn).await.map_err(crate::db_error)?;
    if rows.len() != deliveries.len() {
        return Err(StoreError::Corrupt(format!(
            "{} admissions for {} deliveries",
            rows.len(),
            deliveries.len()
        )));
    }
    let mut admissions = Vec::with_capacity(rows.len());
    let mut unresolved = Vec::new();
    for (i, (_, inserted, stored_before, stored_now)) in rows.into_iter().enumerate() {
        admissions.push(match (inserted, stored_before.or(stored_now)) {
            (Some(id), _) => Admission::Accepted(InboxId(id)),
            (None, Some(id)) => Admission::Duplicate(InboxId(id)),
            // Stored by a concurrent batch that committed after this statement's
            // snapshot was taken: found below, with a fresh one.
            (None, None) => {
                unresolved.push(i);
                Admission::Duplicate(InboxId(0))
            }
        });
    }
    if !unresolved.is_empty() {
        resolve_concurrent_repeats(conn, deliveries, &unresolved, &mut admissions).await?;
    }
    Ok(admissions)
}

async fn resolve_concurrent_repeats(
    conn: &mut AsyncPgConnection,
    deliveries: &[(WebhookRequest, WebhookEvent)],
    unresolved: &[usize],
    admissions: &mut [Admission],
) -> Result<(), StoreError> {
    use crate::schema::webhook_events as ev;
    use diesel::{ExpressionMethods, QueryDsl};
    let ids: Vec<&str> = unresolved.iter().map(|&i| deliveries[i].1.event_id.as_str()).collect();
    let found: Vec<(String, String, i64)> = ev::table
        .filter(ev::event_id.eq_any(&ids))
        .select((ev::provider, ev::event_id, ev::id))
        .load(conn)
        .await
        .map_err(crate::db_error)?;
    for &i in unresolved {
        let event = &deliveries[i].1;
        let id = found
            .iter()
            .find(|(p, e, _)| p == event.provider.as_str() && e == event.event_id.as_str())
            .map(|(_, _, id)| *id)
            .ok_or_else(|| StoreError::Corrupt(format!("no inbox row for repeated event {}", event.event_id)))?;
        admissions[i] = Admission::Duplicate(InboxId(id));
    }
    Ok(())
}
