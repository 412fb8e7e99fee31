//! Plans (`plans`), for both stores.

use crate::schema::plans;
use crate::types::{DbInstant, DbUuid};
use diesel::prelude::*;
use payhook_domain::ports::StoreError;
use payhook_domain::{Currency, Money, Plan, PlanId};

/// A `plans` row.
#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = plans)]
pub struct PlanRow {
    pub id: DbUuid,
    pub code: String,
    pub name: String,
    pub amount: i64,
    pub currency: String,
    pub interval: String,
    pub interval_count: i32,
    pub trial_days: i32,
    pub stripe_price_id: Option<String>,
    pub active: bool,
    pub created_at: DbInstant,
}

impl From<&Plan> for PlanRow {
    fn from(p: &Plan) -> Self {
        Self {
            id: DbUuid(p.id.as_uuid()),
            code: p.code.clone(),
            name: p.name.clone(),
            amount: p.amount.amount_minor(),
            currency: p.amount.currency().code().to_owned(),
            interval: p.interval.as_str().to_owned(),
            interval_count: i32::try_from(p.interval_count).unwrap_or(i32::MAX),
            trial_days: i32::try_from(p.trial_days).unwrap_or(i32::MAX),
            stripe_price_id: p.stripe_price_id.clone(),
            active: p.active,
            created_at: DbInstant(p.created_at),
        }
    }
}

impl TryFrom<PlanRow> for Plan {
    type Error = StoreError;
    fn try_from(r: PlanRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str, e: String| StoreError::Corrupt(format!("plans.{what}: {e}"));
        let currency = Currency::parse(&r.currency).map_err(|e| corrupt("currency", e.to_string()))?;
        Ok(Self {
            id: PlanId::from_uuid(r.id.0),
            code: r.code,
            name: r.name,
            amount: Money::new(r.amount, currency).map_err(|e| corrupt("amount", e.to_string()))?,
            interval: r.interval.parse().map_err(|e| corrupt("interval", e))?,
            interval_count: u32::try_from(r.interval_count).map_err(|e| corrupt("interval_count", e.to_string()))?,
            trial_days: u32::try_from(r.trial_days).map_err(|e| corrupt("trial_days", e.to_string()))?,
            stripe_price_id: r.stripe_price_id,
            active: r.active,
            created_at: r.created_at.0,
        })
    }
}

/// Implements `PlanStore` for a store type with an `async fn conn(&self)`.
#[macro_export]
#[doc(hidden)]
macro_rules! impl_plan_store {
    ($store:ty) => {
        const _: () = {
            use $crate::__deps::diesel::prelude::*;
            use $crate::__deps::diesel_async::RunQueryDsl;
            use $crate::__deps::payhook_domain::ports::{PlanCreated, PlanStore, StoreError};
            use $crate::__deps::payhook_domain::{Plan, PlanId};
            use $crate::db_error;
            use $crate::plans::PlanRow;
            use $crate::schema::plans;
            use $crate::types::DbUuid;

            #[$crate::__deps::async_trait]
            impl PlanStore for $store {
                async fn create_plan(&self, plan: &Plan) -> Result<PlanCreated, StoreError> {
                    let mut conn = self.conn().await?;
                    let inserted = diesel::insert_into(plans::table)
                        .values(PlanRow::from(plan))
                        .on_conflict(plans::code)
                        .do_nothing()
                        .execute(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    if inserted == 1 {
                        return Ok(PlanCreated::Created(plan.clone()));
                    }
                    let row: PlanRow = plans::table
                        .filter(plans::code.eq(&plan.code))
                        .select(PlanRow::as_select())
                        .first(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    Ok(PlanCreated::CodeTaken(Plan::try_from(row)?))
                }

                async fn plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError> {
                    let mut conn = self.conn().await?;
                    let row: Option<PlanRow> = plans::table
                        .find(DbUuid(id.as_uuid()))
                        .select(PlanRow::as_select())
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(db_error)?;
                    row.map(Plan::try_from).transpose()
                }

                async fn plan_by_code(&self, code: &str) -> Result<Option<Plan>, StoreError> {
                    let mut conn = self.conn().await?;
                    let row: Option<PlanRow> = plans::table
                        .filter(plans::code.eq(code))
                        .select(PlanRow::as_select())
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(db_error)?;
                    row.map(Plan::try_from).transpose()
                }

                async fn set_stripe_price(&self, id: PlanId, price_id: &str) -> Result<Option<Plan>, StoreError> {
                    let mut conn = self.conn().await?;
                    // Only the first price sticks: two creators agree on one.
                    diesel::update(
                        plans::table
                            .find(DbUuid(id.as_uuid()))
                            .filter(plans::stripe_price_id.is_null()),
                    )
                    .set(plans::stripe_price_id.eq(price_id))
                    .execute(&mut *conn)
                    .await
                    .map_err(db_error)?;
                    drop(conn);
                    self.plan(id).await
                }

                async fn plans(&self) -> Result<Vec<Plan>, StoreError> {
                    let mut conn = self.conn().await?;
                    let rows: Vec<PlanRow> = plans::table
                        .order((plans::created_at, plans::id))
                        .select(PlanRow::as_select())
                        .load(&mut *conn)
                        .await
                        .map_err(db_error)?;
                    rows.into_iter().map(Plan::try_from).collect()
                }
            }
        };
    };
}
