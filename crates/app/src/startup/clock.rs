//! The wall clock behind the domain's `Clock` port.

use chrono::{DateTime, Utc};
use payhook_domain::ports::Clock;
use std::sync::atomic::{AtomicI64, Ordering};

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The wall clock plus an offset that only moves forward: what `POST /admin/clock`
/// moves when `admin.time_travel` is on, so a demo or a test over HTTP can watch a
/// month of renewals in seconds. Without it the offset stays 0.
#[derive(Default)]
pub struct AdjustableClock {
    offset_secs: AtomicI64,
}

impl AdjustableClock {
    /// Moves the clock `secs` forward; answers the new time.
    pub fn advance(&self, secs: i64) -> DateTime<Utc> {
        self.offset_secs.fetch_add(secs.max(0), Ordering::SeqCst);
        self.now()
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = chrono::Duration::seconds(self.offset_secs.load(Ordering::SeqCst));
        Utc::now().checked_add_signed(offset).unwrap_or_else(Utc::now)
    }
}
