//! SQLite's side of the group commit and the worker's batch commit: each delivery's
//! or application's statements in turn, in one transaction. diesel-async's SQLite
//! wrapper has no multi-row INSERT, and SQLite statements are in-process calls, so
//! what costs is the commit, which the batch shares. (Postgres sends each batch as
//! one statement instead: every round trip there is a wait for the database.)

use crate::Conn;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use payhook_domain::ports::{Admission, Commit, StoreError};
use payhook_domain::{EventApplication, InboxId, OutboxMessage, Outcome, Payment, WebhookEvent, WebhookRequest};
use payhook_sql_shared::rows::{
    application_rows, changed_nothing, processed_changes, requeue_changes, NewEventRow, NewLogRow, OutboxRow,
    PaymentChanges, UnstoredPaymentRow,
};
use payhook_sql_shared::schema::{
    outbox, payment_aliases as aliases, payment_status_history as history, payments, webhook_events as ev,
    webhook_logs as logs,
};
use payhook_sql_shared::types::{DbInstant, DbUuid};
use payhook_sql_shared::TxError;

/// Stores a group commit's deliveries: a forensic row and an inbox row each, or for
/// a repeat the forensic row stamped `duplicate` (and, if it is a callback that asks
/// the provider, its stored event due again). One `Admission` per delivery, in order.
pub(crate) async fn admit_batch(
    conn: &mut Conn,
    deliveries: &[(WebhookRequest, WebhookEvent)],
    now: DateTime<Utc>,
    lease_until: Option<DateTime<Utc>>,
) -> Result<Vec<Admission>, StoreError> {
    conn.transaction(async |conn| {
        let mut admissions = Vec::with_capacity(deliveries.len());
        for (request, event) in deliveries {
            // Optimistic: most deliveries are new, so log them as accepted and
            // insert the event; only a repeat pays for re-stamping the log row.
            let log_id: i64 = diesel::insert_into(logs::table)
                .values(NewLogRow::new(request, Some(&Outcome::accepted()), now))
                .returning(logs::id)
                .get_result(conn)
                .await?;
            let inserted: Option<i64> = diesel::insert_into(ev::table)
                .values(NewEventRow::new(event, request.received_at, Some(log_id), lease_until)?)
                .on_conflict((ev::provider, ev::event_id))
                .do_nothing()
                .returning(ev::id)
                .get_result(conn)
                .await
                .optional()?;
            if let Some(id) = inserted {
                admissions.push(Admission::Accepted(InboxId(id)));
                continue;
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
            if event.confirm_with_provider {
                diesel::update(ev::table.find(existing).filter(changed_nothing()))
                    .set(requeue_changes(DbInstant(now)))
                    .execute(conn)
                    .await?;
            }
            admissions.push(Admission::Duplicate(InboxId(existing)));
        }
        Ok::<_, TxError>(admissions)
    })
    .await
    .map_err(StoreError::from)
}

/// Stores the worker's applications: a `Commit` per application, in order, and the
/// outbox messages stored (leased until `outbox_lease` when given), in order.
pub(crate) async fn commit_batch(
    conn: &mut Conn,
    applications: &[(InboxId, EventApplication)],
    now: DateTime<Utc>,
    outbox_lease: Option<DateTime<Utc>>,
) -> Result<(Vec<Commit>, Vec<OutboxMessage>), StoreError> {
    conn.transaction(async |conn| {
        let mut commits = Vec::with_capacity(applications.len());
        let mut messages: Vec<OutboxRow> = Vec::new();
        for (inbox, app) in applications {
            let p = &app.payment;
            // The version check makes a decision computed from an older read fail
            // instead of overwriting a concurrent worker's change; for a payment not
            // stored yet, the unique reference does.
            let updated = if p.version == Payment::UNSTORED {
                diesel::insert_into(payments::table)
                    .values(UnstoredPaymentRow::from(p))
                    .on_conflict((payments::provider, payments::account, payments::provider_ref))
                    .do_nothing()
                    .execute(conn)
                    .await?
            } else {
                diesel::update(
                    payments::table
                        .find(DbUuid(p.id.as_uuid()))
                        .filter(payments::version.eq(p.version)),
                )
                .set((PaymentChanges::from(p), payments::version.eq(payments::version + 1)))
                .execute(conn)
                .await?
            };
            if updated == 0 {
                commits.push(Commit::Stale);
                continue;
            }
            let (history_rows, outbox_rows) = application_rows(app, now, outbox_lease);
            for row in &history_rows {
                diesel::insert_into(history::table).values(row).execute(conn).await?;
            }
            for row in &outbox_rows {
                messages.push(
                    diesel::insert_into(outbox::table)
                        .values(row)
                        .returning(OutboxRow::as_returning())
                        .get_result(conn)
                        .await?,
                );
            }
            for alias in &app.aliases {
                diesel::insert_into(aliases::table)
                    .values((
                        aliases::provider.eq(p.provider.as_str()),
                        aliases::alias.eq(alias),
                        aliases::payment_id.eq(DbUuid(p.id.as_uuid())),
                    ))
                    .on_conflict_do_nothing()
                    .execute(conn)
                    .await?;
            }
            if let Some(write) = &app.mirror {
                payhook_sql_shared::mirror::count(payhook_sql_shared::write_mirror!(conn, write, now));
            }
            diesel::update(ev::table.find(inbox.0))
                .set(processed_changes(app.result.as_str(), DbInstant(now)))
                .execute(conn)
                .await?;
            commits.push(Commit::Committed);
        }
        Ok::<_, TxError>((commits, messages))
    })
    .await
    .map(|(commits, rows)| (commits, rows.into_iter().map(OutboxMessage::from).collect()))
    .map_err(StoreError::from)
}

/// Writes the objects of events that only update the Stripe mirror and marks the
/// events processed (`applied` when written, else `stale_transition`), each in turn,
/// in one transaction.
pub(crate) async fn apply_mirror_events(
    conn: &mut Conn,
    events: &[(InboxId, payhook_domain::MirrorWrite)],
    at: DateTime<Utc>,
) -> Result<Vec<payhook_domain::MirrorOutcome>, StoreError> {
    conn.transaction(async |conn| {
        let mut outcomes = Vec::with_capacity(events.len());
        for (inbox, write) in events {
            let outcome = payhook_sql_shared::write_mirror!(conn, write, at);
            let result = match outcome {
                payhook_domain::MirrorOutcome::Written => "applied",
                _ => "stale_transition",
            };
            diesel::update(ev::table.find(inbox.0))
                .set(processed_changes(result, DbInstant(at)))
                .execute(conn)
                .await?;
            outcomes.push(outcome);
        }
        Ok::<_, TxError>(outcomes)
    })
    .await
    .map_err(StoreError::from)
}
