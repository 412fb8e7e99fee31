//! The inbox: admission with deduplication, leased claims, failure bookkeeping.

use crate::PgStore;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncConnection, RunQueryDsl};
use payhook_domain::ports::{Admission, ClaimedEvent, StoreError, WebhookInbox};
use payhook_domain::{InboxId, Outcome, WebhookEvent, WebhookRequest};
use payhook_sql::rows::{after_failure, failure_changes, ClaimedRow, NewEventRow, NewLogRow};
use payhook_sql::schema::{webhook_events as ev, webhook_logs as logs};
use payhook_sql::types::{DbInstant, Instant};
use payhook_sql::{db_error, TxError};

// Postgres-only: SKIP LOCKED lets several workers (and instances) claim disjoint
// batches without waiting on each other; the lease makes a crashed worker's rows
// due again.
const CLAIM_SQL: &str = "
    UPDATE webhook_events SET locked_until = $3
    WHERE id IN (
        SELECT id FROM webhook_events
        WHERE status = 'pending' AND next_attempt_at <= $1
          AND (locked_until IS NULL OR locked_until <= $1)
        ORDER BY next_attempt_at, id
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
    RETURNING id, payload, attempts";

#[async_trait]
impl WebhookInbox for PgStore {
    async fn admit(
        &self,
        request: &WebhookRequest,
        event: &WebhookEvent,
    ) -> Result<Admission, StoreError> {
        let mut conn = self.conn().await?;
        let now = Utc::now();
        let admission = conn
            .transaction(async |conn| {
                // Optimistic: most deliveries are new, so log them as accepted and insert
                // the event; only a repeat pays for re-stamping the log row.
                let log_id: i64 = diesel::insert_into(logs::table)
                    .values(NewLogRow::new(request, Some(&Outcome::accepted()), now))
                    .returning(logs::id)
                    .get_result(conn)
                    .await?;
                let inserted: Option<i64> = diesel::insert_into(ev::table)
                    .values(NewEventRow::new(event, request.received_at, log_id)?)
                    .on_conflict((ev::provider, ev::event_id))
                    .do_nothing()
                    .returning(ev::id)
                    .get_result(conn)
                    .await
                    .optional()?;
                if let Some(id) = inserted {
                    return Ok(Admission::Accepted(InboxId(id)));
                }
                let existing: i64 = ev::table
                    .filter(ev::provider.eq(event.provider.as_str()))
                    .filter(ev::event_id.eq(event.event_id.as_str()))
                    .select(ev::id)
                    .get_result(conn)
                    .await?;
                diesel::update(logs::table.find(log_id))
                    .set(logs::processing_result.eq(Outcome::duplicate().result.as_str()))
                    .execute(conn)
                    .await?;
                Ok::<_, TxError>(Admission::Duplicate(InboxId(existing)))
            })
            .await?;
        Ok(admission)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let rows: Vec<ClaimedRow> = {
            let mut conn = self.conn().await?;
            diesel::sql_query(CLAIM_SQL)
                .bind::<Instant, _>(DbInstant(now))
                .bind::<BigInt, _>(i64::from(limit))
                .bind::<Instant, _>(DbInstant(lease_until))
                .load(&mut conn)
                .await
                .map_err(db_error)?
        };
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            match row.into_claimed() {
                Ok(event) => claimed.push(event),
                // A payload no retry can fix (written by an incompatible version):
                // park it for an operator instead of failing the whole batch.
                Err((id, error)) => {
                    tracing::error!(inbox_id = %id, %error, "dead-lettering unreadable inbox event");
                    self.record_failure(id, &error, None).await?;
                }
            }
        }
        Ok(claimed)
    }

    async fn record_failure(
        &self,
        id: InboxId,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let (status, next_attempt_at) = after_failure(retry_at, Utc::now());
        let mut conn = self.conn().await?;
        let updated = diesel::update(ev::table.find(id.0).filter(ev::status.eq("pending")))
            .set(failure_changes(error, status, next_attempt_at))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        if updated == 0 {
            return Err(StoreError::Corrupt(format!(
                "inbox event {id} is not pending"
            )));
        }
        Ok(())
    }
}
