//! Filling the Stripe mirror from Stripe's API: one object (`payhook stripe resync`, and
//! a tie two events of the same second and status cannot decide), or every object of a
//! type, a page at a time (`payhook stripe backfill`).
//!
//! A read from the API is the object as it stands when read, so it is written as of
//! that time (`source_event_created` = the read's time, `source_event_id` =
//! `resync:…`/`backfill:…`), under the mirror's ordering rule: an event created later
//! still replaces it, an older one never does. A backfill stores each page and where it
//! stands in one transaction, so running it again after an interruption goes on from
//! the last page stored.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use payhook_domain::ports::{Clock, StoreError, StripeMirror, StripeObjectApi};
use payhook_domain::{BackfillCursor, GatewayError, MirrorOutcome, MirrorWrite, StripeObjectType};
use std::num::NonZeroU32;
use std::sync::Arc;

/// Objects asked for per list page: Stripe's most.
pub const PAGE: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum FillError {
    #[error(transparent)]
    Stripe(#[from] GatewayError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Stripe answered something that is not a {0} object")]
    NotAnObject(StripeObjectType),
}

/// What a backfill run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    /// Where it started from: `None`, the beginning; else the object it went on after.
    pub resumed_after: Option<String>,
    pub pages: u32,
    /// Objects read in this run.
    pub read: u64,
    /// Of those, written (new, or newer than what the mirror held).
    pub written: u64,
    /// Objects stored by every run of this backfill, this one included.
    pub stored_in_all: i64,
}

pub struct MirrorFiller {
    api: Arc<dyn StripeObjectApi>,
    mirror: Arc<dyn StripeMirror>,
    clock: Arc<dyn Clock>,
    limiter: DefaultDirectRateLimiter,
}

impl MirrorFiller {
    /// `max_calls_per_second` bounds the calls to Stripe (`reconcile.max_calls_per_second`).
    pub fn new(
        api: Arc<dyn StripeObjectApi>,
        mirror: Arc<dyn StripeMirror>,
        clock: Arc<dyn Clock>,
        max_calls_per_second: NonZeroU32,
    ) -> Self {
        Self {
            api,
            mirror,
            clock,
            limiter: RateLimiter::direct(Quota::per_second(max_calls_per_second).allow_burst(NonZeroU32::MIN)),
        }
    }

    /// The write of `data`, read from the API now.
    fn write_of(&self, account: &str, object_type: StripeObjectType, data: &str, source: &str) -> Option<MirrorWrite> {
        let now = self.clock.now().timestamp();
        // A deleted customer, product or price reads back as `{"id", "deleted": true}`.
        let deleted = serde_json::from_str::<serde_json::Value>(data)
            .ok()
            .and_then(|v| v.get("deleted").and_then(serde_json::Value::as_bool))
            .unwrap_or(false);
        MirrorWrite::of(account, object_type, data, deleted, format!("{source}:{now}"), now)
    }

    /// Reads one object from Stripe and writes it into the mirror.
    pub async fn resync(
        &self,
        account: &str,
        object_type: StripeObjectType,
        object_id: &str,
    ) -> Result<MirrorOutcome, FillError> {
        self.limiter.until_ready().await;
        let data = self.api.retrieve(account, object_type, object_id).await?;
        let write = self
            .write_of(account, object_type, &data, "resync")
            .ok_or(FillError::NotAnObject(object_type))?;
        Ok(self.mirror.write_object(&write, self.clock.now()).await?)
    }

    /// Pages through Stripe's list of `object_type` (created since `since`, unix
    /// seconds) as `account`, from where the last run of the same backfill stopped;
    /// `progress` hears of each page stored.
    pub async fn backfill(
        &self,
        account: &str,
        object_type: StripeObjectType,
        since: Option<i64>,
        mut progress: impl FnMut(&BackfillCursor, &BackfillReport),
    ) -> Result<BackfillReport, FillError> {
        let mut cursor = match self.mirror.backfill_cursor(account, object_type, since).await? {
            // A finished backfill run again is a new pass over everything.
            Some(done) if done.done => BackfillCursor {
                starting_after: None,
                stored: 0,
                done: false,
                ..done
            },
            Some(unfinished) => unfinished,
            None => BackfillCursor {
                account: account.to_owned(),
                object_type,
                since,
                starting_after: None,
                stored: 0,
                done: false,
            },
        };
        let mut report = BackfillReport {
            resumed_after: cursor.starting_after.clone(),
            ..BackfillReport::default()
        };
        loop {
            self.limiter.until_ready().await;
            let page = self
                .api
                .list(account, object_type, since, cursor.starting_after.clone(), PAGE)
                .await?;
            let writes = page
                .data
                .iter()
                .map(|data| {
                    self.write_of(account, object_type, data, "backfill")
                        .ok_or(FillError::NotAnObject(object_type))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(last) = writes.last() {
                cursor.starting_after = Some(last.object_id.clone());
            }
            cursor.stored += writes.len() as i64;
            cursor.done = !page.has_more || writes.is_empty();
            let outcomes = self
                .mirror
                .save_backfill_page(&cursor, &writes, self.clock.now())
                .await?;
            report.pages += 1;
            report.read += writes.len() as u64;
            report.written += outcomes.iter().filter(|o| **o == MirrorOutcome::Written).count() as u64;
            report.stored_in_all = cursor.stored;
            progress(&cursor, &report);
            if cursor.done {
                return Ok(report);
            }
        }
    }
}
