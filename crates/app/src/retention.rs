//! The retention job: deletes what `retention.*` lets go, in small batches, so no
//! statement holds a long lock on a table the ingest path writes. `payhook serve`
//! runs a pass at start-up and every `retention.interval_secs`; `payhook purge` runs
//! one now (or only counts, with `--dry-run`).

use payhook_domain::ports::{Clock, Retention, StoreError};
use payhook_domain::{Retained, RetentionPolicy};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Rows one statement deletes at most: with the pause below, 1,000,000 forensic rows
/// went in 31 s on Postgres while the bench's load kept its ACK latency
/// (docs/performance.md, "Retention under load").
pub const PURGE_BATCH: u32 = 1000;

/// Pause between two batches, leaving the store to the ingest path in between (50 ms
/// measured no better for the ingest path's latency, and purged at half the rate).
pub const BATCH_PAUSE: Duration = Duration::from_millis(20);

/// How many records of each kind a pass deleted (or, dry, would delete).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PurgeReport {
    pub forensic_log: u64,
    pub inbox: u64,
    pub outbox: u64,
}

impl PurgeReport {
    pub fn get(&self, kind: Retained) -> u64 {
        match kind {
            Retained::ForensicLog => self.forensic_log,
            Retained::Inbox => self.inbox,
            Retained::Outbox => self.outbox,
        }
    }

    fn add(&mut self, kind: Retained, n: u64) {
        match kind {
            Retained::ForensicLog => self.forensic_log += n,
            Retained::Inbox => self.inbox += n,
            Retained::Outbox => self.outbox += n,
        }
    }

    pub fn total(&self) -> u64 {
        self.forensic_log + self.inbox + self.outbox
    }
}

/// Applies a retention policy to a store, by the clock's time.
pub struct Purger {
    store: Arc<dyn Retention>,
    policy: RetentionPolicy,
    clock: Arc<dyn Clock>,
    batch: u32,
    pause: Duration,
}

impl Purger {
    pub fn new(store: Arc<dyn Retention>, policy: RetentionPolicy, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            policy,
            clock,
            batch: PURGE_BATCH,
            pause: BATCH_PAUSE,
        }
    }

    /// Batches of `batch` rows with `pause` between them (tests use small ones).
    pub fn in_batches(mut self, batch: u32, pause: Duration) -> Self {
        self.batch = batch.max(1);
        self.pause = pause;
        self
    }

    /// Deletes every record the policy lets go as of now, a batch at a time, until a
    /// batch comes back short or `stop` turns true (the rest waits for the next pass).
    pub async fn purge(&self, stop: &watch::Receiver<bool>) -> Result<PurgeReport, StoreError> {
        let mut report = PurgeReport::default();
        for kind in Retained::ALL {
            let Some(cutoff) = self.policy.cutoff(kind, self.clock.now()) else {
                continue;
            };
            loop {
                if *stop.borrow() {
                    return Ok(report);
                }
                let deleted = self.store.purge(kind, cutoff, self.batch).await?;
                report.add(kind, deleted);
                metrics::counter!("payhook_purged_total", "kind" => kind.as_str()).increment(deleted);
                if deleted < u64::from(self.batch) {
                    break;
                }
                tokio::time::sleep(self.pause).await;
            }
        }
        Ok(report)
    }

    /// What [`Purger::purge`] would delete now.
    pub async fn count(&self) -> Result<PurgeReport, StoreError> {
        let mut report = PurgeReport::default();
        for kind in Retained::ALL {
            if let Some(cutoff) = self.policy.cutoff(kind, self.clock.now()) {
                report.add(kind, self.store.count_purgeable(kind, cutoff).await?);
            }
        }
        Ok(report)
    }
}

/// Purges at once, then every `interval`, until `stopped` turns true. A failed pass
/// (store down) is logged and tried again at the next interval.
pub async fn run_retention(purger: Purger, interval: Duration, mut stopped: watch::Receiver<bool>) {
    loop {
        let started = std::time::Instant::now();
        match purger.purge(&stopped).await {
            Ok(report) if report.total() > 0 => tracing::info!(
                forensic_log = report.forensic_log,
                inbox = report.inbox,
                outbox = report.outbox,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "purged records past their retention"
            ),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "retention purge failed; trying again next interval"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, TimeZone, Utc};
    use payhook_domain::ports::{MockClock, MockRetention};
    use std::sync::Mutex;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap()
    }

    fn clock_at(at: DateTime<Utc>) -> Arc<dyn Clock> {
        let mut clock = MockClock::new();
        clock.expect_now().return_const(at);
        Arc::new(clock)
    }

    fn policy(forensic_days: u32, inbox_days: u32, outbox_days: u32) -> RetentionPolicy {
        RetentionPolicy {
            forensic_days,
            inbox_days,
            outbox_days,
        }
    }

    /// The calls a mock store saw: kind, cutoff, batch size.
    type Calls = Arc<Mutex<Vec<(Retained, DateTime<Utc>, u32)>>>;

    /// A store holding `left` purgeable rows per kind; records every call.
    fn store(left: [u64; 3], calls: Calls) -> MockRetention {
        let left = Mutex::new(left);
        let mut store = MockRetention::new();
        store.expect_purge().returning(move |kind, before, limit| {
            calls.lock().unwrap().push((kind, before, limit));
            let mut left = left.lock().unwrap();
            let slot = &mut left[Retained::ALL.iter().position(|k| *k == kind).unwrap()];
            let n = (*slot).min(u64::from(limit));
            *slot -= n;
            Ok(n)
        });
        store
    }

    #[tokio::test]
    async fn purges_each_kind_by_its_own_cutoff_in_batches_until_a_short_one() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let purger = Purger::new(
            Arc::new(store([25, 10, 3], calls.clone())),
            policy(90, 0, 30),
            clock_at(now()),
        )
        .in_batches(10, Duration::ZERO);
        let (_stop, stopped) = watch::channel(false);
        let report = purger.purge(&stopped).await.unwrap();
        assert_eq!(
            report,
            PurgeReport {
                forensic_log: 25,
                inbox: 0,
                outbox: 3
            },
            "inbox_days = 0 keeps the inbox for ever"
        );
        let calls = calls.lock().unwrap();
        let ninety = now() - chrono::Duration::days(90);
        let thirty = now() - chrono::Duration::days(30);
        assert_eq!(
            *calls,
            vec![
                (Retained::ForensicLog, ninety, 10),
                (Retained::ForensicLog, ninety, 10),
                (Retained::ForensicLog, ninety, 10),
                (Retained::Outbox, thirty, 10),
            ]
        );
    }

    #[tokio::test]
    async fn stops_between_batches_when_asked() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let purger = Purger::new(
            Arc::new(store([100, 0, 0], calls.clone())),
            policy(1, 1, 1),
            clock_at(now()),
        )
        .in_batches(10, Duration::ZERO);
        let (stop, stopped) = watch::channel(true);
        assert_eq!(purger.purge(&stopped).await.unwrap().total(), 0);
        drop(stop);
        assert!(calls.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_dry_run_counts_what_would_go_and_deletes_nothing() {
        let mut store = MockRetention::new();
        store.expect_purge().never();
        store
            .expect_count_purgeable()
            .returning(|kind, _| Ok(if kind == Retained::Inbox { 7 } else { 2 }));
        let purger = Purger::new(Arc::new(store), policy(90, 90, 0), clock_at(now()));
        assert_eq!(
            purger.count().await.unwrap(),
            PurgeReport {
                forensic_log: 2,
                inbox: 7,
                outbox: 0
            }
        );
    }

    /// The schedule on tokio's paused clock: a pass at once, then one per interval.
    #[tokio::test(start_paused = true)]
    async fn runs_a_pass_at_start_then_every_interval_until_stopped() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let purger = Purger::new(
            Arc::new(store([0, 0, 0], calls.clone())),
            policy(1, 0, 0),
            clock_at(now()),
        );
        let (stop, stopped) = watch::channel(false);
        let job = tokio::spawn(run_retention(purger, Duration::from_secs(600), stopped));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(calls.lock().unwrap().len(), 1, "one pass at start-up");
        tokio::time::sleep(Duration::from_secs(598)).await;
        assert_eq!(calls.lock().unwrap().len(), 1, "nothing before the interval");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(calls.lock().unwrap().len(), 2, "the next pass");
        stop.send(true).unwrap();
        job.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_pass_is_tried_again_next_interval() {
        let attempts = Arc::new(Mutex::new(0));
        let counted = attempts.clone();
        let mut store = MockRetention::new();
        store.expect_purge().returning(move |_, _, _| {
            *counted.lock().unwrap() += 1;
            Err(StoreError::Unavailable("down".into()))
        });
        let purger = Purger::new(Arc::new(store), policy(1, 0, 0), clock_at(now()));
        let (stop, stopped) = watch::channel(false);
        let job = tokio::spawn(run_retention(purger, Duration::from_secs(60), stopped));
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(*attempts.lock().unwrap(), 2);
        stop.send(true).unwrap();
        job.await.unwrap();
    }
}
