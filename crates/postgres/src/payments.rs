//! Payments, their history and the outbox, committed together per applied event.

use crate::PgStore;
use async_trait::async_trait;
use chrono::Utc;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, RunQueryDsl};
use payhook_domain::ports::{PaymentStore, StoreError};
use payhook_domain::{
    Application, HistoryEntry, InboxId, NewPayment, Payment, PaymentId, PaymentRef, Provider,
};
use payhook_sql::rows::{
    application_rows, processed_changes, HistoryRow, NewPaymentRow, PaymentChanges, PaymentRow,
};
use payhook_sql::schema::{
    outbox, payment_status_history as history, payments, webhook_events as ev,
};
use payhook_sql::types::{DbInstant, DbUuid};
use payhook_sql::{db_error, TxError};

#[async_trait]
impl PaymentStore for PgStore {
    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
        let mut conn = self.conn().await?;
        let row: Option<PaymentRow> = payments::table
            .find(DbUuid(id.as_uuid()))
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
        let by_provider = payments::table.filter(payments::provider.eq(provider.as_str()));
        if let Some(id) = reference.payment_id {
            let row: Option<PaymentRow> = by_provider
                .filter(payments::id.eq(DbUuid(id.as_uuid())))
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
        let row: Option<PaymentRow> = by_provider
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
            .values(NewPaymentRow::from(new))
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
        let now = Utc::now();
        let (history_rows, outbox_rows) = application_rows(app, now);
        let mut conn = self.conn().await?;
        conn.transaction(async |conn| {
            // The version check makes a decision computed from an older read fail
            // instead of overwriting a concurrent worker's change.
            let updated = diesel::update(
                payments::table
                    .find(DbUuid(p.id.as_uuid()))
                    .filter(payments::version.eq(p.version)),
            )
            .set((
                PaymentChanges::from(p),
                payments::version.eq(payments::version + 1),
            ))
            .execute(conn)
            .await?;
            if updated == 0 {
                return Err(TxError::Stale);
            }
            diesel::insert_into(history::table)
                .values(&history_rows)
                .execute(conn)
                .await?;
            if !outbox_rows.is_empty() {
                diesel::insert_into(outbox::table)
                    .values(&outbox_rows)
                    .execute(conn)
                    .await?;
            }
            diesel::update(ev::table.find(inbox.0))
                .set(processed_changes(app.result.as_str(), DbInstant(now)))
                .execute(conn)
                .await?;
            Ok(())
        })
        .await
        .map_err(StoreError::from)
    }

    async fn history(&self, id: PaymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        let mut conn = self.conn().await?;
        let rows: Vec<HistoryRow> = history::table
            .filter(history::payment_id.eq(DbUuid(id.as_uuid())))
            .order(history::id)
            .select(HistoryRow::as_select())
            .load(&mut conn)
            .await
            .map_err(db_error)?;
        rows.into_iter().map(HistoryEntry::try_from).collect()
    }
}
