//! The store ports, written once for both SQL stores.
//!
//! Why a macro and not generic functions: diesel checks each statement against a
//! concrete backend. Written generic over the connection `C`, the one-line history
//! query alone fails to compile until it carries the bound
//! `SelectStatement<…>: LoadQuery<'_, C, HistoryRow>` (with the statement's full
//! type spelled out, or named by `#[diesel::dsl::auto_type]`), and so does each of
//! the other thirty-odd statements here, each time the statement changes. Per-store
//! impls calling shared query builders would repeat every port method twice
//! instead. Expanded per store, the same text compiles against each concrete
//! connection, and rust-analyzer follows into it from the store crates.
//!
//! What differs per store is not in here. The store type provides
//!
//! - `async fn conn(&self) -> Result<impl DerefMut<Target = C>, StoreError>` where `C`
//!   is its diesel-async connection;
//! - `const CLAIM_SQL: &'static str`: an `UPDATE … RETURNING id, payload, attempts`
//!   taking `now`, `limit` and `lease_until` as its three bind parameters, written in
//!   the store's dialect (this is where Postgres uses `FOR UPDATE SKIP LOCKED`);
//! - `const OUTBOX_CLAIM_SQL: &'static str`: the same for the outbox, returning
//!   `id, topic, payload, created_at, attempts`;
//! - `const INDEX_SCAN_SETTINGS: &'static [&'static str]`: statements run first in
//!   the transaction of each claim and batch lookup (Postgres uses it to keep them on
//!   their indexes, see there);
//!
//! and the invocation names its two batch writers, plain functions in the store
//! crate: `admit_batch` (a group commit's deliveries) and `commit_batch` (the
//! worker's applications); see `payhook-sqlite`'s `batch` and `payhook-postgres`'
//! `admission` and `commit` for their contracts.
//!
//! Every write transaction starts with a write, so SQLite takes its write lock under
//! the busy timeout instead of failing a read-to-write upgrade.

/// Implements `ForensicLog`, `WebhookInbox`, `PaymentStore` and `StoreHealth` for a store type.
#[macro_export]
macro_rules! impl_store_ports {
    ($store:ty, admit_batch = $admit_batch:path, commit_batch = $commit_batch:path $(,)?) => {
        const _: () = {
            use $crate::__deps::chrono::{DateTime, Utc};
            use $crate::__deps::diesel::prelude::*;
            use $crate::__deps::diesel::sql_types::BigInt;
            use $crate::__deps::diesel_async::{AsyncConnection, RunQueryDsl};
            use $crate::__deps::payhook_domain::ports::{
                Admission, ClaimedEvent, Commit, Committed, DueCheck, ForensicLog, Outbox, PaymentStore, ReconcileQueue,
                Retention, StoreError, StoreHealth, WebhookInbox,
            };
            use $crate::__deps::payhook_domain::{
                EventApplication, Checkout, HistoryEntry, InboxEntry, InboxFilter, InboxId, InboxStatus, LogId, NewPayment,
                PaymentFilter,
                Opened, OutboxMessage, Outcome, Payment, PaymentId, PaymentRef, PaymentStatus, Provider, Replay,
                ReplayFilter, Retained, TokenHashes, UndeliveredMessage, WebhookEvent, WebhookRequest,
            };
            use $crate::rows::{
                after_failure, application_rows, changed_nothing, failure_changes, not_leased, processed_changes,
                requeue_changes,
                never, CheckoutChanges, ClaimedRow, DueRow, UndeliveredRow,
                HistoryRow, InboxEntryRow, NewEventRow, NewLogRow, NewPaymentRow, OutboxRow, PaymentChanges,
                PaymentRow, UnstoredPaymentRow, CLAIMABLE,
            };
            use $crate::schema::{
                outbox, payment_aliases as aliases, payment_status_history as history, payments, webhook_events as ev,
                webhook_logs as logs,
            };
            use $crate::types::{DbInstant, DbUuid, Instant};
            use $crate::{db_error, TxError};

            #[$crate::__deps::async_trait]
            impl ForensicLog for $store {
                async fn record(&self, request: &WebhookRequest, outcome: &Outcome) -> Result<LogId, StoreError> {
                    let mut conn = self.conn().await?;
                    let id: i64 = diesel::insert_into(logs::table)
                        .values(NewLogRow::new(request, Some(outcome), Utc::now()))
                        .returning(logs::id)
                        .get_result(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(LogId(id))
                }
            }

            #[$crate::__deps::async_trait]
            impl WebhookInbox for $store {
                async fn admit_all(
                    &self,
                    deliveries: &[(WebhookRequest, WebhookEvent)],
                    lease_until: Option<DateTime<Utc>>,
                ) -> Result<Vec<Admission>, StoreError> {
                    let mut conn = self.conn().await?;
                    let now = Utc::now();
                    $admit_batch(&mut *conn, deliveries, now, lease_until).await
                }

                async fn claim_due(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    lease_until: DateTime<Utc>,
                ) -> Result<Vec<ClaimedEvent>, StoreError> {
                    let rows: Vec<ClaimedRow> = {
                        let mut conn = self.conn().await?;
                        $crate::claim_rows!($store, CLAIM_SQL, conn, now, limit, lease_until)?
                    };
                    let mut claimed = Vec::with_capacity(rows.len());
                    for row in rows {
                        match row.into_claimed() {
                            Ok(event) => claimed.push(event),
                            // A payload no retry can fix (written by an incompatible version):
                            // park it for an operator instead of failing the whole batch.
                            Err((id, error)) => {
                                $crate::__deps::tracing::error!(inbox_id = %id, %error, "dead-lettering unreadable inbox event");
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
                    let updated = diesel::update(ev::table.find(id.0).filter(ev::status.eq_any(CLAIMABLE)))
                        .set(failure_changes(error, status, next_attempt_at))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    if updated == 0 {
                        return Err(StoreError::Corrupt(format!("inbox event {id} is not waiting to be processed")));
                    }
                    Ok(())
                }

                async fn release(&self, ids: &[InboxId]) -> Result<u64, StoreError> {
                    let ids: Vec<i64> = ids.iter().map(|id| id.0).collect();
                    let mut conn = self.conn().await?;
                    let released = diesel::update(ev::table.filter(ev::id.eq_any(ids)).filter(ev::status.eq_any(CLAIMABLE)))
                        .set(ev::locked_until.eq(None::<DbInstant>))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(released as u64)
                }

                async fn mark_processed(
                    &self,
                    id: InboxId,
                    result: $crate::__deps::payhook_domain::ProcessingResult,
                    at: DateTime<Utc>,
                ) -> Result<(), StoreError> {
                    let mut conn = self.conn().await?;
                    diesel::update(ev::table.find(id.0))
                        .set($crate::rows::processed_changes(result.as_str(), DbInstant(at)))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn release_expired_leases(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
                    let mut conn = self.conn().await?;
                    let released = diesel::update(ev::table.filter(ev::locked_until.le(DbInstant(now))))
                        .set(ev::locked_until.eq(None::<DbInstant>))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(released as u64)
                }

                async fn list(&self, filter: &InboxFilter) -> Result<Vec<InboxEntry>, StoreError> {
                    let mut query = ev::table.select(InboxEntryRow::as_select()).order(ev::id.desc()).into_boxed();
                    if let Some(status) = filter.status {
                        query = query.filter(ev::status.eq(status.as_str()));
                    }
                    if let Some(provider) = filter.provider {
                        query = query.filter(ev::provider.eq(provider.as_str()));
                    }
                    let mut conn = self.conn().await?;
                    let rows: Vec<InboxEntryRow> =
                        query.limit(i64::from(filter.limit)).load(&mut *conn).await.map_err(db_error)?;
                    rows.into_iter().map(InboxEntry::try_from).collect()
                }

                async fn replay(&self, id: InboxId, now: DateTime<Utc>) -> Result<Replay, StoreError> {
                    let mut conn = self.conn().await?;
                    // Not pending, and not leased by a worker right now (else it is in flight).
                    let updated = diesel::update(
                        ev::table
                            .find(id.0)
                            .filter(ev::status.ne("pending"))
                            .filter(not_leased(DbInstant(now))),
                    )
                    .set(requeue_changes(DbInstant(now)))
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                    if updated == 1 {
                        return Ok(Replay::Requeued);
                    }
                    let exists: Option<i64> =
                        ev::table.find(id.0).select(ev::id).first(&mut *conn).await.optional().map_err(db_error)?;
                    Ok(if exists.is_some() { Replay::AlreadyPending } else { Replay::NotFound })
                }

                async fn replay_batch(
                    &self,
                    filter: &ReplayFilter,
                    now: DateTime<Utc>,
                    limit: u32,
                ) -> Result<u64, StoreError> {
                    if filter.status == InboxStatus::Pending {
                        return Ok(0);
                    }
                    let mut query = ev::table
                        .select(ev::id)
                        .filter(ev::status.eq(filter.status.as_str()))
                        .filter(not_leased(DbInstant(now)))
                        .order(ev::id)
                        .limit(i64::from(limit))
                        .into_boxed();
                    if let Some(p) = filter.provider {
                        query = query.filter(ev::provider.eq(p.as_str()));
                    }
                    if let Some(since) = filter.since {
                        query = query.filter(ev::received_at.ge(DbInstant(since)));
                    }
                    let mut conn = self.conn().await?;
                    let ids: Vec<i64> = query.load(&mut *conn).await.map_err(db_error)?;
                    if ids.is_empty() {
                        return Ok(0);
                    }
                    // Still in that status and unleased: a worker may have taken one since.
                    let updated = diesel::update(
                        ev::table
                            .filter(ev::id.eq_any(&ids))
                            .filter(ev::status.eq(filter.status.as_str()))
                            .filter(not_leased(DbInstant(now))),
                    )
                    .set(requeue_changes(DbInstant(now)))
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                    Ok(updated as u64)
                }

                async fn depth(&self) -> Result<Vec<(InboxStatus, i64)>, StoreError> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<(String, i64)> = ev::table
                        .group_by(ev::status)
                        .select((ev::status, diesel::dsl::count_star()))
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    rows.into_iter()
                        .map(|(status, n)| {
                            status
                                .parse::<InboxStatus>()
                                .map(|s| (s, n))
                                .map_err(|e| StoreError::Corrupt(e.to_string()))
                        })
                        .collect()
                }
            }

            #[$crate::__deps::async_trait]
            impl Outbox for $store {
                async fn claim_unpublished(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    lease_until: DateTime<Utc>,
                ) -> Result<Vec<OutboxMessage>, StoreError> {
                    let mut conn = self.conn().await?;
                    let mut rows: Vec<OutboxRow> =
                        $crate::claim_rows!($store, OUTBOX_CLAIM_SQL, conn, now, limit, lease_until)?;
                    let mut messages: Vec<OutboxMessage> = rows.drain(..).map(OutboxMessage::from).collect();
                    // RETURNING gives no order; subscribers see events in commit order.
                    messages.sort_by_key(|m| m.id);
                    Ok(messages)
                }

                async fn mark_published(&self, ids: &[i64], at: DateTime<Utc>) -> Result<(), StoreError> {
                    if ids.is_empty() {
                        return Ok(());
                    }
                    let mut conn = self.conn().await?;
                    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
                        .set((
                            outbox::published_at.eq(DbInstant(at)),
                            outbox::locked_until.eq(None::<DbInstant>),
                            outbox::last_error.eq(None::<String>),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn record_publish_failure(
                    &self,
                    id: i64,
                    error: &str,
                    retry_at: Option<DateTime<Utc>>,
                ) -> Result<(), StoreError> {
                    let now = Utc::now();
                    // A dead message is due "never": past any claim's `now`, so the
                    // claims' index scans stop before it.
                    let (next, dead_at) = match retry_at {
                        Some(at) => (at, None),
                        None => (never(), Some(DbInstant(now))),
                    };
                    let mut conn = self.conn().await?;
                    diesel::update(outbox::table.find(id))
                        .set((
                            outbox::attempts.eq(outbox::attempts + 1),
                            outbox::last_error.eq(error),
                            outbox::next_attempt_at.eq(DbInstant(next)),
                            outbox::locked_until.eq(None::<DbInstant>),
                            outbox::dead_at.eq(dead_at),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn dead_count(&self) -> Result<i64, StoreError> {
                    let mut conn = self.conn().await?;
                    outbox::table
                        .filter(outbox::dead_at.is_not_null())
                        .filter(outbox::published_at.is_null())
                        .count()
                        .get_result(&mut *conn)
                        .await
                        .map_err(db_error)
                }

                async fn list_undelivered(&self, dead: bool, limit: u32) -> Result<Vec<UndeliveredMessage>, StoreError> {
                    let query = outbox::table
                        .filter(outbox::published_at.is_null())
                        .select(UndeliveredRow::as_select())
                        .order(outbox::id.desc())
                        .limit(i64::from(limit))
                        .into_boxed();
                    let query = if dead {
                        query.filter(outbox::dead_at.is_not_null())
                    } else {
                        query.filter(outbox::dead_at.is_null())
                    };
                    let mut conn = self.conn().await?;
                    let rows: Vec<UndeliveredRow> = query.load(&mut *conn).await.map_err(db_error)?;
                    Ok(rows.into_iter().map(UndeliveredMessage::from).collect())
                }

                async fn replay_message(&self, id: i64, now: DateTime<Utc>) -> Result<Replay, StoreError> {
                    let mut conn = self.conn().await?;
                    // Not delivered, and not leased by a relay right now (else it is in flight).
                    let updated = diesel::update(
                        outbox::table
                            .find(id)
                            .filter(outbox::published_at.is_null())
                            .filter(outbox::locked_until.is_null().or(outbox::locked_until.le(DbInstant(now)))),
                    )
                    .set((
                        outbox::attempts.eq(0),
                        outbox::next_attempt_at.eq(DbInstant(now)),
                        outbox::dead_at.eq(None::<DbInstant>),
                    ))
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                    if updated == 1 {
                        return Ok(Replay::Requeued);
                    }
                    let exists: Option<i64> =
                        outbox::table.find(id).select(outbox::id).first(&mut *conn).await.optional().map_err(db_error)?;
                    Ok(if exists.is_some() { Replay::AlreadyPending } else { Replay::NotFound })
                }

                async fn backlog(&self) -> Result<i64, StoreError> {
                    let mut conn = self.conn().await?;
                    outbox::table
                        .filter(outbox::published_at.is_null())
                        .count()
                        .get_result(&mut *conn)
                        .await
                        .map_err(db_error)
                }
            }

            #[$crate::__deps::async_trait]
            impl PaymentStore for $store {
                async fn payment(&self, id: PaymentId) -> Result<Option<Payment>, StoreError> {
                    let mut conn = self.conn().await?;
                    let row: Option<PaymentRow> = payments::table
                        .find(DbUuid(id.as_uuid()))
                        .select(PaymentRow::as_select())
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(db_error)?;
                    row.map(Payment::try_from).transpose()
                }

                async fn find_payments(
                    &self,
                    wanted: &[(Provider, PaymentRef)],
                ) -> Result<Vec<Option<Payment>>, StoreError> {
                    use std::collections::HashMap;
                    let mut found: Vec<Option<Payment>> = wanted.iter().map(|_| None).collect();
                    if wanted.is_empty() {
                        return Ok(found);
                    }
                    let mut conn = self.conn().await?;
                    let found = conn.transaction(async |conn| {
                        for setting in <$store>::INDEX_SCAN_SETTINGS {
                            diesel::sql_query(*setting).execute(conn).await?;
                        }
                        // One query per way of naming a payment, each only for the events
                        // the previous ones did not resolve.
                        let ids: Vec<DbUuid> =
                            wanted.iter().filter_map(|(_, r)| r.payment_id.map(|id| DbUuid(id.as_uuid()))).collect();
                        if !ids.is_empty() {
                            let rows: Vec<PaymentRow> = payments::table
                                .filter(payments::id.eq_any(&ids))
                                .select(PaymentRow::as_select())
                                .load(conn)
                                .await?;
                            let by_id = rows
                                .into_iter()
                                .map(|row| Payment::try_from(row).map(|p| (p.id, p)))
                                .collect::<Result<HashMap<_, _>, _>>()?;
                            for (slot, (provider, reference)) in found.iter_mut().zip(wanted) {
                                *slot = reference
                                    .payment_id
                                    .and_then(|id| by_id.get(&id))
                                    .filter(|p| p.provider == *provider)
                                    .cloned();
                            }
                        }
                        let unresolved = |found: &[Option<Payment>]| -> Vec<String> {
                            found
                                .iter()
                                .zip(wanted)
                                .filter(|(slot, _)| slot.is_none())
                                .filter_map(|(_, (_, r))| r.provider_ref.clone())
                                .collect()
                        };
                        // Every key column, so the (provider, account, provider_ref) index
                        // is searched, not scanned whole.
                        // Each value once: `= ANY(array)` compares a row with every
                        // element, and a batch's events mostly share one provider and one
                        // account.
                        let mut providers: Vec<&str> = wanted.iter().map(|(p, _)| p.as_str()).collect();
                        providers.sort_unstable();
                        providers.dedup();
                        let mut accounts: Vec<&str> =
                            wanted.iter().map(|(_, r)| r.account.as_deref().unwrap_or_default()).collect();
                        accounts.sort_unstable();
                        accounts.dedup();
                        let refs = unresolved(&found);
                        if !refs.is_empty() {
                            let rows: Vec<PaymentRow> = payments::table
                                .filter(payments::provider.eq_any(&providers))
                                .filter(payments::account.eq_any(&accounts))
                                .filter(payments::provider_ref.eq_any(&refs))
                                .select(PaymentRow::as_select())
                                .load(conn)
                                .await?;
                            let mut by_ref = HashMap::new();
                            for row in rows {
                                let p = Payment::try_from(row)?;
                                if let Some(r) = p.provider_ref.clone() {
                                    by_ref.insert((p.provider, p.account.clone(), r), p);
                                }
                            }
                            fill_by_reference(&mut found, wanted, &by_ref);
                        }
                        // Another of the provider's ids for a payment (a charge id, say).
                        let refs = unresolved(&found);
                        if !refs.is_empty() {
                            let rows: Vec<(String, PaymentRow)> = aliases::table
                                .inner_join(payments::table)
                                .filter(aliases::provider.eq_any(&providers))
                                .filter(aliases::alias.eq_any(&refs))
                                .select((aliases::alias, PaymentRow::as_select()))
                                .load(conn)
                                .await?;
                            let by_alias = rows
                                .into_iter()
                                .map(|(alias, row)| {
                                    Payment::try_from(row).map(|p| ((p.provider, p.account.clone(), alias), p))
                                })
                                .collect::<Result<HashMap<_, _>, _>>()?;
                            fill_by_reference(&mut found, wanted, &by_alias);
                        }
                        Ok::<_, TxError>(found)
                    })
                    .await?;
                    Ok(found)
                }

                async fn create_payment(&self, new: &NewPayment) -> Result<Payment, StoreError> {
                    let mut conn = self.conn().await?;
                    let inserted: Option<PaymentRow> = diesel::insert_into(payments::table)
                        .values(NewPaymentRow::from(new))
                        .on_conflict((payments::provider, payments::account, payments::provider_ref))
                        .do_nothing()
                        .returning(PaymentRow::as_returning())
                        .get_result(&mut *conn)
                        .await
                        .optional()
                        .map_err(db_error)?;
                    let row = match inserted {
                        Some(row) => row,
                        // Another worker created it first: both agree on the stored one.
                        None => payments::table
                            .filter(payments::provider.eq(new.provider.as_str()))
                            .filter(payments::account.eq(&new.account))
                            .filter(payments::provider_ref.eq(&new.provider_ref))
                            .select(PaymentRow::as_select())
                            .first(&mut *conn)
                            .await
                            .map_err(db_error)?,
                    };
                    Payment::try_from(row)
                }

                async fn commit_applications(
                    &self,
                    applications: &[(InboxId, EventApplication)],
                    outbox_lease: Option<DateTime<Utc>>,
                ) -> Result<Committed, StoreError> {
                    if applications.is_empty() {
                        return Ok(Committed::default());
                    }
                    // The time the applications were computed at (the caller's clock),
                    // not this machine's: so a test clock governs what is stored too.
                    let now = applications.iter().map(|(_, a)| a.at).max().unwrap_or_else(Utc::now);
                    let mut conn = self.conn().await?;
                    let (commits, messages) = $commit_batch(&mut *conn, applications, now, outbox_lease).await?;
                    Ok(Committed { commits, messages })
                }

                async fn history(&self, id: PaymentId) -> Result<Vec<HistoryEntry>, StoreError> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<HistoryRow> = history::table
                        .filter(history::payment_id.eq(DbUuid(id.as_uuid())))
                        .order(history::id)
                        .select(HistoryRow::as_select())
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    rows.into_iter().map(HistoryEntry::try_from).collect()
                }

                async fn list_payments(&self, filter: &PaymentFilter) -> Result<Vec<Payment>, StoreError> {
                    let mut query = payments::table
                        .select(PaymentRow::as_select())
                        .order((payments::created_at.desc(), payments::id.desc()))
                        .limit(i64::from(filter.limit))
                        .into_boxed();
                    if let Some(after) = filter.after {
                        // Strictly after the cursor in (created_at, id) descending order.
                        let (at, id) = (DbInstant(after.created_at), DbUuid(after.id.as_uuid()));
                        query = query.filter(
                            payments::created_at
                                .lt(at)
                                .or(payments::created_at.eq(at).and(payments::id.lt(id))),
                        );
                    }
                    if let Some(merchant_ref) = &filter.merchant_ref {
                        query = query.filter(payments::merchant_ref.eq(merchant_ref.clone()));
                    }
                    if let Some(status) = filter.status {
                        query = query.filter(payments::status.eq(status.as_str()));
                    }
                    if let Some(provider) = filter.provider {
                        query = query.filter(payments::provider.eq(provider.as_str()));
                    }
                    if let Some(email) = &filter.customer_email {
                        query = query.filter(payments::customer_email.eq(email.clone()));
                    }
                    if let Some(subscription) = filter.subscription_id {
                        query = query.filter(payments::subscription_id.eq(DbUuid(subscription.as_uuid())));
                    }
                    let mut conn = self.conn().await?;
                    let rows: Vec<PaymentRow> = query.load(&mut *conn).await.map_err(db_error)?;
                    rows.into_iter().map(Payment::try_from).collect()
                }

                async fn open_payment(&self, new: &NewPayment) -> Result<Opened, StoreError> {
                    let mut conn = self.conn().await?;
                    // Two requests with one key race here: the unique key lets one insert.
                    let inserted: Option<PaymentRow> = diesel::insert_into(payments::table)
                        .values(NewPaymentRow::from(new))
                        .on_conflict(payments::idempotency_key)
                        .do_nothing()
                        .returning(PaymentRow::as_returning())
                        .get_result(&mut *conn)
                        .await
                        .optional()
                        .map_err(db_error)?;
                    if let Some(row) = inserted {
                        return Payment::try_from(row).map(Opened::New);
                    }
                    let key = new.idempotency.as_ref().map(|i| i.key.as_str());
                    let row: PaymentRow = payments::table
                        .filter(payments::idempotency_key.eq(key))
                        .select(PaymentRow::as_select())
                        .first(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    let fingerprint = row.request_fingerprint.clone().unwrap_or_default();
                    Ok(Opened::Existing {
                        payment: Payment::try_from(row)?,
                        fingerprint,
                    })
                }

                async fn record_checkout(&self, id: PaymentId, checkout: &Checkout) -> Result<Payment, StoreError> {
                    let mut conn = self.conn().await?;
                    let row: PaymentRow = diesel::update(payments::table.find(DbUuid(id.as_uuid())))
                        .set(CheckoutChanges::from(checkout))
                        .returning(PaymentRow::as_returning())
                        .get_result(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Payment::try_from(row)
                }

                async fn record_creation_failure(
                    &self,
                    id: PaymentId,
                    reason: &str,
                    at: DateTime<Utc>,
                ) -> Result<Payment, StoreError> {
                    let key = DbUuid(id.as_uuid());
                    let pending = PaymentStatus::Pending.as_str();
                    let failed = PaymentStatus::Failed.as_str();
                    let history_reason = format!("creation failed: {reason}");
                    let mut conn = self.conn().await?;
                    let row: PaymentRow = conn
                        .transaction(async |conn| {
                            let moved = diesel::update(payments::table.find(key).filter(payments::status.eq(pending)))
                                .set((
                                    payments::status.eq(failed),
                                    payments::updated_at.eq(DbInstant(at)),
                                    payments::version.eq(payments::version + 1),
                                ))
                                .execute(conn)
                                .await?;
                            if moved == 1 {
                                diesel::insert_into(history::table)
                                    .values((
                                        history::payment_id.eq(key),
                                        history::from_status.eq(pending),
                                        history::to_status.eq(failed),
                                        history::applied.eq(true),
                                        history::reason.eq(&history_reason),
                                        history::at.eq(DbInstant(at)),
                                    ))
                                    .execute(conn)
                                    .await?;
                            }
                            let row = diesel::update(payments::table.find(key))
                                .set(payments::failure_reason.eq(reason))
                                .returning(PaymentRow::as_returning())
                                .get_result(conn)
                                .await?;
                            Ok::<_, TxError>(row)
                        })
                        .await?;
                    Payment::try_from(row)
                }

                async fn token_hashes(&self, id: PaymentId) -> Result<Option<TokenHashes>, StoreError> {
                    let mut conn = self.conn().await?;
                    let row: Option<(Option<String>, Option<String>)> = payments::table
                        .find(DbUuid(id.as_uuid()))
                        .select((payments::client_token_hash, payments::callback_token_hash))
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(db_error)?;
                    Ok(row.map(|(client, callback)| TokenHashes { client, callback }))
                }

                async fn replace_client_token(&self, id: PaymentId, hash: &str) -> Result<(), StoreError> {
                    let mut conn = self.conn().await?;
                    diesel::update(payments::table.find(DbUuid(id.as_uuid())))
                        .set(payments::client_token_hash.eq(hash))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }
            }

            /// Fills the unresolved slots whose `(provider, provider_ref)` is a key of `by`.
            fn fill_by_reference(
                found: &mut [Option<Payment>],
                wanted: &[(Provider, PaymentRef)],
                by: &std::collections::HashMap<(Provider, String, String), Payment>,
            ) {
                for (slot, (provider, reference)) in found.iter_mut().zip(wanted) {
                    if slot.is_none() {
                        let account = reference.account.clone().unwrap_or_default();
                        *slot = reference
                            .provider_ref
                            .clone()
                            .and_then(|r| by.get(&(*provider, account, r)))
                            .cloned();
                    }
                }
            }

            // Each purge takes the ids of at most `limit` of the oldest purgeable rows,
            // found through the index that kind has for it (migration
            // 2026-12-05-000003), then deletes those rows. The delete repeats the
            // condition, so a row that changed in between (an inbox event replayed
            // meanwhile) is left alone. The status list is literal SQL, not bound
            // values: Postgres uses a partial index only for a predicate it can read.
            #[$crate::__deps::async_trait]
            impl Retention for $store {
                async fn purge(&self, kind: Retained, before: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
                    use $crate::__deps::diesel::dsl::sql;
                    use $crate::__deps::diesel::sql_types::Bool;
                    let before = DbInstant(before);
                    let limit = i64::from(limit);
                    let mut conn = self.conn().await?;
                    let deleted = match kind {
                        Retained::ForensicLog => {
                            let ids: Vec<i64> = logs::table
                                .select(logs::id)
                                .filter(logs::received_at.lt(before))
                                .order(logs::received_at)
                                .limit(limit)
                                .load(&mut *conn)
                                .await
                                .map_err(db_error)?;
                            if ids.is_empty() {
                                return Ok(0);
                            }
                            diesel::delete(logs::table.filter(logs::id.eq_any(&ids)).filter(logs::received_at.lt(before)))
                                .execute(&mut *conn)
                                .await
                        }
                        Retained::Inbox => {
                            let ids: Vec<i64> = ev::table
                                .select(ev::id)
                                .filter(sql::<Bool>(SETTLED))
                                .filter(ev::processed_at.lt(before))
                                .order(ev::processed_at)
                                .limit(limit)
                                .load(&mut *conn)
                                .await
                                .map_err(db_error)?;
                            if ids.is_empty() {
                                return Ok(0);
                            }
                            diesel::delete(
                                ev::table
                                    .filter(ev::id.eq_any(&ids))
                                    .filter(sql::<Bool>(SETTLED))
                                    .filter(ev::processed_at.lt(before)),
                            )
                            .execute(&mut *conn)
                            .await
                        }
                        Retained::Outbox => {
                            let ids: Vec<i64> = outbox::table
                                .select(outbox::id)
                                .filter(outbox::published_at.is_not_null())
                                .filter(outbox::published_at.lt(before))
                                .order(outbox::published_at)
                                .limit(limit)
                                .load(&mut *conn)
                                .await
                                .map_err(db_error)?;
                            if ids.is_empty() {
                                return Ok(0);
                            }
                            diesel::delete(outbox::table.filter(outbox::id.eq_any(&ids)).filter(outbox::published_at.lt(before)))
                                .execute(&mut *conn)
                                .await
                        }
                    };
                    deleted.map(|n| n as u64).map_err(db_error)
                }

                async fn count_purgeable(&self, kind: Retained, before: DateTime<Utc>) -> Result<u64, StoreError> {
                    use $crate::__deps::diesel::dsl::sql;
                    use $crate::__deps::diesel::sql_types::Bool;
                    let before = DbInstant(before);
                    let mut conn = self.conn().await?;
                    let counted: Result<i64, _> = match kind {
                        Retained::ForensicLog => {
                            logs::table.filter(logs::received_at.lt(before)).count().get_result(&mut *conn).await
                        }
                        Retained::Inbox => {
                            ev::table
                                .filter(sql::<Bool>(SETTLED))
                                .filter(ev::processed_at.lt(before))
                                .count()
                                .get_result(&mut *conn)
                                .await
                        }
                        Retained::Outbox => {
                            outbox::table
                                .filter(outbox::published_at.is_not_null())
                                .filter(outbox::published_at.lt(before))
                                .count()
                                .get_result(&mut *conn)
                                .await
                        }
                    };
                    counted.map(|n| n.max(0) as u64).map_err(db_error)
                }
            }

            #[$crate::__deps::async_trait]
            impl ReconcileQueue for $store {
                async fn claim_due_checks(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    lease_until: DateTime<Utc>,
                ) -> Result<Vec<DueCheck>, StoreError> {
                    use $crate::__deps::payhook_domain::ReconcileSchedule;
                    let mut conn = self.conn().await?;
                    let rows: Vec<(PaymentRow, i32)> = conn
                        .transaction(async |conn| {
                            // The store's own statement: it locks what it picks (SKIP
                            // LOCKED on Postgres) until this transaction ends.
                            let due: Vec<DueRow> = diesel::sql_query(<$store>::RECONCILE_DUE_SQL)
                                .bind::<Instant, _>(DbInstant(now))
                                .bind::<BigInt, _>(i64::from(limit))
                                .load(conn)
                                .await?;
                            let (open, settled): (Vec<DueRow>, Vec<DueRow>) = due.into_iter().partition(|row| {
                                row.status.parse().map(ReconcileSchedule::is_open).unwrap_or(false)
                            });
                            let ids = |rows: &[DueRow]| rows.iter().map(|r| r.id).collect::<Vec<DbUuid>>();
                            if !settled.is_empty() {
                                diesel::update(payments::table.filter(payments::id.eq_any(ids(&settled))))
                                    .set(payments::next_reconcile_at.eq(None::<DbInstant>))
                                    .execute(conn)
                                    .await?;
                            }
                            if open.is_empty() {
                                return Ok::<_, diesel::result::Error>(Vec::new());
                            }
                            let open = ids(&open);
                            diesel::update(payments::table.filter(payments::id.eq_any(&open)))
                                .set(payments::next_reconcile_at.eq(DbInstant(lease_until)))
                                .execute(conn)
                                .await?;
                            payments::table
                                .filter(payments::id.eq_any(&open))
                                .order(payments::created_at)
                                .select((PaymentRow::as_select(), payments::reconcile_checks))
                                .load(conn)
                                .await
                        })
                        .await
                        .map_err(db_error)?;
                    rows.into_iter()
                        .map(|(row, checks)| {
                            Ok(DueCheck {
                                payment: Payment::try_from(row)?,
                                checks: u32::try_from(checks).unwrap_or(0),
                            })
                        })
                        .collect()
                }

                async fn schedule_check(
                    &self,
                    id: PaymentId,
                    checks: u32,
                    next: Option<DateTime<Utc>>,
                ) -> Result<(), StoreError> {
                    let mut conn = self.conn().await?;
                    diesel::update(payments::table.find(DbUuid(id.as_uuid())))
                        .set((
                            payments::reconcile_checks.eq(i32::try_from(checks).unwrap_or(i32::MAX)),
                            payments::next_reconcile_at.eq(next.map(DbInstant)),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn count_due_checks(&self, now: DateTime<Utc>) -> Result<i64, StoreError> {
                    use $crate::__deps::diesel::dsl::sql;
                    use $crate::__deps::diesel::sql_types::Bool;
                    let mut conn = self.conn().await?;
                    payments::table
                        .filter(payments::next_reconcile_at.le(DbInstant(now)))
                        .filter(sql::<Bool>("payments.status IN ('pending', 'requires_action', 'authorized')"))
                        .count()
                        .get_result(&mut *conn)
                        .await
                        .map_err(db_error)
                }
            }

            /// Inbox events that are history: the predicate of `webhook_events_settled_idx`.
            const SETTLED: &str = "webhook_events.status IN ('processed', 'ignored')";

            #[$crate::__deps::async_trait]
            impl $crate::__deps::payhook_domain::ports::RefundStore for $store {
                async fn reserve_refund(
                    &self,
                    new: &$crate::__deps::payhook_domain::NewRefund,
                ) -> Result<$crate::__deps::payhook_domain::Reservation, StoreError> {
                    use $crate::__deps::payhook_domain::{Refund, RefundStatus, Reservation};
                    use $crate::rows::RefundRow;
                    use $crate::schema::refunds;
                    let key = DbUuid(new.payment_id.as_uuid());
                    let mut conn = self.conn().await?;
                    let reservation = conn
                        .transaction(async |conn| {
                            // Holds the payment's row (a no-op update, on both stores)
                            // until the refund is written: reservations of one payment
                            // are taken one after the other.
                            let held = diesel::update(payments::table.find(key))
                                .set(payments::updated_at.eq(payments::updated_at))
                                .execute(conn)
                                .await?;
                            if held == 0 {
                                return Ok::<_, TxError>(Reservation::NoPayment);
                            }
                            if let Some(idempotency_key) = &new.idempotency_key {
                                let existing: Option<RefundRow> = refunds::table
                                    .filter(refunds::payment_id.eq(key))
                                    .filter(refunds::idempotency_key.eq(idempotency_key))
                                    .select(RefundRow::as_select())
                                    .first(conn)
                                    .await
                                    .optional()?;
                                if let Some(existing) = existing {
                                    return Ok(Reservation::Existing(Refund::try_from(existing)?));
                                }
                            }
                            let payment: PaymentRow = payments::table
                                .find(key)
                                .select(PaymentRow::as_select())
                                .first(conn)
                                .await?;
                            let payment = Payment::try_from(payment)?;
                            if !payment.status.is_settled() || payment.status == PaymentStatus::Refunded {
                                return Ok(Reservation::NotRefundable(payment.status));
                            }
                            let held: Vec<(i64, String)> = refunds::table
                                .filter(refunds::payment_id.eq(key))
                                .select((refunds::amount, refunds::status))
                                .load(conn)
                                .await?;
                            let taken: i64 = held
                                .iter()
                                .filter(|(_, status)| {
                                    status.parse::<RefundStatus>().map(RefundStatus::holds_money).unwrap_or(true)
                                })
                                .map(|(amount, _)| amount)
                                .sum();
                            let paid = if payment.paid_amount > 0 {
                                payment.paid_amount
                            } else {
                                payment.amount.amount_minor()
                            };
                            let available = (paid - taken.max(payment.refunded_amount)).max(0);
                            let amount = new.amount.unwrap_or(available);
                            let currency = payment.amount.currency();
                            if amount <= 0 || amount > available {
                                return Ok(Reservation::Exceeds { available, currency });
                            }
                            let row = RefundRow {
                                id: DbUuid(new.id.as_uuid()),
                                payment_id: key,
                                provider_ref: None,
                                amount,
                                currency: currency.code().to_owned(),
                                reason: new.reason.clone(),
                                status: RefundStatus::Pending.as_str().to_owned(),
                                origin: $crate::__deps::payhook_domain::RefundOrigin::Merchant.as_str().to_owned(),
                                idempotency_key: new.idempotency_key.clone(),
                                failure_reason: None,
                                created_at: DbInstant(new.created_at),
                                updated_at: DbInstant(new.created_at),
                                next_check_at: Some(DbInstant(new.created_at)),
                            };
                            diesel::insert_into(refunds::table).values(&row).execute(conn).await?;
                            Ok(Reservation::New(Refund::try_from(row)?))
                        })
                        .await?;
                    Ok(reservation)
                }

                async fn record_refund_answer(
                    &self,
                    id: $crate::__deps::payhook_domain::RefundId,
                    provider_ref: Option<String>,
                    status: $crate::__deps::payhook_domain::RefundStatus,
                    failure_reason: Option<String>,
                    at: DateTime<Utc>,
                ) -> Result<$crate::__deps::payhook_domain::Refund, StoreError> {
                    use $crate::__deps::payhook_domain::{Refund, RefundStatus};
                    use $crate::rows::RefundRow;
                    use $crate::schema::refunds;
                    let key = DbUuid(id.as_uuid());
                    let mut conn = self.conn().await?;
                    let refund = conn
                        .transaction(async |conn| {
                            let pending = RefundStatus::Pending.as_str();
                            let moved = diesel::update(refunds::table.find(key).filter(refunds::status.eq(pending)))
                                .set((
                                    refunds::provider_ref.eq(&provider_ref),
                                    refunds::status.eq(status.as_str()),
                                    refunds::failure_reason.eq(&failure_reason),
                                    refunds::updated_at.eq(DbInstant(at)),
                                ))
                                .execute(conn)
                                .await?;
                            let row: RefundRow =
                                refunds::table.find(key).select(RefundRow::as_select()).first(conn).await?;
                            let refund = Refund::try_from(row)?;
                            if moved == 1 && status != RefundStatus::Pending {
                                $crate::publish_refund!(conn, &refund, at);
                            }
                            Ok::<_, TxError>(refund)
                        })
                        .await?;
                    Ok(refund)
                }

                async fn settle_refunds(
                    &self,
                    payment_id: PaymentId,
                    report: &$crate::__deps::payhook_domain::RefundReport,
                    at: DateTime<Utc>,
                ) -> Result<$crate::__deps::payhook_domain::Settlement, StoreError> {
                    use $crate::__deps::payhook_domain::{
                        Refund, RefundOrigin, RefundReport, RefundStatus, Settlement,
                    };
                    use $crate::rows::RefundRow;
                    use $crate::schema::refunds;
                    let key = DbUuid(payment_id.as_uuid());
                    let mut conn = self.conn().await?;
                    let settlement = conn
                        .transaction(async |conn| {
                            diesel::update(payments::table.find(key))
                                .set(payments::updated_at.eq(payments::updated_at))
                                .execute(conn)
                                .await?;
                            let payment: PaymentRow =
                                payments::table.find(key).select(PaymentRow::as_select()).first(conn).await?;
                            let payment = Payment::try_from(payment)?;
                            let mut rows: Vec<RefundRow> = refunds::table
                                .filter(refunds::payment_id.eq(key))
                                .order((refunds::created_at, refunds::id))
                                .select(RefundRow::as_select())
                                .load(conn)
                                .await?;
                            let currency = payment.amount.currency();
                            let succeeded = RefundStatus::Succeeded.as_str();
                            let pending = RefundStatus::Pending.as_str();
                            let total_of = |rows: &[RefundRow]| -> i64 {
                                rows.iter().filter(|r| r.status == succeeded).map(|r| r.amount).sum()
                            };
                            let provider_row = |amount: i64, provider_ref: Option<&str>, status: RefundStatus| RefundRow {
                                id: DbUuid($crate::__deps::uuid::Uuid::new_v4()),
                                payment_id: key,
                                provider_ref: provider_ref.map(str::to_owned),
                                amount,
                                currency: currency.code().to_owned(),
                                reason: None,
                                status: status.as_str().to_owned(),
                                origin: RefundOrigin::Provider.as_str().to_owned(),
                                idempotency_key: None,
                                failure_reason: None,
                                created_at: DbInstant(at),
                                updated_at: DbInstant(at),
                                next_check_at: (status == RefundStatus::Pending).then_some(DbInstant(at)),
                            };
                            // Rows to write back, and those whose status this report
                            // made final (published); rows added.
                            let mut settled: Vec<usize> = Vec::new();
                            let mut finalized: Vec<usize> = Vec::new();
                            let mut added: Vec<RefundRow> = Vec::new();
                            match report {
                                RefundReport::One { currency: c, .. } | RefundReport::Total { currency: c, .. }
                                    if *c != currency => {}
                                RefundReport::One { provider_ref, refund_id, amount, status, .. } => {
                                    let found = rows.iter().position(|r| {
                                        refund_id.is_some_and(|id| r.id.0 == id.as_uuid())
                                            || r.provider_ref.as_deref() == Some(provider_ref.as_str())
                                    });
                                    match found {
                                        Some(i) => {
                                            let named = rows[i].provider_ref.is_none();
                                            if named {
                                                rows[i].provider_ref = Some(provider_ref.clone());
                                            }
                                            let moved = rows[i].status == pending && *status != RefundStatus::Pending;
                                            if moved {
                                                rows[i].status = status.as_str().to_owned();
                                                finalized.push(i);
                                            }
                                            if named || moved {
                                                rows[i].updated_at = DbInstant(at);
                                                settled.push(i);
                                            }
                                        }
                                        None => {
                                            let unnamed = (*status == RefundStatus::Succeeded)
                                                .then(|| {
                                                    rows.iter().position(|r| {
                                                        r.provider_ref.is_none()
                                                            && r.origin == RefundOrigin::Provider.as_str()
                                                            && r.status == succeeded
                                                            && r.amount == *amount
                                                    })
                                                })
                                                .flatten();
                                            match unnamed {
                                                Some(i) => {
                                                    rows[i].provider_ref = Some(provider_ref.clone());
                                                    rows[i].updated_at = DbInstant(at);
                                                    settled.push(i);
                                                }
                                                None if *amount > 0 => {
                                                    added.push(provider_row(*amount, Some(provider_ref), *status))
                                                }
                                                None => {}
                                            }
                                        }
                                    }
                                }
                                RefundReport::Total { refunded_total, .. } => {
                                    let mut rest = refunded_total - total_of(&rows);
                                    for (i, row) in rows.iter_mut().enumerate() {
                                        if rest <= 0 {
                                            break;
                                        }
                                        if row.status == pending
                                            && row.origin == RefundOrigin::Merchant.as_str()
                                            && row.amount <= rest
                                        {
                                            row.status = succeeded.to_owned();
                                            row.updated_at = DbInstant(at);
                                            rest -= row.amount;
                                            settled.push(i);
                                            finalized.push(i);
                                        }
                                    }
                                    if rest > 0 {
                                        added.push(provider_row(rest, None, RefundStatus::Succeeded));
                                    }
                                }
                            }
                            let publishes = |refund: &Refund| {
                                matches!(refund.status, RefundStatus::Succeeded | RefundStatus::Failed)
                            };
                            let mut changed = Vec::new();
                            for i in settled {
                                let row = &rows[i];
                                diesel::update(refunds::table.find(row.id))
                                    .set((
                                        refunds::status.eq(&row.status),
                                        refunds::provider_ref.eq(&row.provider_ref),
                                        refunds::updated_at.eq(row.updated_at),
                                    ))
                                    .execute(conn)
                                    .await?;
                                let refund = Refund::try_from(row.clone())?;
                                if finalized.contains(&i) && publishes(&refund) {
                                    $crate::publish_refund!(conn, &refund, at);
                                }
                                changed.push(refund);
                            }
                            for row in &added {
                                diesel::insert_into(refunds::table).values(row).execute(conn).await?;
                                let refund = Refund::try_from(row.clone())?;
                                if publishes(&refund) {
                                    $crate::publish_refund!(conn, &refund, at);
                                }
                                changed.push(refund);
                            }
                            rows.extend(added);
                            Ok::<_, TxError>(Settlement {
                                succeeded_total: total_of(&rows),
                                changed,
                            })
                        })
                        .await?;
                    Ok(settlement)
                }

                async fn refund(
                    &self,
                    id: $crate::__deps::payhook_domain::RefundId,
                ) -> Result<Option<$crate::__deps::payhook_domain::Refund>, StoreError> {
                    use $crate::rows::RefundRow;
                    use $crate::schema::refunds;
                    let mut conn = self.conn().await?;
                    let row: Option<RefundRow> = refunds::table
                        .find(DbUuid(id.as_uuid()))
                        .select(RefundRow::as_select())
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(db_error)?;
                    row.map(TryFrom::try_from).transpose()
                }

                async fn refunds_of(
                    &self,
                    payment_id: PaymentId,
                ) -> Result<Vec<$crate::__deps::payhook_domain::Refund>, StoreError> {
                    use $crate::rows::RefundRow;
                    use $crate::schema::refunds;
                    let mut conn = self.conn().await?;
                    let rows: Vec<RefundRow> = refunds::table
                        .filter(refunds::payment_id.eq(DbUuid(payment_id.as_uuid())))
                        .order((refunds::created_at, refunds::id))
                        .select(RefundRow::as_select())
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    rows.into_iter().map(TryFrom::try_from).collect()
                }

                async fn claim_due_refund_checks(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    lease_until: DateTime<Utc>,
                ) -> Result<Vec<$crate::__deps::payhook_domain::ports::DueRefundCheck>, StoreError> {
                    use $crate::__deps::payhook_domain::ports::DueRefundCheck;
                    use $crate::__deps::payhook_domain::{Refund, RefundStatus};
                    use $crate::rows::RefundRow;
                    use $crate::schema::refunds;
                    let mut conn = self.conn().await?;
                    let rows: Vec<(RefundRow, i32, String, Option<String>)> = conn
                        .transaction(async |conn| {
                            // The store's own statement: it locks what it picks (SKIP
                            // LOCKED on Postgres) until this transaction ends.
                            let due: Vec<DueRow> = diesel::sql_query(<$store>::REFUND_CHECK_DUE_SQL)
                                .bind::<Instant, _>(DbInstant(now))
                                .bind::<BigInt, _>(i64::from(limit))
                                .load(conn)
                                .await?;
                            let pending = RefundStatus::Pending.as_str();
                            let (open, settled): (Vec<DueRow>, Vec<DueRow>) =
                                due.into_iter().partition(|row| row.status == pending);
                            let ids = |rows: &[DueRow]| rows.iter().map(|r| r.id).collect::<Vec<DbUuid>>();
                            if !settled.is_empty() {
                                diesel::update(refunds::table.filter(refunds::id.eq_any(ids(&settled))))
                                    .set(refunds::next_check_at.eq(None::<DbInstant>))
                                    .execute(conn)
                                    .await?;
                            }
                            if open.is_empty() {
                                return Ok::<_, diesel::result::Error>(Vec::new());
                            }
                            let open = ids(&open);
                            diesel::update(refunds::table.filter(refunds::id.eq_any(&open)))
                                .set(refunds::next_check_at.eq(DbInstant(lease_until)))
                                .execute(conn)
                                .await?;
                            refunds::table
                                .inner_join(payments::table)
                                .filter(refunds::id.eq_any(&open))
                                .order(refunds::created_at)
                                .select((
                                    RefundRow::as_select(),
                                    refunds::checks,
                                    payments::provider,
                                    payments::provider_ref,
                                ))
                                .load(conn)
                                .await
                        })
                        .await
                        .map_err(db_error)?;
                    rows.into_iter()
                        .map(|(row, checks, provider, payment_ref)| {
                            Ok(DueRefundCheck {
                                refund: Refund::try_from(row)?,
                                provider: provider.parse().map_err(|e| StoreError::Corrupt(format!("payments.provider: {e}")))?,
                                payment_ref,
                                checks: u32::try_from(checks).unwrap_or(0),
                            })
                        })
                        .collect()
                }

                async fn schedule_refund_check(
                    &self,
                    id: $crate::__deps::payhook_domain::RefundId,
                    checks: u32,
                    next: Option<DateTime<Utc>>,
                ) -> Result<(), StoreError> {
                    use $crate::schema::refunds;
                    let mut conn = self.conn().await?;
                    diesel::update(refunds::table.find(DbUuid(id.as_uuid())))
                        .set((
                            refunds::checks.eq(i32::try_from(checks).unwrap_or(i32::MAX)),
                            refunds::next_check_at.eq(next.map(DbInstant)),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }
            }

            #[$crate::__deps::async_trait]
            impl $crate::__deps::payhook_domain::ports::DisputeStore for $store {
                async fn record_dispute(
                    &self,
                    payment_id: PaymentId,
                    report: &$crate::__deps::payhook_domain::DisputeReport,
                    at: DateTime<Utc>,
                ) -> Result<$crate::__deps::payhook_domain::DisputeRecorded, StoreError> {
                    use $crate::rows::{dispute_row, DisputeRow, NewOutboxRow};
                    use $crate::schema::disputes;
                    use $crate::types::DbJsonText;
                    let key = DbUuid(payment_id.as_uuid());
                    let mut conn = self.conn().await?;
                    let (row, opened, closed) = conn
                        .transaction(async |conn| {
                            // A first report inserts the row; two racing first reports
                            // insert one (the other finds it).
                            let fresh = dispute_row(None, payment_id, report, at);
                            let inserted = diesel::insert_into(disputes::table)
                                .values(&fresh)
                                .on_conflict((disputes::payment_id, disputes::provider_ref))
                                .do_nothing()
                                .execute(conn)
                                .await?;
                            let opened = inserted == 1;
                            let (row, was_closed) = if opened {
                                (fresh, false)
                            } else {
                                // Locks the row before reading it (a no-op update: both
                                // stores), so two reports about one dispute apply one
                                // after the other and neither undoes the other.
                                let mine = disputes::table
                                    .filter(disputes::payment_id.eq(key))
                                    .filter(disputes::provider_ref.eq(&report.provider_ref));
                                diesel::update(mine)
                                    .set(disputes::updated_at.eq(disputes::updated_at))
                                    .execute(conn)
                                    .await?;
                                let existing: DisputeRow = mine.select(DisputeRow::as_select()).first(conn).await?;
                                let was_closed = existing.closed_at.is_some();
                                let row = dispute_row(Some(existing), payment_id, report, at);
                                diesel::update(disputes::table.find(row.id)).set(&row).execute(conn).await?;
                                (row, was_closed)
                            };
                            let closed = !was_closed && row.closed_at.is_some();
                            let dispute = $crate::__deps::payhook_domain::Dispute::try_from(row.clone())?;
                            let topics = [(opened, "dispute.opened"), (closed, "dispute.closed")];
                            for (_, topic) in topics.iter().filter(|(publish, _)| *publish) {
                                diesel::insert_into(outbox::table)
                                    .values(NewOutboxRow {
                                        topic,
                                        payload: DbJsonText(dispute.event_payload().to_string()),
                                        created_at: DbInstant(at),
                                        next_attempt_at: DbInstant(at),
                                        locked_until: None,
                                    })
                                    .execute(conn)
                                    .await?;
                            }
                            Ok::<_, TxError>((dispute, opened, closed))
                        })
                        .await?;
                    Ok($crate::__deps::payhook_domain::DisputeRecorded {
                        dispute: row,
                        opened,
                        closed,
                    })
                }

                async fn disputes_of(
                    &self,
                    payment_id: PaymentId,
                ) -> Result<Vec<$crate::__deps::payhook_domain::Dispute>, StoreError> {
                    use $crate::rows::DisputeRow;
                    use $crate::schema::disputes;
                    let mut conn = self.conn().await?;
                    let rows: Vec<DisputeRow> = disputes::table
                        .filter(disputes::payment_id.eq(DbUuid(payment_id.as_uuid())))
                        .order((disputes::created_at, disputes::provider_ref))
                        .select(DisputeRow::as_select())
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    rows.into_iter().map(TryFrom::try_from).collect()
                }
            }

            #[$crate::__deps::async_trait]
            impl StoreHealth for $store {
                async fn check(&self) -> Result<(), StoreError> {
                    let mut conn = self.conn().await?;
                    diesel::sql_query("SELECT 1").execute(&mut *conn).await.map_err(db_error)?;
                    Ok(())
                }
            }
        };
    };
}

/// Writes `refund.succeeded` or `refund.failed` for `$refund` to the outbox, due now,
/// inside the caller's transaction.
#[doc(hidden)]
#[macro_export]
macro_rules! publish_refund {
    ($conn:ident, $refund:expr, $at:expr) => {{
        let refund: &$crate::__deps::payhook_domain::Refund = $refund;
        let topic = match refund.status {
            $crate::__deps::payhook_domain::RefundStatus::Succeeded => "refund.succeeded",
            _ => "refund.failed",
        };
        diesel::insert_into($crate::schema::outbox::table)
            .values($crate::rows::NewOutboxRow {
                topic,
                payload: $crate::types::DbJsonText(refund.event_payload().to_string()),
                created_at: $crate::types::DbInstant($at),
                next_attempt_at: $crate::types::DbInstant($at),
                locked_until: None,
            })
            .execute($conn)
            .await?;
    }};
}

/// Runs the store's claim statement `$sql` (binding `now`, `limit`, `lease_until`) in
/// a transaction that starts with the store's `INDEX_SCAN_SETTINGS`.
#[doc(hidden)]
#[macro_export]
macro_rules! claim_rows {
    ($store:ty, $sql:ident, $conn:ident, $now:ident, $limit:ident, $lease_until:ident) => {
        $conn
            .transaction(async |conn| {
                for setting in <$store>::INDEX_SCAN_SETTINGS {
                    diesel::sql_query(*setting).execute(conn).await?;
                }
                diesel::sql_query(<$store>::$sql)
                    .bind::<Instant, _>(DbInstant($now))
                    .bind::<BigInt, _>(i64::from($limit))
                    .bind::<Instant, _>(DbInstant($lease_until))
                    .load(conn)
                    .await
            })
            .await
            .map_err(db_error)
    };
}
