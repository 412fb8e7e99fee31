//! The Stripe mirror's rows (`stripe_objects`) and backfill cursors
//! (`stripe_backfills`), for both stores.
//!
//! A write is one conditional statement, so it is atomic on both stores without a row
//! lock: insert the object if it is new; else update it only where what is stored is
//! older (an earlier `source_event_created`, or the same second and a lower
//! `status_rank`). Only when neither wrote is the stored row read, to say why.

use crate::schema::{stripe_backfills, stripe_objects};
use crate::types::DbInstant;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use payhook_domain::ports::StoreError;
use payhook_domain::{BackfillCursor, MirrorWrite, MirroredObject};

/// A `stripe_objects` row.
#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = stripe_objects)]
pub struct MirrorRow {
    pub account: String,
    pub object_type: String,
    pub object_id: String,
    pub data: String,
    pub livemode: bool,
    pub deleted: bool,
    pub customer: Option<String>,
    pub status_rank: i32,
    pub source_event_id: String,
    pub source_event_created: i64,
    pub updated_at: DbInstant,
}

impl MirrorRow {
    pub fn new(write: &MirrorWrite, at: DateTime<Utc>) -> Self {
        Self {
            account: write.account.clone(),
            object_type: write.object_type.as_str().to_owned(),
            object_id: write.object_id.clone(),
            data: write.data.clone(),
            livemode: write.livemode,
            deleted: write.deleted,
            customer: write.customer.clone(),
            status_rank: write.status_rank,
            source_event_id: write.source_event_id.clone(),
            source_event_created: write.source_event_created,
            updated_at: DbInstant(at),
        }
    }
}

impl TryFrom<MirrorRow> for MirroredObject {
    type Error = StoreError;
    fn try_from(r: MirrorRow) -> Result<Self, StoreError> {
        Ok(Self {
            object_type: r.object_type.parse().map_err(StoreError::Corrupt)?,
            source_event_created: DateTime::<Utc>::from_timestamp(r.source_event_created, 0).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "stripe_objects.source_event_created {}",
                    r.source_event_created
                ))
            })?,
            account: r.account,
            object_id: r.object_id,
            data: r.data,
            livemode: r.livemode,
            deleted: r.deleted,
            source_event_id: r.source_event_id,
            updated_at: r.updated_at.0,
        })
    }
}

/// A `stripe_backfills` row.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Clone)]
#[diesel(table_name = stripe_backfills)]
pub struct BackfillRow {
    pub account: String,
    pub object_type: String,
    pub since: i64,
    pub starting_after: Option<String>,
    pub stored: i64,
    pub done: bool,
    pub updated_at: DbInstant,
}

impl BackfillRow {
    pub fn new(cursor: &BackfillCursor, at: DateTime<Utc>) -> Self {
        Self {
            account: cursor.account.clone(),
            object_type: cursor.object_type.as_str().to_owned(),
            since: cursor.since.unwrap_or(0),
            starting_after: cursor.starting_after.clone(),
            stored: cursor.stored,
            done: cursor.done,
            updated_at: DbInstant(at),
        }
    }
}

impl TryFrom<BackfillRow> for BackfillCursor {
    type Error = StoreError;
    fn try_from(r: BackfillRow) -> Result<Self, StoreError> {
        Ok(Self {
            account: r.account,
            object_type: r.object_type.parse().map_err(StoreError::Corrupt)?,
            since: (r.since > 0).then_some(r.since),
            starting_after: r.starting_after,
            stored: r.stored,
            done: r.done,
        })
    }
}

/// Of several writes of one object, the one that wins (the latest; the first of a
/// tie): what a multi-row statement, which may touch each row once, writes.
pub fn winners(writes: &[&MirrorWrite]) -> Vec<usize> {
    let mut best: std::collections::HashMap<(&str, &str, &str), usize> = std::collections::HashMap::new();
    for (i, w) in writes.iter().enumerate() {
        let key = (w.account.as_str(), w.object_type.as_str(), w.object_id.as_str());
        match best.get(&key) {
            Some(&j)
                if (writes[j].source_event_created, writes[j].status_rank)
                    >= (w.source_event_created, w.status_rank) => {}
            _ => {
                best.insert(key, i);
            }
        }
    }
    let mut chosen: Vec<usize> = best.into_values().collect();
    // Key order, so two batches writing the same objects lock them alike.
    chosen.sort_by(|a, b| {
        let key = |w: &MirrorWrite| (w.account.clone(), w.object_type.as_str(), w.object_id.clone());
        key(writes[*a]).cmp(&key(writes[*b]))
    });
    chosen
}

/// Writes one object under the ordering rule, on `$conn` (inside the caller's
/// transaction, if any); evaluates to its `MirrorOutcome`. `?` on diesel errors.
#[macro_export]
#[doc(hidden)]
macro_rules! write_mirror {
    ($conn:expr, $write:expr, $at:expr) => {{
        use $crate::__deps::diesel::prelude::*;
        use $crate::__deps::diesel_async::RunQueryDsl;
        use $crate::__deps::payhook_domain::MirrorOutcome;
        use $crate::schema::stripe_objects as so;
        let write: &$crate::__deps::payhook_domain::MirrorWrite = $write;
        let row = $crate::mirror::MirrorRow::new(write, $at);
        let key = (
            write.account.as_str(),
            write.object_type.as_str(),
            write.object_id.as_str(),
        );
        let inserted = $crate::__deps::diesel::insert_into(so::table)
            .values(&row)
            .on_conflict((so::account, so::object_type, so::object_id))
            .do_nothing()
            .execute($conn)
            .await?;
        if inserted == 1 {
            MirrorOutcome::Written
        } else {
            let (created, rank) = (write.source_event_created, write.status_rank);
            let updated = $crate::__deps::diesel::update(so::table.find(key))
                .filter(
                    so::source_event_created
                        .lt(created)
                        .or(so::source_event_created.eq(created).and(so::status_rank.lt(rank))),
                )
                .set((
                    so::data.eq(&row.data),
                    so::livemode.eq(row.livemode),
                    so::deleted.eq(row.deleted),
                    so::customer.eq(&row.customer),
                    so::status_rank.eq(row.status_rank),
                    so::source_event_id.eq(&row.source_event_id),
                    so::source_event_created.eq(row.source_event_created),
                    so::updated_at.eq(row.updated_at),
                ))
                .execute($conn)
                .await?;
            if updated == 1 {
                MirrorOutcome::Written
            } else {
                let (event, stored_created, stored_rank): (String, i64, i32) = so::table
                    .find(key)
                    .select((so::source_event_id, so::source_event_created, so::status_rank))
                    .first($conn)
                    .await?;
                write.against(&event, stored_created, stored_rank)
            }
        }
    }};
}

/// Counts what a mirror write did (`payhook_stripe_mirror_writes_total{outcome}`).
pub fn count(outcome: payhook_domain::MirrorOutcome) {
    let outcome = match outcome {
        payhook_domain::MirrorOutcome::Written => "written",
        payhook_domain::MirrorOutcome::Older => "older",
        payhook_domain::MirrorOutcome::Tie => "tie",
        payhook_domain::MirrorOutcome::Same => "same",
    };
    metrics::counter!("payhook_stripe_mirror_writes_total", "outcome" => outcome).increment(1);
}

/// Implements `StripeMirror` for a store type with an `async fn conn(&self)`;
/// `apply_mirror_events` is the store's own batch write of mirror-only events.
#[macro_export]
#[doc(hidden)]
macro_rules! impl_stripe_mirror {
    ($store:ty, apply_mirror_events = $apply:path $(,)?) => {
        const _: () = {
            use $crate::__deps::chrono::{DateTime, Utc};
            use $crate::__deps::diesel::prelude::*;
            use $crate::__deps::diesel_async::{AsyncConnection, RunQueryDsl};
            use $crate::__deps::payhook_domain::ports::{StoreError, StripeMirror};
            use $crate::__deps::payhook_domain::{
                BackfillCursor, InboxId, MirrorFilter, MirrorOutcome, MirrorWrite, MirroredObject, StripeObjectType,
            };
            use $crate::mirror::{BackfillRow, MirrorRow};
            use $crate::schema::{stripe_backfills as sb, stripe_objects as so, webhook_events as ev};
            use $crate::types::DbInstant;
            use $crate::{db_error, TxError};

            #[$crate::__deps::async_trait]
            impl StripeMirror for $store {
                async fn apply_mirror_events(
                    &self,
                    events: &[(InboxId, MirrorWrite)],
                    at: DateTime<Utc>,
                ) -> Result<Vec<MirrorOutcome>, StoreError> {
                    if events.is_empty() {
                        return Ok(Vec::new());
                    }
                    let mut conn = self.conn().await?;
                    let outcomes = $apply(&mut *conn, events, at).await?;
                    outcomes.iter().copied().for_each($crate::mirror::count);
                    Ok(outcomes)
                }

                async fn write_object(
                    &self,
                    write: &MirrorWrite,
                    at: DateTime<Utc>,
                ) -> Result<MirrorOutcome, StoreError> {
                    let mut conn = self.conn().await?;
                    let outcome = conn
                        .transaction(async |conn| Ok::<_, TxError>($crate::write_mirror!(conn, write, at)))
                        .await?;
                    $crate::mirror::count(outcome);
                    Ok(outcome)
                }

                async fn object(
                    &self,
                    account: &str,
                    object_type: StripeObjectType,
                    object_id: &str,
                ) -> Result<Option<MirroredObject>, StoreError> {
                    let mut conn = self.conn().await?;
                    let row: Option<MirrorRow> = so::table
                        .find((account, object_type.as_str(), object_id))
                        .select(MirrorRow::as_select())
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(db_error)?;
                    row.map(MirroredObject::try_from).transpose()
                }

                async fn list_objects(&self, filter: &MirrorFilter) -> Result<Vec<MirroredObject>, StoreError> {
                    let mut query = so::table
                        .filter(so::account.eq(&filter.account))
                        .filter(so::object_type.eq(filter.object_type.as_str()))
                        .select(MirrorRow::as_select())
                        .order(so::object_id)
                        .limit(i64::from(filter.limit))
                        .into_boxed();
                    if let Some(customer) = &filter.customer {
                        query = query.filter(so::customer.eq(customer));
                    }
                    if let Some(after) = &filter.after {
                        query = query.filter(so::object_id.gt(after));
                    }
                    let mut conn = self.conn().await?;
                    let rows: Vec<MirrorRow> = query.load(&mut *conn).await.map_err(db_error)?;
                    rows.into_iter().map(MirroredObject::try_from).collect()
                }

                async fn backfill_cursor(
                    &self,
                    account: &str,
                    object_type: StripeObjectType,
                    since: Option<i64>,
                ) -> Result<Option<BackfillCursor>, StoreError> {
                    let mut conn = self.conn().await?;
                    let row: Option<BackfillRow> = sb::table
                        .find((account, object_type.as_str(), since.unwrap_or(0)))
                        .select(BackfillRow::as_select())
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(db_error)?;
                    row.map(BackfillCursor::try_from).transpose()
                }

                async fn save_backfill_page(
                    &self,
                    cursor: &BackfillCursor,
                    writes: &[MirrorWrite],
                    at: DateTime<Utc>,
                ) -> Result<Vec<MirrorOutcome>, StoreError> {
                    let row = BackfillRow::new(cursor, at);
                    let mut conn = self.conn().await?;
                    let outcomes = conn
                        .transaction(async |conn| {
                            let mut outcomes = Vec::with_capacity(writes.len());
                            for write in writes {
                                outcomes.push($crate::write_mirror!(conn, write, at));
                            }
                            diesel::insert_into(sb::table)
                                .values(&row)
                                .on_conflict((sb::account, sb::object_type, sb::since))
                                .do_update()
                                .set(&row)
                                .execute(conn)
                                .await?;
                            Ok::<_, TxError>(outcomes)
                        })
                        .await?;
                    outcomes.iter().copied().for_each($crate::mirror::count);
                    Ok(outcomes)
                }
            }
        };
    };
}
