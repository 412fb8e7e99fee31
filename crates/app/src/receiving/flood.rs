//! Floods of webhook requests that fail authentication. Anyone can send those, and
//! each would cost a forensic row; past `limits.rejected_per_ip_per_minute` from one
//! address they are refused with 429 and only counted, and the count is written as
//! one summary row per address and minute. Authenticated requests never touch the
//! limit, so a provider is never refused however much an attacker sends beside it.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use payhook_domain::ports::{Clock, ForensicLog};
use payhook_domain::{Outcome, ProcessingResult, WebhookRequest};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many addresses' counts one minute may hold; beyond, the rest are counted
/// together under 0.0.0.0 (an attack from that many addresses is one event).
const MAX_ADDRESSES: usize = 100_000;
/// How often finished minutes are written.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Refusals of one address in one minute, and what the summary row says of them.
struct Refusals {
    count: u64,
    provider: String,
    path: String,
}

pub struct RejectionLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Keyed by address and the minute (UTC, truncated) the refusals fell in.
    refused: Mutex<HashMap<(IpAddr, DateTime<Utc>), Refusals>>,
    clock: Arc<dyn Clock>,
}

impl RejectionLimit {
    pub fn new(per_minute: NonZeroU32, clock: Arc<dyn Clock>) -> Self {
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(per_minute)),
            refused: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// `Ok` if `address` may have one more unauthenticated request recorded; else
    /// the wait before it may, after counting this one as refused.
    pub fn admit(&self, address: Option<IpAddr>, request: &WebhookRequest) -> Result<(), Duration> {
        let address = address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let Err(not_until) = self.limiter.check_key(&address) else {
            return Ok(());
        };
        let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
        let minute = minute_of(self.clock.now());
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let key = if refused.len() >= MAX_ADDRESSES && !refused.contains_key(&(address, minute)) {
            (IpAddr::V4(Ipv4Addr::UNSPECIFIED), minute)
        } else {
            (address, minute)
        };
        refused
            .entry(key)
            .or_insert_with(|| Refusals {
                count: 0,
                provider: request.provider.clone(),
                path: request.path.clone(),
            })
            .count += 1;
        Err(wait.max(Duration::from_secs(1)))
    }

    /// The summary rows of the minutes that ended before `now` (all of them when
    /// `all`, at shutdown), removed from memory.
    pub fn take_summaries(&self, now: DateTime<Utc>, all: bool) -> Vec<(WebhookRequest, Outcome)> {
        let current = minute_of(now);
        let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let finished: Vec<_> = refused
            .keys()
            .filter(|(_, minute)| all || *minute < current)
            .copied()
            .collect();
        let mut rows = Vec::with_capacity(finished.len());
        for key in finished {
            if let Some(refusals) = refused.remove(&key) {
                rows.push(summary(key.0, key.1, refusals));
            }
        }
        rows
    }

    /// Forgets the limiter state of addresses that have been quiet (bounds memory).
    fn forget_quiet_addresses(&self) {
        self.limiter.retain_recent();
    }
}

fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

fn summary(address: IpAddr, minute: DateTime<Utc>, refusals: Refusals) -> (WebhookRequest, Outcome) {
    let mut request = WebhookRequest::new(
        &refusals.provider,
        "POST",
        &refusals.path,
        "",
        Vec::new(),
        Vec::new(),
        Some(address.to_string()),
        minute,
        &payhook_domain::Redaction::default(),
    );
    request.refused_count = Some(refusals.count);
    let outcome = Outcome {
        http_status: 429,
        result: ProcessingResult::RateLimited,
        error: Some(format!(
            "{} requests from {address} failing authentication were refused in the minute from {} \
             (over limits.rejected_per_ip_per_minute); none of them was stored",
            refusals.count,
            minute.format("%Y-%m-%d %H:%M UTC"),
        )),
    };
    (request, outcome)
}

/// Writes the summaries of finished minutes every [`FLUSH_EVERY`], and of every
/// minute when `stopped` turns true.
pub async fn write_summaries(
    limit: Arc<RejectionLimit>,
    forensic: Arc<dyn ForensicLog>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(FLUSH_EVERY) => false,
            _ = stopped.changed() => true,
        };
        let now = limit.clock.now();
        for (request, outcome) in limit.take_summaries(now, stopping) {
            if let Err(error) = forensic.record(&request, &outcome).await {
                tracing::error!(%error, count = request.refused_count, "could not write a rate-limit summary row");
            }
        }
        limit.forget_quiet_addresses();
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    struct FixedClock(Mutex<DateTime<Utc>>);

    impl Clock for FixedClock {
        fn now(&self) -> DateTime<Utc> {
            *self.0.lock().unwrap()
        }
    }

    fn request() -> WebhookRequest {
        WebhookRequest::new(
            "stripe",
            "POST",
            "/webhooks/stripe",
            "",
            Vec::new(),
            Vec::new(),
            None,
            Utc::now(),
            &payhook_domain::Redaction::default(),
        )
    }

    #[test]
    fn refusals_are_counted_per_address_and_minute_and_summed_up_once_the_minute_ends() {
        let start = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 30).unwrap();
        let clock = Arc::new(FixedClock(Mutex::new(start)));
        let limit = RejectionLimit::new(NonZeroU32::new(2).unwrap(), clock.clone());
        let (a, b): (IpAddr, IpAddr) = ("203.0.113.7".parse().unwrap(), "198.51.100.9".parse().unwrap());
        let outcomes: Vec<bool> = (0..5).map(|_| limit.admit(Some(a), &request()).is_ok()).collect();
        assert_eq!(outcomes, [true, true, false, false, false]);
        assert!(
            limit.admit(Some(b), &request()).is_ok(),
            "another address has its own allowance"
        );

        assert!(limit.take_summaries(start, false).is_empty(), "the minute is not over");
        *clock.0.lock().unwrap() = start + TimeDelta::seconds(40);
        let rows = limit.take_summaries(start + TimeDelta::seconds(40), false);
        assert_eq!(rows.len(), 1);
        let (row, outcome) = &rows[0];
        assert_eq!(row.refused_count, Some(3));
        assert_eq!(row.remote_addr.as_deref(), Some("203.0.113.7"));
        assert_eq!(row.received_at, Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 0).unwrap());
        assert_eq!(
            (outcome.http_status, outcome.result),
            (429, ProcessingResult::RateLimited)
        );
        assert!(
            limit.take_summaries(start + TimeDelta::minutes(5), true).is_empty(),
            "written once"
        );
    }

    #[test]
    fn at_shutdown_the_current_minute_is_written_too() {
        let now = Utc.with_ymd_and_hms(2026, 12, 5, 10, 0, 30).unwrap();
        let limit = RejectionLimit::new(NonZeroU32::new(1).unwrap(), Arc::new(FixedClock(Mutex::new(now))));
        let a: IpAddr = "203.0.113.7".parse().unwrap();
        assert!(limit.admit(Some(a), &request()).is_ok());
        let wait = limit.admit(Some(a), &request()).unwrap_err();
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert_eq!(limit.take_summaries(now, true).len(), 1);
    }
}
