//! The inbox: admission with deduplication, leased claims, failure bookkeeping.

use crate::rows::NewLogRow;
use crate::schema::{webhook_events as ev, webhook_logs as logs};
use crate::{db_error, PgStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Int4, Int8, Jsonb, Timestamptz};
use diesel_async::{AsyncConnection, RunQueryDsl};
use payhook_domain::ports::{Admission, ClaimedEvent, StoreError, WebhookInbox};
use payhook_domain::{InboxId, Outcome, WebhookEvent, WebhookRequest};

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = Int8)]
    id: i64,
    #[diesel(sql_type = Jsonb)]
    payload: serde_json::Value,
    #[diesel(sql_type = Int4)]
    attempts: i32,
}

// SKIP LOCKED lets several workers (and several instances) claim disjoint batches
// without waiting on each other; the lease makes a crashed worker's rows due again.
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
        let payload =
            serde_json::to_value(event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut conn = self.conn().await?;
        let now = Utc::now();
        conn.transaction(async |conn| {
            // Optimistic: most deliveries are new, so log them as accepted and insert
            // the event; only a repeat pays for re-stamping the log row.
            let log_id: i64 = diesel::insert_into(logs::table)
                .values(NewLogRow::new(request, Some(&Outcome::accepted()), now))
                .returning(logs::id)
                .get_result(conn)
                .await?;
            let inserted: Option<i64> = diesel::insert_into(ev::table)
                .values((
                    ev::provider.eq(event.provider.as_str()),
                    ev::event_id.eq(event.event_id.as_str()),
                    ev::event_type.eq(&event.event_type),
                    ev::payment_ref.eq(event.payment.describe()),
                    ev::payload.eq(&payload),
                    ev::next_attempt_at.eq(request.received_at),
                    ev::received_at.eq(request.received_at),
                    ev::log_id.eq(log_id),
                ))
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
            let duplicate = Outcome::duplicate();
            diesel::update(logs::table.find(log_id))
                .set(logs::processing_result.eq(duplicate.result.as_str()))
                .execute(conn)
                .await?;
            Ok::<_, diesel::result::Error>(Admission::Duplicate(InboxId(existing)))
        })
        .await
        .map_err(db_error)
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<ClaimedEvent>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<ClaimedRow> = diesel::sql_query(CLAIM_SQL)
            .bind::<Timestamptz, _>(now)
            .bind::<Int8, _>(i64::from(limit))
            .bind::<Timestamptz, _>(lease_until)
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            match serde_json::from_value::<WebhookEvent>(row.payload) {
                Ok(event) => claimed.push(ClaimedEvent {
                    id: InboxId(row.id),
                    event,
                    attempts: row.attempts,
                }),
                Err(e) => {
                    // A payload no retry can fix (written by an incompatible version):
                    // park it for an operator instead of failing the whole batch.
                    let error = format!("stored payload is not a readable event: {e}");
                    tracing::error!(inbox_id = row.id, %error, "dead-lettering unreadable inbox event");
                    drop(conn);
                    self.record_failure(InboxId(row.id), &error, None).await?;
                    conn = self.conn().await?;
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
        let mut conn = self.conn().await?;
        let target = ev::table.find(id.0);
        let common = (
            ev::attempts.eq(ev::attempts + 1),
            ev::last_error.eq(error),
            ev::locked_until.eq(None::<DateTime<Utc>>),
        );
        let updated = match retry_at {
            Some(at) => {
                diesel::update(target)
                    .set((common, ev::status.eq("pending"), ev::next_attempt_at.eq(at)))
                    .execute(&mut conn)
                    .await
            }
            None => {
                diesel::update(target)
                    .set((common, ev::status.eq("dead")))
                    .execute(&mut conn)
                    .await
            }
        }
        .map_err(db_error)?;
        if updated == 0 {
            return Err(StoreError::Corrupt(format!(
                "inbox event {id} does not exist"
            )));
        }
        Ok(())
    }
}
