//! Group commit for the ingest path: the forensic and inbox rows of webhooks that
//! arrive together are written in one transaction, and each request is answered only
//! after its batch commits, so nothing is acknowledged before it is durable.
//!
//! There is no timer: a writer takes whatever is queued when it becomes free. Under
//! light load every batch holds one delivery (no added latency); under heavy load the
//! queue fills while a commit is in flight and the next batch takes all of it, so the
//! commit cost is shared by many requests. Two writers: one batch gathers and is sent
//! while the other waits for its commit. More writers make smaller batches that each
//! pay a statement's fixed cost (docs/performance.md: with the batch one statement on
//! Postgres, four writers cost more CPU per webhook than two and lengthened the tail).
//!
//! The events a batch accepts go to the worker: handed over in-process when it has
//! room (`crate::processing::handoff`), else left for it to claim, and it is woken.

use crate::processing::handoff::Handoff;
use futures_util::FutureExt;
use payhook_domain::ports::{Admission, ClaimedEvent, StoreError, WebhookInbox};
use payhook_domain::{WebhookEvent, WebhookRequest};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};

/// Deliveries written in one transaction at most.
pub const MAX_BATCH: usize = 128;
/// Transactions in flight at once.
pub const WRITERS: usize = 2;

struct Job {
    delivery: (WebhookRequest, WebhookEvent),
    reply: oneshot::Sender<Result<Admission, StoreError>>,
}

#[derive(Clone)]
pub struct GroupCommit {
    queue: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the writers on the current runtime (the one the store's connections
    /// belong to); they stop once every `GroupCommit` is dropped. Accepted events go
    /// to the worker through `handoff`, or `accepted` wakes it to claim them.
    /// A batch the store has not committed within `store_timeout` is answered as
    /// failed (each request gets 503): a hung database must not hold webhooks.
    pub fn start(
        inbox: Arc<dyn WebhookInbox>,
        handoff: Handoff<ClaimedEvent>,
        accepted: Arc<Notify>,
        store_timeout: Duration,
    ) -> Self {
        let (queue, jobs) = mpsc::channel(MAX_BATCH * WRITERS);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..WRITERS {
            tokio::spawn(write_batches(
                jobs.clone(),
                inbox.clone(),
                handoff.clone(),
                accepted.clone(),
                store_timeout,
            ));
        }
        Self { queue }
    }

    /// Stores one delivery with whatever else is waiting; answers once it is durable.
    pub async fn admit(&self, request: WebhookRequest, event: WebhookEvent) -> Result<Admission, StoreError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            delivery: (request, event),
            reply,
        };
        self.queue
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("the ingest writers have stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("an ingest writer stopped before answering".into()))?
    }
}

async fn write_batches(
    jobs: Arc<Mutex<mpsc::Receiver<Job>>>,
    inbox: Arc<dyn WebhookInbox>,
    handoff: Handoff<ClaimedEvent>,
    accepted: Arc<Notify>,
    store_timeout: Duration,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut queue = jobs.lock().await;
            match queue.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        metrics::histogram!("payhook_ingest_batch_size").record(batch.len() as f64);
        let (deliveries, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|j| (j.delivery, j.reply)).unzip();
        // A delivery that cannot be stored is answered as a failure (its request then
        // gets 503 and is recorded on the slow path); the others still are stored.
        let reservation = handoff.reserve(deliveries.len());
        let lease_until = reservation.as_ref().map(|r| r.lease_until);
        let results = admit_isolating(
            inbox.as_ref(),
            &deliveries,
            lease_until,
            tokio::time::Instant::now() + store_timeout,
        )
        .await;
        let mut new = Vec::new();
        for ((reply, result), (_, event)) in replies.into_iter().zip(results).zip(deliveries) {
            if let Ok(Admission::Accepted(id)) = &result {
                new.push(ClaimedEvent {
                    id: *id,
                    event,
                    attempts: 0,
                });
            }
            let _ = reply.send(result);
        }
        match reservation {
            Some(reservation) => reservation.hand_over(new),
            None if !new.is_empty() => accepted.notify_one(),
            None => {}
        }
    }
}

/// Admits `deliveries` in one transaction; if that fails for a reason other than
/// time, its halves are tried apart, down to single deliveries, so that only a
/// delivery that fails on its own gets an error (one poisoned event must not fail
/// the webhooks that happened to share its batch). Each delivery's answer, in order.
/// Nothing is tried after `deadline`.
fn admit_isolating<'a>(
    inbox: &'a dyn WebhookInbox,
    deliveries: &'a [(WebhookRequest, WebhookEvent)],
    lease_until: Option<chrono::DateTime<chrono::Utc>>,
    deadline: tokio::time::Instant,
) -> futures_util::future::BoxFuture<'a, Vec<Result<Admission, StoreError>>> {
    Box::pin(async move {
        let failed = |e: StoreError| vec![Err(e); deliveries.len()];
        // A panic in the store must not take the writer with it.
        let attempt = tokio::time::timeout_at(
            deadline,
            AssertUnwindSafe(inbox.admit_all(deliveries, lease_until)).catch_unwind(),
        )
        .await;
        let error = match attempt {
            Ok(Ok(Ok(admissions))) if admissions.len() == deliveries.len() => {
                return admissions.into_iter().map(Ok).collect();
            }
            Ok(Ok(Ok(_))) => return failed(StoreError::Corrupt("the store answered for a different batch".into())),
            // Out of time: a hung store would only hang again for each half.
            Err(_) => return failed(StoreError::Unavailable("no answer from the store in time".into())),
            Ok(Ok(Err(e))) => e,
            Ok(Err(_)) => StoreError::Unavailable("panic while storing webhooks".into()),
        };
        if deliveries.len() == 1 || tokio::time::Instant::now() >= deadline {
            return failed(error);
        }
        metrics::counter!("payhook_ingest_batch_splits_total").increment(1);
        let (left, right) = deliveries.split_at(deliveries.len() / 2);
        let mut answers = admit_isolating(inbox, left, lease_until, deadline).await;
        answers.extend(admit_isolating(inbox, right, lease_until, deadline).await);
        answers
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processing::handoff::HandedOver;
    use payhook_domain::ports::MockWebhookInbox;
    use payhook_domain::{EventId, InboxId, PaymentChange, PaymentRef, Provider};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn delivery(id: &str) -> (WebhookRequest, WebhookEvent) {
        let now = chrono::Utc::now();
        let request = WebhookRequest::new(
            "stripe",
            "POST",
            "/webhooks/stripe",
            "",
            Vec::new(),
            Vec::new(),
            None,
            now,
            &payhook_domain::Redaction::default(),
        );
        let event = WebhookEvent {
            mirror: None,
            subscription: None,
            provider: Provider::Stripe,
            event_id: EventId::parse(id).unwrap(),
            event_type: "payment_intent.succeeded".into(),
            occurred_at: now,
            payment: PaymentRef::default(),
            change: PaymentChange::paid(None),
            details: None,
            confirm_with_provider: false,
        };
        (request, event)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_share_transactions_and_each_gets_its_own_answer() {
        let calls = Arc::new(AtomicUsize::new(0));
        let mut inbox = MockWebhookInbox::new();
        let counted = calls.clone();
        inbox.expect_admit_all().returning(move |deliveries, _| {
            counted.fetch_add(1, Ordering::SeqCst);
            // A slow commit, so that deliveries queue up behind it.
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(deliveries
                .iter()
                .map(|(_, e)| Admission::Accepted(InboxId(e.event_id.as_str()[4..].parse().unwrap())))
                .collect())
        });
        let (commit, _worker, _) = start(inbox, 256);
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let commit = commit.clone();
                tokio::spawn(async move {
                    let (request, event) = delivery(&format!("evt_{i}"));
                    (i, commit.admit(request, event).await.unwrap())
                })
            })
            .collect();
        for task in tasks {
            let (i, admission) = task.await.unwrap();
            assert_eq!(
                admission,
                Admission::Accepted(InboxId(i)),
                "each request gets its own answer"
            );
        }
        let transactions = calls.load(Ordering::SeqCst);
        assert!(transactions < 200, "200 deliveries took {transactions} transactions");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_fails_every_delivery_in_it() {
        let mut inbox = MockWebhookInbox::new();
        inbox
            .expect_admit_all()
            .returning(|_, _| Err(StoreError::Unavailable("disk full".into())));
        let (commit, mut worker, _) = start(inbox, 8);
        let (request, event) = delivery("evt_1");
        assert!(matches!(
            commit.admit(request, event).await,
            Err(StoreError::Unavailable(m)) if m == "disk full"
        ));
        assert!(worker.take(10).is_empty(), "nothing is handed over");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_poisoned_delivery_fails_alone_and_its_batch_mates_are_stored() {
        let mut inbox = MockWebhookInbox::new();
        // The store refuses any batch holding a poisoned event, as Postgres refused a
        // NUL: the whole statement fails.
        inbox.expect_admit_all().returning(|deliveries, _| {
            if deliveries.iter().any(|(_, e)| e.event_id.as_str().starts_with("evt_9")) {
                Err(StoreError::Unavailable("invalid byte sequence".into()))
            } else {
                Ok(accept_all(deliveries))
            }
        });
        let (commit, _worker, _) = start(inbox, 1024);
        let ids: Vec<String> = (100..300)
            .map(|i| format!("evt_{i}"))
            .chain((0..10).map(|i| format!("evt_9{i}")))
            .collect();
        let answers = futures_util::future::join_all(ids.iter().map(|id| {
            let (request, event) = delivery(id);
            let commit = commit.clone();
            async move { commit.admit(request, event).await }
        }))
        .await;
        for (id, answer) in ids.iter().zip(&answers) {
            if id.starts_with("evt_9") {
                assert!(answer.is_err(), "{id}: {answer:?}");
            } else {
                assert!(matches!(answer, Ok(Admission::Accepted(_))), "{id}: {answer:?}");
            }
        }
    }

    /// The group commit, the worker's side of its handoff (room for `room` events)
    /// and the worker's wake-up call.
    fn start(inbox: MockWebhookInbox, room: usize) -> (GroupCommit, HandedOver<ClaimedEvent>, Arc<Notify>) {
        let clock = Arc::new(crate::startup::clock::SystemClock);
        let (handoff, worker) = crate::processing::handoff::channel(room, std::time::Duration::from_secs(30), clock);
        let accepted = Arc::new(Notify::new());
        (
            GroupCommit::start(Arc::new(inbox), handoff, accepted.clone(), Duration::from_secs(5)),
            worker,
            accepted,
        )
    }

    fn accept_all(deliveries: &[(WebhookRequest, WebhookEvent)]) -> Vec<Admission> {
        deliveries
            .iter()
            .map(|(_, e)| match e.event_id.as_str() {
                "evt_again" => Admission::Duplicate(InboxId(1)),
                id => Admission::Accepted(InboxId(id[4..].parse().unwrap())),
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn new_events_are_stored_leased_and_handed_to_the_worker_when_it_has_room() {
        let mut inbox = MockWebhookInbox::new();
        inbox
            .expect_admit_all()
            .withf(|_, lease_until| lease_until.is_some())
            .returning(|deliveries, _| Ok(accept_all(deliveries)));
        let (commit, mut worker, accepted) = start(inbox, 8);
        for id in ["evt_7", "evt_again"] {
            let (request, event) = delivery(id);
            commit.admit(request, event).await.unwrap();
        }
        let handed: Vec<_> = worker
            .take(10)
            .into_iter()
            .map(|c| (c.id, c.event.event_id, c.attempts))
            .collect();
        assert_eq!(
            handed,
            [(InboxId(7), EventId::parse("evt_7").unwrap(), 0)],
            "a repeat is not handed over; a new event has had no attempt"
        );
        let woken = tokio::time::timeout(std::time::Duration::from_millis(50), accepted.notified()).await;
        assert!(woken.is_err(), "the worker need not claim what it was handed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_room_new_events_are_stored_unleased_and_the_worker_is_woken_to_claim_them() {
        let mut inbox = MockWebhookInbox::new();
        inbox
            .expect_admit_all()
            .withf(|_, lease_until| lease_until.is_none())
            .returning(|deliveries, _| Ok(accept_all(deliveries)));
        let (commit, mut worker, accepted) = start(inbox, 8);
        worker.close();
        let (request, event) = delivery("evt_3");
        assert_eq!(
            commit.admit(request, event).await.unwrap(),
            Admission::Accepted(InboxId(3))
        );
        tokio::time::timeout(std::time::Duration::from_secs(5), accepted.notified())
            .await
            .expect("the worker is woken to claim it");
    }

    /// An inbox whose database stopped answering (SIGSTOP, a lost connection).
    struct HungInbox;

    #[async_trait::async_trait]
    impl WebhookInbox for HungInbox {
        async fn admit_all(
            &self,
            _: &[(WebhookRequest, WebhookEvent)],
            _: Option<chrono::DateTime<chrono::Utc>>,
        ) -> Result<Vec<Admission>, StoreError> {
            std::future::pending().await
        }
        async fn claim_due(
            &self,
            _: chrono::DateTime<chrono::Utc>,
            _: u32,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<ClaimedEvent>, StoreError> {
            std::future::pending().await
        }
        async fn record_failure(
            &self,
            _: InboxId,
            _: &str,
            _: Option<chrono::DateTime<chrono::Utc>>,
        ) -> Result<(), StoreError> {
            std::future::pending().await
        }
        async fn mark_processed(
            &self,
            _: InboxId,
            _: payhook_domain::ProcessingResult,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<(), StoreError> {
            std::future::pending().await
        }
        async fn release(&self, _: &[InboxId]) -> Result<u64, StoreError> {
            std::future::pending().await
        }
        async fn release_expired_leases(&self, _: chrono::DateTime<chrono::Utc>) -> Result<u64, StoreError> {
            std::future::pending().await
        }
        async fn list(&self, _: &payhook_domain::InboxFilter) -> Result<Vec<payhook_domain::InboxEntry>, StoreError> {
            std::future::pending().await
        }
        async fn replay(
            &self,
            _: InboxId,
            _: chrono::DateTime<chrono::Utc>,
        ) -> Result<payhook_domain::Replay, StoreError> {
            std::future::pending().await
        }
        async fn replay_batch(
            &self,
            _: &payhook_domain::ReplayFilter,
            _: chrono::DateTime<chrono::Utc>,
            _: u32,
        ) -> Result<u64, StoreError> {
            std::future::pending().await
        }
        async fn depth(&self) -> Result<Vec<(payhook_domain::InboxStatus, i64)>, StoreError> {
            std::future::pending().await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_stops_answering_fails_the_batch_within_the_timeout() {
        let clock = Arc::new(crate::startup::clock::SystemClock);
        let (handoff, _worker) = crate::processing::handoff::channel(8, Duration::from_secs(30), clock);
        let commit = GroupCommit::start(
            Arc::new(HungInbox),
            handoff,
            Arc::new(Notify::new()),
            Duration::from_millis(50),
        );
        let (request, event) = delivery("evt_hung");
        let answer = tokio::time::timeout(Duration::from_secs(10), commit.admit(request, event))
            .await
            .expect("answered, not held");
        assert!(matches!(answer, Err(StoreError::Unavailable(_))), "{answer:?}");
    }
}
