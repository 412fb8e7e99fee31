//! Payments, their history and the outbox, committed together per applied event.

use crate::rows::{HistoryRow, PaymentRow};
use crate::schema::{outbox, payment_status_history as history, payments, webhook_events as ev};
use crate::{db_error, PgStore};
use async_trait::async_trait;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use payhook_domain::ports::{PaymentStore, StoreError};
use payhook_domain::{
    Application, HistoryEntry, InboxId, NewPayment, Payment, PaymentId, PaymentRef, PaymentStatus,
    Provider,
};

#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error("payment changed since it was read")]
    Stale,
}

#[async_trait]
impl PaymentStore for PgStore {
    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<PaymentRow> = payments::table
            .find(id.as_uuid())
            .select(PaymentRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Payment::try_from).transpose()
    }

    async fn find_payment(
        &self,
        provider: Provider,
        reference: &PaymentRef,
    ) -> Result<Option<Payment>, StoreError> {
        let mut conn = self.conn().await?;
        if let Some(id) = reference.payment_id {
            let row: Option<PaymentRow> = payments::table
                .find(id.as_uuid())
                .filter(payments::provider.eq(provider.as_str()))
                .select(PaymentRow::as_select())
                .first(&mut conn)
                .await
                .optional()
                .map_err(db_error)?;
            if let Some(row) = row {
                return Payment::try_from(row).map(Some);
            }
        }
        let Some(provider_ref) = &reference.provider_ref else {
            return Ok(None);
        };
        let row: Option<PaymentRow> = payments::table
            .filter(payments::provider.eq(provider.as_str()))
            .filter(payments::provider_ref.eq(provider_ref))
            .select(PaymentRow::as_select())
            .first(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        row.map(Payment::try_from).transpose()
    }

    async fn create_payment(&self, new: &NewPayment) -> Result<Payment, StoreError> {
        let mut conn = self.conn().await?;
        let inserted: Option<PaymentRow> = diesel::insert_into(payments::table)
            .values((
                payments::id.eq(new.id.as_uuid()),
                payments::provider.eq(new.provider.as_str()),
                payments::provider_ref.eq(&new.provider_ref),
                payments::merchant_ref.eq(&new.merchant_ref),
                payments::amount.eq(new.amount.amount_minor()),
                payments::currency.eq(new.amount.currency().code()),
                payments::status.eq(PaymentStatus::Pending.as_str()),
                payments::metadata.eq(&new.metadata),
                payments::customer_email.eq(&new.customer_email),
                payments::description.eq(&new.description),
                payments::created_at.eq(new.created_at),
                payments::updated_at.eq(new.created_at),
            ))
            .on_conflict((payments::provider, payments::provider_ref))
            .do_nothing()
            .returning(PaymentRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()
            .map_err(db_error)?;
        if let Some(row) = inserted {
            return Payment::try_from(row);
        }
        // Another worker created it first: both agree on the stored one.
        let row: PaymentRow = payments::table
            .filter(payments::provider.eq(new.provider.as_str()))
            .filter(payments::provider_ref.eq(&new.provider_ref))
            .select(PaymentRow::as_select())
            .first(&mut conn)
            .await
            .map_err(db_error)?;
        Payment::try_from(row)
    }

    async fn commit_application(
        &self,
        inbox: InboxId,
        app: &Application,
    ) -> Result<(), StoreError> {
        let p = &app.payment;
        let mut conn = self.conn().await?;
        let now = Utc::now();
        conn.transaction(async |conn| {
            // The version check makes a decision computed from an older read fail
            // instead of overwriting a concurrent worker's change.
            let updated = diesel::update(
                payments::table
                    .find(p.id.as_uuid())
                    .filter(payments::version.eq(p.version)),
            )
            .set((
                payments::status.eq(p.status.as_str()),
                payments::paid_amount.eq(p.paid_amount),
                payments::refunded_amount.eq(p.refunded_amount),
                payments::dispute_status.eq(p.dispute_status.map(|d| d.as_str())),
                payments::updated_at.eq(p.updated_at),
                payments::paid_at.eq(p.paid_at),
                payments::version.eq(payments::version + 1),
            ))
            .execute(conn)
            .await?;
            if updated == 0 {
                return Err(CommitError::Stale);
            }
            let history_rows: Vec<_> = app
                .history
                .iter()
                .map(|h| {
                    (
                        history::payment_id.eq(p.id.as_uuid()),
                        history::from_status.eq(h.from_status.as_str()),
                        history::to_status.eq(h.to_status.as_str()),
                        history::applied.eq(h.applied),
                        history::event_id.eq(h.event_id.as_ref().map(|e| e.as_str())),
                        history::reason.eq(&h.reason),
                        history::at.eq(h.at),
                    )
                })
                .collect();
            diesel::insert_into(history::table)
                .values(history_rows)
                .execute(conn)
                .await?;
            if !app.publications.is_empty() {
                let outbox_rows: Vec<_> = app
                    .publications
                    .iter()
                    .map(|o| {
                        (
                            outbox::topic.eq(&o.topic),
                            outbox::payload.eq(&o.payload),
                            outbox::created_at.eq(now),
                        )
                    })
                    .collect();
                diesel::insert_into(outbox::table)
                    .values(outbox_rows)
                    .execute(conn)
                    .await?;
            }
            diesel::update(ev::table.find(inbox.0))
                .set((
                    ev::status.eq("processed"),
                    ev::result.eq(app.result.as_str()),
                    ev::processed_at.eq(now),
                    ev::locked_until.eq(None::<chrono::DateTime<Utc>>),
                    ev::last_error.eq(None::<String>),
                ))
                .execute(conn)
                .await?;
            Ok::<_, CommitError>(())
        })
        .await
        .map_err(|e| match e {
            CommitError::Db(e) => db_error(e),
            CommitError::Stale => StoreError::Conflict(format!("payment {}", p.id)),
        })
    }

    async fn history(&self, id: PaymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<HistoryRow> = history::table
            .filter(history::payment_id.eq(id.as_uuid()))
            .order(history::id)
            .select(HistoryRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(HistoryEntry::try_from).collect()
    }
}
