//! Subscriptions (`subscriptions`, `subscription_history`), for both stores.

use crate::plans::PlanRow;
use crate::schema::{subscription_history, subscriptions};
use crate::types::{DbInstant, DbJson, DbUuid};
use diesel::prelude::*;
use payhook_domain::ports::StoreError;
use payhook_domain::{Plan, ProviderStamp, Subscription, SubscriptionHistoryEntry, SubscriptionId, SubscriptionSave};

/// A `subscriptions` row, read.
#[derive(Queryable, Selectable, Clone)]
#[diesel(table_name = subscriptions)]
pub struct SubscriptionRow {
    pub id: DbUuid,
    pub provider: String,
    pub account: String,
    pub provider_ref: Option<String>,
    pub customer_ref: String,
    pub customer_email: Option<String>,
    pub status: String,
    pub anchor: Option<DbInstant>,
    pub periods: i32,
    pub current_period_start: Option<DbInstant>,
    pub current_period_end: Option<DbInstant>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DbInstant>,
    pub metadata: DbJson,
    pub created_at: DbInstant,
    pub updated_at: DbInstant,
    pub version: i64,
    pub request_fingerprint: Option<String>,
    pub checkout_url: Option<String>,
    pub provider_event_created: Option<i64>,
    pub provider_status_rank: Option<i32>,
    pub renewal_notified: Option<String>,
}

/// A `subscriptions` row, written whole (insert) or as its changing columns (update).
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = subscriptions, treat_none_as_null = true)]
pub struct SubscriptionWrite<'a> {
    pub provider_ref: Option<&'a str>,
    pub status: &'static str,
    pub anchor: Option<DbInstant>,
    pub periods: i32,
    pub current_period_start: Option<DbInstant>,
    pub current_period_end: Option<DbInstant>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DbInstant>,
    pub checkout_url: Option<&'a str>,
    pub provider_event_created: Option<i64>,
    pub provider_status_rank: Option<i32>,
    pub renewal_notified: Option<&'a str>,
    pub updated_at: DbInstant,
    pub next_due_at: Option<DbInstant>,
}

impl<'a> SubscriptionWrite<'a> {
    pub fn of(s: &'a Subscription, next_due_at: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        Self {
            provider_ref: s.provider_ref.as_deref(),
            status: s.status.as_str(),
            anchor: s.anchor.map(DbInstant),
            periods: i32::try_from(s.periods).unwrap_or(i32::MAX),
            current_period_start: s.current_period_start.map(DbInstant),
            current_period_end: s.current_period_end.map(DbInstant),
            cancel_at_period_end: s.cancel_at_period_end,
            canceled_at: s.canceled_at.map(DbInstant),
            checkout_url: s.checkout_url.as_deref(),
            provider_event_created: s.provider_stamp.map(|p| p.created),
            provider_status_rank: s.provider_stamp.map(|p| p.rank),
            renewal_notified: s.renewal_notified.as_deref(),
            updated_at: DbInstant(s.updated_at),
            next_due_at: next_due_at.map(DbInstant),
        }
    }
}

/// The columns only an insert writes.
#[derive(Insertable)]
#[diesel(table_name = subscriptions)]
pub struct SubscriptionIdentity<'a> {
    pub id: DbUuid,
    pub plan_id: DbUuid,
    pub provider: &'static str,
    pub account: &'a str,
    pub customer_ref: &'a str,
    pub customer_email: Option<&'a str>,
    pub metadata: DbJson,
    pub idempotency_key: Option<&'a str>,
    pub request_fingerprint: Option<&'a str>,
    pub created_at: DbInstant,
    pub version: i64,
}

impl SubscriptionRow {
    pub fn with_plan(self, plan: PlanRow) -> Result<Subscription, StoreError> {
        let corrupt = |what: &str, e: String| StoreError::Corrupt(format!("subscriptions.{what}: {e}"));
        Ok(Subscription {
            id: SubscriptionId::from_uuid(self.id.0),
            plan: Plan::try_from(plan)?,
            provider: self
                .provider
                .parse::<payhook_domain::Provider>()
                .map_err(|e| corrupt("provider", e.to_string()))?,
            account: self.account,
            provider_ref: self.provider_ref,
            customer_ref: self.customer_ref,
            customer_email: self.customer_email,
            status: self.status.parse().map_err(|e| corrupt("status", e))?,
            anchor: self.anchor.map(|t| t.0),
            periods: u32::try_from(self.periods).map_err(|e| corrupt("periods", e.to_string()))?,
            current_period_start: self.current_period_start.map(|t| t.0),
            current_period_end: self.current_period_end.map(|t| t.0),
            cancel_at_period_end: self.cancel_at_period_end,
            canceled_at: self.canceled_at.map(|t| t.0),
            metadata: self.metadata.0,
            checkout_url: self.checkout_url,
            provider_stamp: match (self.provider_event_created, self.provider_status_rank) {
                (Some(created), Some(rank)) => Some(ProviderStamp { created, rank }),
                _ => None,
            },
            renewal_notified: self.renewal_notified,
            created_at: self.created_at.0,
            updated_at: self.updated_at.0,
            version: self.version,
        })
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = subscription_history)]
pub struct SubscriptionHistoryRow {
    pub from_status: String,
    pub to_status: String,
    pub applied: bool,
    pub reason: String,
    pub at: DbInstant,
}

impl TryFrom<SubscriptionHistoryRow> for SubscriptionHistoryEntry {
    type Error = StoreError;
    fn try_from(r: SubscriptionHistoryRow) -> Result<Self, StoreError> {
        let corrupt = |e: String| StoreError::Corrupt(format!("subscription_history: {e}"));
        Ok(Self {
            from_status: r.from_status.parse().map_err(corrupt)?,
            to_status: r.to_status.parse().map_err(corrupt)?,
            applied: r.applied,
            reason: r.reason,
            at: r.at.0,
        })
    }
}

#[derive(Insertable)]
#[diesel(table_name = subscription_history)]
pub struct NewSubscriptionHistoryRow<'a> {
    pub subscription_id: DbUuid,
    pub from_status: &'static str,
    pub to_status: &'static str,
    pub applied: bool,
    pub reason: &'a str,
    pub at: DbInstant,
}

/// The history rows of a save.
pub fn history_rows(save: &SubscriptionSave) -> Vec<NewSubscriptionHistoryRow<'_>> {
    let id = DbUuid(save.subscription.id.as_uuid());
    save.history
        .iter()
        .map(|h| NewSubscriptionHistoryRow {
            subscription_id: id,
            from_status: h.from_status.as_str(),
            to_status: h.to_status.as_str(),
            applied: h.applied,
            reason: &h.reason,
            at: DbInstant(h.at),
        })
        .collect()
}

/// A subscription due for the scheduler, as the store's due query finds it.
#[derive(QueryableByName)]
#[diesel(table_name = subscriptions)]
pub struct DueSubscription {
    pub id: DbUuid,
}

/// Implements `SubscriptionStore` for a store type with an `async fn conn(&self)` and
/// a `SUBSCRIPTION_CLAIM_SQL` statement (an `UPDATE … RETURNING id` binding `now`,
/// `limit` and `lease_until`; Postgres skips what another claim locked).
#[macro_export]
#[doc(hidden)]
macro_rules! impl_subscription_store {
    ($store:ty) => {
        const _: () = {
            use $crate::__deps::chrono::{DateTime, Utc};
            use $crate::__deps::diesel::prelude::*;
            use $crate::__deps::diesel::sql_types::BigInt;
            use $crate::__deps::diesel_async::{AsyncConnection, RunQueryDsl};
            use $crate::__deps::payhook_domain::ports::{StoreError, SubscriptionStore};
            use $crate::__deps::payhook_domain::{
                NewSubscription, Payment, PaymentId, Provider, Subscription, SubscriptionFilter,
                SubscriptionHistoryEntry, SubscriptionId, SubscriptionOpened, SubscriptionSave,
            };
            use $crate::db_error;
            use $crate::plans::PlanRow;
            use $crate::rows::{NewOutboxRow, PaymentRow};
            use $crate::schema::{payments, plans, subscription_history, subscriptions};
            use $crate::subscriptions::{
                history_rows, DueSubscription, SubscriptionHistoryRow, SubscriptionIdentity, SubscriptionRow,
                SubscriptionWrite,
            };
            use $crate::types::{DbInstant, DbJson, DbJsonText, DbUuid, Instant};

            type Joined = (SubscriptionRow, PlanRow);

            fn joined(rows: Vec<Joined>) -> Result<Vec<Subscription>, StoreError> {
                rows.into_iter().map(|(s, p)| s.with_plan(p)).collect()
            }

            #[$crate::__deps::async_trait]
            impl SubscriptionStore for $store {
                async fn open_subscription(&self, new: &NewSubscription) -> Result<SubscriptionOpened, StoreError> {
                    let s = &new.subscription;
                    let identity = SubscriptionIdentity {
                        id: DbUuid(s.id.as_uuid()),
                        plan_id: DbUuid(s.plan.id.as_uuid()),
                        provider: s.provider.as_str(),
                        account: &s.account,
                        customer_ref: &s.customer_ref,
                        customer_email: s.customer_email.as_deref(),
                        metadata: DbJson(s.metadata.clone()),
                        idempotency_key: new.idempotency.as_ref().map(|i| i.key.as_str()),
                        request_fingerprint: new.idempotency.as_ref().map(|i| i.fingerprint.as_str()),
                        created_at: DbInstant(s.created_at),
                        version: s.version,
                    };
                    let mut conn = self.conn().await?;
                    // Two requests with one key (or two events adopting one Stripe
                    // subscription) race here: the unique columns let one insert.
                    let inserted = diesel::insert_into(subscriptions::table)
                        .values((identity, SubscriptionWrite::of(s, new.next_due_at)))
                        .on_conflict_do_nothing()
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    if inserted == 1 {
                        return Ok(SubscriptionOpened::New(s.clone()));
                    }
                    let mut query = subscriptions::table
                        .inner_join(plans::table)
                        .select((SubscriptionRow::as_select(), PlanRow::as_select()))
                        .into_boxed();
                    query = match (&new.idempotency, &s.provider_ref) {
                        (Some(i), _) => query.filter(subscriptions::idempotency_key.eq(i.key.clone())),
                        (None, Some(reference)) => query.filter(
                            subscriptions::provider
                                .eq(s.provider.as_str())
                                .and(subscriptions::account.eq(s.account.clone()))
                                .and(subscriptions::provider_ref.eq(reference.clone())),
                        ),
                        (None, None) => query.filter(subscriptions::id.eq(DbUuid(s.id.as_uuid()))),
                    };
                    let (row, plan): Joined = query.first(&mut *conn).await.map_err(db_error)?;
                    let fingerprint = row.request_fingerprint.clone();
                    Ok(SubscriptionOpened::Existing {
                        subscription: row.with_plan(plan)?,
                        fingerprint,
                    })
                }

                async fn subscription(&self, id: SubscriptionId) -> Result<Option<Subscription>, StoreError> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<Joined> = subscriptions::table
                        .inner_join(plans::table)
                        .filter(subscriptions::id.eq(DbUuid(id.as_uuid())))
                        .select((SubscriptionRow::as_select(), PlanRow::as_select()))
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(joined(rows)?.pop())
                }

                async fn subscription_by_provider_ref(
                    &self,
                    provider: Provider,
                    account: &str,
                    provider_ref: &str,
                ) -> Result<Option<Subscription>, StoreError> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<Joined> = subscriptions::table
                        .inner_join(plans::table)
                        .filter(subscriptions::provider.eq(provider.as_str()))
                        .filter(subscriptions::account.eq(account))
                        .filter(subscriptions::provider_ref.eq(provider_ref))
                        .select((SubscriptionRow::as_select(), PlanRow::as_select()))
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(joined(rows)?.pop())
                }

                async fn subscription_history(
                    &self,
                    id: SubscriptionId,
                ) -> Result<Vec<SubscriptionHistoryEntry>, StoreError> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<SubscriptionHistoryRow> = subscription_history::table
                        .filter(subscription_history::subscription_id.eq(DbUuid(id.as_uuid())))
                        .order(subscription_history::id)
                        .select(SubscriptionHistoryRow::as_select())
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    rows.into_iter().map(SubscriptionHistoryEntry::try_from).collect()
                }

                async fn list_subscriptions(
                    &self,
                    filter: &SubscriptionFilter,
                ) -> Result<Vec<Subscription>, StoreError> {
                    let mut query = subscriptions::table
                        .inner_join(plans::table)
                        .select((SubscriptionRow::as_select(), PlanRow::as_select()))
                        .order((subscriptions::created_at.desc(), subscriptions::id.desc()))
                        .limit(i64::from(filter.limit))
                        .into_boxed();
                    if let Some((at, id)) = filter.after {
                        let (at, id) = (DbInstant(at), DbUuid(id.as_uuid()));
                        query = query.filter(
                            subscriptions::created_at
                                .lt(at)
                                .or(subscriptions::created_at.eq(at).and(subscriptions::id.lt(id))),
                        );
                    }
                    if let Some(customer) = &filter.customer_ref {
                        query = query.filter(subscriptions::customer_ref.eq(customer.clone()));
                    }
                    if let Some(status) = filter.status {
                        query = query.filter(subscriptions::status.eq(status.as_str()));
                    }
                    if let Some(plan) = filter.plan {
                        query = query.filter(subscriptions::plan_id.eq(DbUuid(plan.as_uuid())));
                    }
                    let mut conn = self.conn().await?;
                    let rows: Vec<Joined> = query.load(&mut *conn).await.map_err(db_error)?;
                    joined(rows)
                }

                async fn save_subscription(&self, save: &SubscriptionSave) -> Result<(), StoreError> {
                    let s = &save.subscription;
                    let id = DbUuid(s.id.as_uuid());
                    let mut conn = self.conn().await?;
                    let saved = conn
                        .transaction(async |conn| {
                            // The write comes first: SQLite takes its write lock here.
                            let moved = diesel::update(
                                subscriptions::table
                                    .filter(subscriptions::id.eq(id))
                                    .filter(subscriptions::version.eq(save.expected_version)),
                            )
                            .set((
                                SubscriptionWrite::of(s, save.next_due_at),
                                subscriptions::version.eq(save.expected_version + 1),
                            ))
                            .execute(conn)
                            .await?;
                            if moved == 0 {
                                return Ok::<_, diesel::result::Error>(false);
                            }
                            // A save writes one or two entries: one statement each.
                            for entry in history_rows(save) {
                                diesel::insert_into(subscription_history::table)
                                    .values(entry)
                                    .execute(conn)
                                    .await?;
                            }
                            for publication in &save.publications {
                                diesel::insert_into($crate::schema::outbox::table)
                                    .values(NewOutboxRow {
                                        topic: &publication.topic,
                                        payload: DbJsonText(publication.payload.to_string()),
                                        created_at: DbInstant(s.updated_at),
                                        next_attempt_at: DbInstant(s.updated_at),
                                        locked_until: None,
                                    })
                                    .execute(conn)
                                    .await?;
                            }
                            Ok(true)
                        })
                        .await
                        .map_err(db_error)?;
                    if saved {
                        Ok(())
                    } else {
                        Err(StoreError::Conflict(format!("subscription {}", s.id)))
                    }
                }

                async fn schedule_subscription(
                    &self,
                    id: SubscriptionId,
                    next_due_at: Option<DateTime<Utc>>,
                ) -> Result<(), StoreError> {
                    let mut conn = self.conn().await?;
                    diesel::update(subscriptions::table.filter(subscriptions::id.eq(DbUuid(id.as_uuid()))))
                        .set(subscriptions::next_due_at.eq(next_due_at.map(DbInstant)))
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(())
                }

                async fn claim_due_subscriptions(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    lease_until: DateTime<Utc>,
                ) -> Result<Vec<SubscriptionId>, StoreError> {
                    let mut conn = self.conn().await?;
                    let due: Vec<DueSubscription> = diesel::sql_query(<$store>::SUBSCRIPTION_CLAIM_SQL)
                        .bind::<Instant, _>(DbInstant(now))
                        .bind::<BigInt, _>(i64::from(limit))
                        .bind::<Instant, _>(DbInstant(lease_until))
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(due
                        .into_iter()
                        .map(|d| SubscriptionId::from_uuid(d.id.0))
                        .collect())
                }

                async fn link_payment(
                    &self,
                    payment: PaymentId,
                    subscription: SubscriptionId,
                ) -> Result<(), StoreError> {
                    let mut conn = self.conn().await?;
                    diesel::update(
                        payments::table
                            .filter(payments::id.eq(DbUuid(payment.as_uuid())))
                            .filter(payments::subscription_id.is_null()),
                    )
                    .set(payments::subscription_id.eq(Some(DbUuid(subscription.as_uuid()))))
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                    Ok(())
                }

                async fn subscription_payments(&self, id: SubscriptionId) -> Result<Vec<Payment>, StoreError> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<PaymentRow> = payments::table
                        .filter(payments::subscription_id.eq(DbUuid(id.as_uuid())))
                        .order((payments::created_at, payments::id))
                        .select(PaymentRow::as_select())
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    rows.into_iter().map(Payment::try_from).collect()
                }
            }
        };
    };
}
