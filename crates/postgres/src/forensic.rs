//! The forensic log: one row per inbound request, with its outcome.

use crate::PgStore;
use async_trait::async_trait;
use chrono::Utc;
use diesel_async::RunQueryDsl;
use payhook_domain::ports::{ForensicLog, StoreError};
use payhook_domain::{LogId, Outcome, WebhookRequest};
use payhook_sql::db_error;
use payhook_sql::rows::NewLogRow;
use payhook_sql::schema::webhook_logs;

#[async_trait]
impl ForensicLog for PgStore {
    async fn record(
        &self,
        request: &WebhookRequest,
        outcome: &Outcome,
    ) -> Result<LogId, StoreError> {
        let mut conn = self.conn().await?;
        let id: i64 = diesel::insert_into(webhook_logs::table)
            .values(NewLogRow::new(request, Some(outcome), Utc::now()))
            .returning(webhook_logs::id)
            .get_result(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(LogId(id))
    }
}
