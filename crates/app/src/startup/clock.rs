//! The wall clock behind the domain's `Clock` port.

use chrono::{DateTime, Utc};
use payhook_domain::ports::Clock;

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
