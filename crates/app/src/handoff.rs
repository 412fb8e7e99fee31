//! The in-process handoff from the ingest path to the worker. While the worker has
//! room, the events a batch accepts are stored already leased to it (as a claim would
//! leave them) and passed over a channel once committed, so the worker does not claim
//! them back from the store. Under load those claims were the database's largest
//! single cost: an UPDATE of every inbox row and its payload read back
//! (docs/performance.md).
//!
//! Nothing can be lost this way: an event is handed over only after it is durable, and
//! if the process stops before the worker finishes it, its lease runs out and any
//! worker claims it. When the worker is behind, events are stored unleased and claimed
//! as before.

use chrono::{DateTime, Utc};
use payhook_domain::ports::{ClaimedEvent, Clock};
use payhook_domain::{InboxId, WebhookEvent};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// An event handed over, with the end of the lease it was stored with.
struct Leased {
    event: ClaimedEvent,
    lease_until: DateTime<Utc>,
}

/// A channel holding at most `capacity` events for the worker, whose leases last `lease`.
pub fn channel(capacity: usize, lease: Duration, clock: Arc<dyn Clock>) -> (Handoff, HandedOver) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let handoff = Handoff {
        sender,
        lease: chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX),
        clock: clock.clone(),
    };
    let handed_over = HandedOver {
        receiver,
        waiting: Vec::new(),
        // An event normally waits here for milliseconds. One that waited more than a
        // quarter of its lease (the worker is stuck on slow provider calls) might not
        // be finished within it, so it is left to be claimed once the lease runs out,
        // rather than risk two workers applying it at once.
        least_left: chrono::Duration::from_std(lease * 3 / 4).unwrap_or(chrono::Duration::MAX),
        clock,
    };
    (handoff, handed_over)
}

/// The ingest side: reserves room for a batch before it is stored.
#[derive(Clone)]
pub struct Handoff {
    sender: mpsc::Sender<Leased>,
    lease: chrono::Duration,
    clock: Arc<dyn Clock>,
}

impl Handoff {
    /// Room for `count` events and the lease to store them with; `None` when the worker
    /// is behind (or stopped): the batch is then stored unleased, to be claimed.
    pub fn reserve(&self, count: usize) -> Option<Reservation<'_>> {
        let permits = self.sender.try_reserve_many(count).ok()?;
        Some(Reservation {
            permits,
            lease_until: self.clock.now() + self.lease,
        })
    }
}

/// Room in the channel for one batch, released if unused.
pub struct Reservation<'a> {
    permits: mpsc::PermitIterator<'a, Leased>,
    pub lease_until: DateTime<Utc>,
}

impl Reservation<'_> {
    /// Hands the batch's newly stored events to the worker (after the commit).
    pub fn hand_over(self, accepted: impl IntoIterator<Item = (InboxId, WebhookEvent)>) {
        let lease_until = self.lease_until;
        for (permit, (id, event)) in self.permits.zip(accepted) {
            permit.send(Leased {
                event: ClaimedEvent { id, event, attempts: 0 },
                lease_until,
            });
        }
    }
}

/// The worker's side.
pub struct HandedOver {
    receiver: mpsc::Receiver<Leased>,
    /// Received while waiting, not yet taken.
    waiting: Vec<Leased>,
    least_left: chrono::Duration,
    clock: Arc<dyn Clock>,
}

impl HandedOver {
    /// Waits until at least one event is there (cancel-safe, for `select!`).
    pub async fn arrived(&mut self) {
        if self.waiting.is_empty() {
            self.receiver.recv_many(&mut self.waiting, 1).await;
        }
    }

    /// Up to `limit` events, without waiting. One whose lease may run out before the
    /// worker is done is dropped: once its lease expires it is claimed like any other.
    pub fn take(&mut self, limit: usize) -> Vec<ClaimedEvent> {
        while self.waiting.len() < limit {
            match self.receiver.try_recv() {
                Ok(leased) => self.waiting.push(leased),
                Err(_) => break,
            }
        }
        let count = limit.min(self.waiting.len());
        let deadline = self.clock.now() + self.least_left;
        let (events, late): (Vec<_>, Vec<_>) = self.waiting.drain(..count).partition(|l| l.lease_until >= deadline);
        if !late.is_empty() {
            tracing::warn!(
                events = late.len(),
                "handed-over events waited too long; left to a claim once their lease ends"
            );
        }
        events.into_iter().map(|leased| leased.event).collect()
    }

    /// Stops the handoff (new batches are stored unleased) and gives back the ids of
    /// the events still waiting, to release their leases.
    pub fn close(&mut self) -> Vec<InboxId> {
        self.receiver.close();
        let mut ids: Vec<InboxId> = self.waiting.drain(..).map(|l| l.event.id).collect();
        while let Ok(leased) = self.receiver.try_recv() {
            ids.push(leased.event.id);
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use payhook_domain::ports::MockClock;
    use payhook_domain::{EventId, PaymentChange, PaymentRef, Provider};
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

    #[tokio::test]
    async fn events_handed_over_reach_the_worker_with_their_ids_and_no_attempts() {
        let now = Arc::new(Mutex::new(at(0)));
        let (handoff, mut worker) = channel(8, Duration::from_secs(60), clock(now));
        let reservation = handoff.reserve(2).expect("room for two");
        assert_eq!(reservation.lease_until, at(60), "leased for the worker's lease");
        reservation.hand_over([(InboxId(7), event("evt_a")), (InboxId(9), event("evt_b"))]);
        worker.arrived().await;
        let taken = worker.take(10);
        assert_eq!(taken.iter().map(|c| c.id).collect::<Vec<_>>(), [InboxId(7), InboxId(9)]);
        assert_eq!(taken[1].event.event_id.as_str(), "evt_b");
        assert!(taken.iter().all(|c| c.attempts == 0));
        assert!(worker.take(10).is_empty());
    }

    #[tokio::test]
    async fn a_full_channel_refuses_a_batch_so_it_is_stored_unleased() {
        let now = Arc::new(Mutex::new(at(0)));
        let (handoff, mut worker) = channel(3, Duration::from_secs(60), clock(now));
        let first = handoff.reserve(2).expect("room for two");
        assert!(handoff.reserve(2).is_none(), "only one place left");
        // Places not used (a repeat is not handed over) are given back.
        first.hand_over([(InboxId(1), event("evt_a"))]);
        assert!(handoff.reserve(2).is_some());
        assert_eq!(worker.take(1).len(), 1, "take stops at its limit");
        assert!(worker.close().is_empty());
        assert!(handoff.reserve(1).is_none(), "a stopped worker takes nothing more");
    }

    #[tokio::test]
    async fn an_event_that_waited_past_a_quarter_of_its_lease_is_left_to_a_claim() {
        let now = Arc::new(Mutex::new(at(0)));
        let (handoff, mut worker) = channel(8, Duration::from_secs(60), clock(now.clone()));
        handoff.reserve(1).unwrap().hand_over([(InboxId(1), event("evt_old"))]);
        *now.lock().unwrap() = at(14);
        handoff.reserve(1).unwrap().hand_over([(InboxId(2), event("evt_new"))]);
        *now.lock().unwrap() = at(16);
        let taken = worker.take(10);
        assert_eq!(taken.iter().map(|c| c.id).collect::<Vec<_>>(), [InboxId(2)]);
    }

    #[tokio::test]
    async fn closing_gives_back_the_events_still_waiting() {
        let now = Arc::new(Mutex::new(at(0)));
        let (handoff, mut worker) = channel(8, Duration::from_secs(60), clock(now));
        handoff
            .reserve(2)
            .unwrap()
            .hand_over([(InboxId(3), event("evt_a")), (InboxId(4), event("evt_b"))]);
        worker.arrived().await;
        assert_eq!(worker.close(), [InboxId(3), InboxId(4)]);
    }
}
