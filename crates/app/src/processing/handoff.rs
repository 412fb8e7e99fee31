//! In-process handoffs of work already durable in the store, leased to its taker:
//! from the ingest path to the worker (inbox events), and from the worker to the
//! outbox relay (domain events). While the taker has room, the rows are stored
//! already leased to it (as a claim would leave them) and passed over a channel once
//! committed, so it does not claim them back from the store. Under load those claims
//! were the database's largest single costs: an UPDATE of every row and its payload
//! read back (docs/performance.md).
//!
//! Nothing can be lost this way: an item is handed over only after it is durable, and
//! if the process stops before the taker finishes it, its lease runs out and any
//! instance claims it. When the taker is behind, rows are stored unleased and claimed
//! as before.

use chrono::{DateTime, Utc};
use payhook_domain::ports::Clock;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// An item handed over, with the end of the lease it was stored with.
struct Leased<T> {
    item: T,
    lease_until: DateTime<Utc>,
}

/// A channel holding at most `capacity` items for their taker, whose leases last `lease`.
pub fn channel<T>(capacity: usize, lease: Duration, clock: Arc<dyn Clock>) -> (Handoff<T>, HandedOver<T>) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let handoff = Handoff {
        sender,
        lease: chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX),
        clock: clock.clone(),
    };
    let handed_over = HandedOver {
        receiver,
        waiting: Vec::new(),
        // An item normally waits here for milliseconds. One that waited more than a
        // quarter of its lease (the taker is stuck on slow provider or subscriber
        // calls) might not be finished within it, so it is left to be claimed once the
        // lease runs out, rather than risk two instances taking it at once.
        least_left: chrono::Duration::from_std(lease * 3 / 4).unwrap_or(chrono::Duration::MAX),
        clock,
    };
    (handoff, handed_over)
}

/// The giving side: reserves room for a batch before it is stored.
pub struct Handoff<T> {
    sender: mpsc::Sender<Leased<T>>,
    lease: chrono::Duration,
    clock: Arc<dyn Clock>,
}

// Not derived: that would require `T: Clone`, and only the sender is cloned.
impl<T> Clone for Handoff<T> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
            lease: self.lease,
            clock: self.clock.clone(),
        }
    }
}

impl<T> Handoff<T> {
    /// Room for `count` items and the lease to store them with; `None` when the taker
    /// is behind (or stopped): the batch is then stored unleased, to be claimed.
    pub fn reserve(&self, count: usize) -> Option<Reservation<'_, T>> {
        let permits = self.sender.try_reserve_many(count).ok()?;
        Some(Reservation {
            permits,
            lease_until: self.clock.now() + self.lease,
        })
    }
}

/// Room in the channel for one batch, released if unused.
pub struct Reservation<'a, T> {
    permits: mpsc::PermitIterator<'a, Leased<T>>,
    pub lease_until: DateTime<Utc>,
}

impl<T> Reservation<'_, T> {
    /// Hands the batch's newly stored items to the taker (after the commit).
    pub fn hand_over(self, items: impl IntoIterator<Item = T>) {
        let lease_until = self.lease_until;
        for (permit, item) in self.permits.zip(items) {
            permit.send(Leased { item, lease_until });
        }
    }
}

/// The taker's side.
pub struct HandedOver<T> {
    receiver: mpsc::Receiver<Leased<T>>,
    /// Received while waiting, not yet taken.
    waiting: Vec<Leased<T>>,
    least_left: chrono::Duration,
    clock: Arc<dyn Clock>,
}

impl<T> HandedOver<T> {
    /// Waits until at least one item is there (cancel-safe, for `select!`).
    pub async fn arrived(&mut self) {
        if self.waiting.is_empty() {
            self.receiver.recv_many(&mut self.waiting, 1).await;
        }
    }

    /// Up to `limit` items, without waiting. One whose lease may run out before the
    /// taker is done is dropped: once its lease expires it is claimed like any other.
    pub fn take(&mut self, limit: usize) -> Vec<T> {
        while self.waiting.len() < limit {
            match self.receiver.try_recv() {
                Ok(leased) => self.waiting.push(leased),
                Err(_) => break,
            }
        }
        let count = limit.min(self.waiting.len());
        let deadline = self.clock.now() + self.least_left;
        let (items, late): (Vec<_>, Vec<_>) = self.waiting.drain(..count).partition(|l| l.lease_until >= deadline);
        if !late.is_empty() {
            tracing::warn!(
                items = late.len(),
                "handed-over work waited too long; left to a claim once its lease ends"
            );
        }
        items.into_iter().map(|leased| leased.item).collect()
    }

    /// Stops the handoff (new batches are stored unleased) and gives back the items
    /// still waiting, for the taker to finish or release.
    pub fn close(&mut self) -> Vec<T> {
        self.receiver.close();
        let mut items: Vec<T> = self.waiting.drain(..).map(|l| l.item).collect();
        while let Ok(leased) = self.receiver.try_recv() {
            items.push(leased.item);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use payhook_domain::ports::ClaimedEvent;
    use payhook_domain::ports::MockClock;
    use payhook_domain::{EventId, InboxId, PaymentChange, PaymentRef, Provider, WebhookEvent};
    use std::sync::Mutex;

    fn at(seconds: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + seconds, 0).single().unwrap()
    }

    /// A clock the test moves by hand.
    fn clock(now: Arc<Mutex<DateTime<Utc>>>) -> Arc<dyn Clock> {
        let mut clock = MockClock::new();
        clock.expect_now().returning(move || *now.lock().unwrap());
        Arc::new(clock)
    }

    fn event(id: &str) -> WebhookEvent {
        WebhookEvent {
            mirror: None,
            subscription: None,
            provider: Provider::Stripe,
            event_id: EventId::parse(id).unwrap(),
            event_type: "payment_intent.succeeded".into(),
            occurred_at: at(0),
            payment: PaymentRef::default(),
            change: PaymentChange::paid(None),
            details: None,
            confirm_with_provider: false,
        }
    }

    fn claimed(id: i64, event_id: &str) -> ClaimedEvent {
        ClaimedEvent {
            id: InboxId(id),
            event: event(event_id),
            attempts: 0,
        }
    }

    #[tokio::test]
    async fn items_handed_over_reach_the_taker_in_order() {
        let now = Arc::new(Mutex::new(at(0)));
        let (handoff, mut worker) = channel(8, Duration::from_secs(60), clock(now));
        let reservation = handoff.reserve(2).expect("room for two");
        assert_eq!(reservation.lease_until, at(60), "leased for the worker's lease");
        reservation.hand_over([claimed(7, "evt_a"), claimed(9, "evt_b")]);
        worker.arrived().await;
        let taken = worker.take(10);
        assert_eq!(taken.iter().map(|c| c.id).collect::<Vec<_>>(), [InboxId(7), InboxId(9)]);
        assert_eq!(taken[1].event.event_id.as_str(), "evt_b");
        assert!(worker.take(10).is_empty());
    }

    #[tokio::test]
    async fn a_full_channel_refuses_a_batch_so_it_is_stored_unleased() {
        let now = Arc::new(Mutex::new(at(0)));
        let (handoff, mut worker) = channel(3, Duration::from_secs(60), clock(now));
        let first = handoff.reserve(2).expect("room for two");
        assert!(handoff.reserve(2).is_none(), "only one place left");
        // Places not used (a repeat is not handed over) are given back.
        first.hand_over([claimed(1, "evt_a")]);
        assert!(handoff.reserve(2).is_some());
        assert_eq!(worker.take(1).len(), 1, "take stops at its limit");
        assert!(worker.close().is_empty());
        assert!(handoff.reserve(1).is_none(), "a stopped worker takes nothing more");
    }

    #[tokio::test]
    async fn an_event_that_waited_past_a_quarter_of_its_lease_is_left_to_a_claim() {
        let now = Arc::new(Mutex::new(at(0)));
        let (handoff, mut worker) = channel(8, Duration::from_secs(60), clock(now.clone()));
        handoff.reserve(1).unwrap().hand_over([claimed(1, "evt_old")]);
        *now.lock().unwrap() = at(14);
        handoff.reserve(1).unwrap().hand_over([claimed(2, "evt_new")]);
        *now.lock().unwrap() = at(16);
        let taken = worker.take(10);
        assert_eq!(taken.iter().map(|c| c.id).collect::<Vec<_>>(), [InboxId(2)]);
    }

    #[tokio::test]
    async fn closing_gives_back_the_items_still_waiting() {
        let now = Arc::new(Mutex::new(at(0)));
        let (handoff, mut worker) = channel(8, Duration::from_secs(60), clock(now));
        handoff
            .reserve(2)
            .unwrap()
            .hand_over([claimed(3, "evt_a"), claimed(4, "evt_b")]);
        worker.arrived().await;
        let waiting: Vec<InboxId> = worker.close().into_iter().map(|c| c.id).collect();
        assert_eq!(waiting, [InboxId(3), InboxId(4)]);
    }
}
