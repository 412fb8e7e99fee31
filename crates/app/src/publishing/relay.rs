//! The outbox relay: delivers committed domain events to every subscriber at least
//! once. The worker hands it the events of its batch commits in-process (stored
//! leased to it, see `crate::processing::handoff`); it claims from the store the others, when a
//! commit wakes it, and in a periodic sweep that also picks up messages a crashed
//! relay leased and never marked.

use crate::processing::handoff::HandedOver;
use crate::processing::worker::{jitter, RetryPolicy};
use futures_util::FutureExt;
use payhook_domain::ports::{Clock, EventPublisher, Outbox, StoreError};
use payhook_domain::OutboxMessage;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

pub struct OutboxRelay {
    outbox: Arc<dyn Outbox>,
    subscribers: Vec<Arc<dyn EventPublisher>>,
    clock: Arc<dyn Clock>,
    /// Only the backoff is used: a domain event is never given up on.
    backoff: RetryPolicy,
    batch_size: u32,
    lease: Duration,
    /// Which subscribers already took each message still being retried, so a retry
    /// goes only to those that failed: a status stream is not fed a change twice
    /// because the merchant's endpoint was down. In memory: after a restart a
    /// retried message may reach a subscriber again (delivery is at least once).
    taken: Mutex<HashMap<i64, Vec<bool>>>,
}

impl OutboxRelay {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        subscribers: Vec<Arc<dyn EventPublisher>>,
        clock: Arc<dyn Clock>,
        backoff: RetryPolicy,
        batch_size: u32,
        lease: Duration,
    ) -> Self {
        Self {
            outbox,
            subscribers,
            clock,
            backoff,
            batch_size,
            lease,
            taken: Mutex::new(HashMap::new()),
        }
    }

    /// Claims one batch of due messages and delivers it; returns how many were claimed.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        let messages = self.outbox.claim_unpublished(now, self.batch_size, lease_until).await?;
        if messages.is_empty() {
            return Ok(0);
        }
        self.deliver(&messages).await?;
        Ok(messages.len())
    }

    /// Delivers messages this relay holds the lease of (claimed, or handed over by the
    /// worker), in the order given. Every subscriber gets the batch; a message that any
    /// of them failed to take is given to all again later (they are idempotent), with
    /// backoff.
    pub async fn deliver(&self, messages: &[OutboxMessage]) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut failures = vec![Vec::new(); messages.len()];
        let taken_before: Vec<Option<Vec<bool>>> = {
            let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            messages.iter().map(|m| taken.get(&m.id).cloned()).collect()
        };
        let mut taken_now: Vec<Vec<bool>> = vec![vec![false; self.subscribers.len()]; messages.len()];
        for (k, subscriber) in self.subscribers.iter().enumerate() {
            // Only the messages this subscriber has not taken yet.
            let owed: Vec<usize> = (0..messages.len())
                .filter(|&i| {
                    !taken_before[i]
                        .as_ref()
                        .is_some_and(|t| t.get(k).copied().unwrap_or(false))
                })
                .collect();
            for i in (0..messages.len()).filter(|i| !owed.contains(i)) {
                taken_now[i][k] = true;
            }
            if owed.is_empty() {
                continue;
            }
            let batch: Vec<OutboxMessage> = owed.iter().map(|&i| messages[i].clone()).collect();
            let results = subscriber.publish_all(&batch).await;
            for (n, &i) in owed.iter().enumerate() {
                match results.get(n) {
                    Some(Ok(())) => taken_now[i][k] = true,
                    Some(Err(e)) => failures[i].push(e.to_string()),
                    None => failures[i].push("a subscriber gave no answer for this message".to_owned()),
                }
            }
        }
        let mut delivered = Vec::with_capacity(messages.len());
        for (index, (message, failed)) in messages.iter().zip(failures).enumerate() {
            if failed.is_empty() {
                let field = |name: &str| {
                    message
                        .payload
                        .get(name)
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or("")
                };
                tracing::info!(
                    outbox_id = message.id,
                    topic = %message.topic,
                    provider = field("provider"),
                    event_id = field("event_id"),
                    payment_id = field("payment_id"),
                    "domain event published"
                );
                delivered.push(message.id);
                continue;
            }
            let error = failed.join("; ");
            let attempts = message.attempts + 1;
            let retry_at = self.backoff.next_attempt(attempts, self.clock.now(), jitter());
            {
                let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
                if retry_at.is_some() {
                    tracing::warn!(outbox_id = message.id, topic = %message.topic, %error, attempts, "domain event not delivered; will retry");
                } else {
                    tracing::error!(outbox_id = message.id, topic = %message.topic, %error, attempts, "domain event not delivered after notify.max_attempts: dead");
                    metrics::counter!("payhook_outbox_dead_total").increment(1);
                }
                // Kept for a dead message too, for when an operator replays it.
                taken.insert(message.id, taken_now[index].clone());
            }
            self.outbox.record_publish_failure(message.id, &error, retry_at).await?;
        }
        {
            let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            for id in &delivered {
                taken.remove(id);
            }
        }
        // One statement for the batch; a crash before it only means a redelivery.
        self.outbox.mark_published(&delivered, self.clock.now()).await
    }
}

/// Runs the relay until `shutdown`. Messages the worker hands over are delivered as
/// they come; the store is claimed when a commit wrote messages it did not hand over
/// (even while handed-over messages keep the relay busy, and first, since those were
/// committed earlier), after an idle `sweep_interval`, and at least once per
/// `sweep_interval` (retries and expired leases are due there). Messages still waiting
/// in the handoff are delivered before stopping.
pub async fn run_relay(
    relay: Arc<OutboxRelay>,
    sweep_interval: Duration,
    published: Arc<Notify>,
    mut handed_over: HandedOver<OutboxMessage>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut claim = true;
    let mut last_claim = Instant::now();
    loop {
        if *shutdown.borrow() {
            break;
        }
        // A wake-up that came while busy is kept by `Notify` until taken here.
        claim |= published.notified().now_or_never().is_some();
        if claim || last_claim.elapsed() >= sweep_interval {
            last_claim = Instant::now();
            claim = match relay.run_once().await {
                Ok(n) => n as u32 >= relay.batch_size, // more may be due right now
                Err(e) => {
                    tracing::error!(error = %e, "outbox relay could not claim messages");
                    false
                }
            };
        }
        let handed = handed_over.take(relay.batch_size as usize);
        let busy = !handed.is_empty();
        if busy {
            deliver_handed_over(&relay, &handed).await;
        }
        if busy || claim {
            continue;
        }
        claim = tokio::select! {
            _ = handed_over.arrived() => false,
            _ = published.notified() => true,
            _ = tokio::time::sleep(sweep_interval) => true,
            _ = shutdown.changed() => false,
        };
    }
    deliver_handed_over(&relay, &handed_over.close()).await;
    tracing::info!("outbox relay stopped");
}

async fn deliver_handed_over(relay: &OutboxRelay, messages: &[OutboxMessage]) {
    if let Err(e) = relay.deliver(messages).await {
        // Still leased to this relay: delivered again once the lease ends.
        tracing::error!(error = %e, messages = messages.len(), "outbox relay could not record a delivery");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use payhook_domain::ports::{MockClock, MockEventPublisher, MockOutbox};
    use payhook_domain::{OutboxMessage, PublishError};

    fn now() -> chrono::DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).single().unwrap()
    }

    fn message(id: i64) -> OutboxMessage {
        OutboxMessage {
            id,
            topic: "payment.paid".into(),
            payload: serde_json::json!({}),
            created_at: now(),
            attempts: 2,
        }
    }

    /// A clock that always says `now()`.
    fn clock() -> Arc<dyn Clock> {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        Arc::new(clock)
    }

    fn relay(outbox: MockOutbox, subscribers: Vec<Arc<dyn EventPublisher>>) -> OutboxRelay {
        relay_giving_up_after(i32::MAX, outbox, subscribers)
    }

    fn relay_giving_up_after(
        max_attempts: i32,
        outbox: MockOutbox,
        subscribers: Vec<Arc<dyn EventPublisher>>,
    ) -> OutboxRelay {
        let backoff = RetryPolicy {
            max_attempts,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        };
        OutboxRelay::new(
            Arc::new(outbox),
            subscribers,
            clock(),
            backoff,
            10,
            Duration::from_secs(30),
        )
    }

    /// A subscriber that takes every message, or fails those whose id is in `failing`.
    fn subscriber(failing: &'static [i64]) -> Arc<dyn EventPublisher> {
        let mut s = MockEventPublisher::new();
        s.expect_publish_all().returning(move |messages| {
            messages
                .iter()
                .map(|m| {
                    if failing.contains(&m.id) {
                        Err(PublishError {
                            subscriber: "test".into(),
                            reason: "down".into(),
                        })
                    } else {
                        Ok(())
                    }
                })
                .collect()
        });
        Arc::new(s)
    }

    #[tokio::test]
    async fn after_the_last_attempt_a_message_is_dead() {
        let mut outbox = MockOutbox::new();
        outbox
            .expect_mark_published()
            .withf(|ids, _| ids.is_empty())
            .returning(|_, _| Ok(()));
        outbox
            .expect_record_publish_failure()
            .withf(|id, _, at| *id == 7 && at.is_none())
            .times(1)
            .returning(|_, _, _| Ok(()));
        // message(7) has failed twice; with three attempts allowed this was the last.
        relay_giving_up_after(3, outbox, vec![subscriber(&[7])])
            .deliver(&[message(7)])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_retry_goes_only_to_the_subscribers_that_failed() {
        let mut outbox = MockOutbox::new();
        outbox.expect_mark_published().returning(|_, _| Ok(()));
        outbox.expect_record_publish_failure().returning(|_, _, _| Ok(()));
        // The in-process bus takes the message once and only once.
        let mut bus = MockEventPublisher::new();
        bus.expect_publish_all()
            .times(1)
            .returning(|messages| messages.iter().map(|_| Ok(())).collect());
        // The merchant's endpoint fails, then takes it.
        let mut endpoint = MockEventPublisher::new();
        let mut calls = 0;
        endpoint.expect_publish_all().times(2).returning(move |messages| {
            calls += 1;
            messages
                .iter()
                .map(|_| {
                    if calls == 1 {
                        Err(PublishError {
                            subscriber: "endpoint".into(),
                            reason: "down".into(),
                        })
                    } else {
                        Ok(())
                    }
                })
                .collect()
        });
        let relay = relay(outbox, vec![Arc::new(bus), Arc::new(endpoint)]);
        relay.deliver(&[message(7)]).await.unwrap();
        relay.deliver(&[message(7)]).await.unwrap();
        assert!(relay.taken.lock().unwrap().is_empty(), "forgotten once delivered");
    }

    #[tokio::test]
    async fn delivered_messages_are_marked_published() {
        let mut outbox = MockOutbox::new();
        outbox
            .expect_claim_unpublished()
            .returning(|_, _, _| Ok(vec![message(1), message(2)]));
        outbox
            .expect_mark_published()
            .withf(|ids, at| ids == [1, 2] && *at == now())
            .times(1)
            .returning(|_, _| Ok(()));
        assert_eq!(
            relay(outbox, vec![subscriber(&[]), subscriber(&[])])
                .run_once()
                .await
                .unwrap(),
            2
        );
    }

    #[tokio::test]
    async fn one_failing_subscriber_reschedules_the_message_with_backoff() {
        let mut outbox = MockOutbox::new();
        outbox
            .expect_claim_unpublished()
            .returning(|_, _, _| Ok(vec![message(7)]));
        outbox
            .expect_mark_published()
            .withf(|ids, _| ids.is_empty())
            .returning(|_, _| Ok(()));
        outbox
            .expect_record_publish_failure()
            .withf(|id, error, at| {
                // attempts 2 -> the third try waits base · 2^2 = 4 s, ±20 %
                *id == 7
                    && error.contains("down")
                    && at.is_some_and(|at| at >= now() + chrono::Duration::milliseconds(3200))
                    && at.is_some_and(|at| at <= now() + chrono::Duration::milliseconds(4800))
            })
            .times(1)
            .returning(|_, _, _| Ok(()));
        relay(outbox, vec![subscriber(&[]), subscriber(&[7])])
            .run_once()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn only_the_messages_a_subscriber_failed_are_kept_for_later() {
        let mut outbox = MockOutbox::new();
        outbox
            .expect_claim_unpublished()
            .returning(|_, _, _| Ok(vec![message(1), message(2), message(3)]));
        outbox
            .expect_record_publish_failure()
            .withf(|id, error, _| *id == 2 && error.contains("down"))
            .times(1)
            .returning(|_, _, _| Ok(()));
        outbox
            .expect_mark_published()
            .withf(|ids, _| ids == [1, 3])
            .times(1)
            .returning(|_, _| Ok(()));
        relay(outbox, vec![subscriber(&[2]), subscriber(&[])])
            .run_once()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_subscriber_that_answers_for_fewer_messages_fails_the_rest() {
        let mut outbox = MockOutbox::new();
        outbox
            .expect_claim_unpublished()
            .returning(|_, _, _| Ok(vec![message(1), message(2)]));
        let mut short = MockEventPublisher::new();
        short.expect_publish_all().returning(|_| vec![Ok(())]);
        outbox
            .expect_record_publish_failure()
            .withf(|id, error, _| *id == 2 && error.contains("no answer"))
            .times(1)
            .returning(|_, _, _| Ok(()));
        outbox
            .expect_mark_published()
            .withf(|ids, _| ids == [1])
            .times(1)
            .returning(|_, _| Ok(()));
        relay(outbox, vec![Arc::new(short)]).run_once().await.unwrap();
    }

    #[tokio::test]
    async fn handed_over_messages_are_delivered_without_claiming_them_back() {
        let mut outbox = MockOutbox::new();
        // The claim at start only.
        outbox
            .expect_claim_unpublished()
            .times(1)
            .returning(|_, _, _| Ok(Vec::new()));
        let (marked, was_marked) = tokio::sync::oneshot::channel();
        let marked = std::sync::Mutex::new(Some(marked));
        outbox
            .expect_mark_published()
            .withf(|ids, _| ids == [5, 6])
            .times(1)
            .returning(move |_, _| {
                if let Some(marked) = marked.lock().unwrap().take() {
                    let _ = marked.send(());
                }
                Ok(())
            });
        let relay = Arc::new(relay(outbox, vec![subscriber(&[])]));
        let (handoff, handed_over) = crate::processing::handoff::channel(8, Duration::from_secs(30), clock());
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn(run_relay(
            relay.clone(),
            Duration::from_secs(3600),
            Arc::new(Notify::new()),
            handed_over,
            shutdown,
        ));
        handoff.reserve(2).unwrap().hand_over([message(5), message(6)]);
        tokio::time::timeout(Duration::from_secs(5), was_marked)
            .await
            .expect("delivered and marked")
            .unwrap();
        stop.send(true).unwrap();
        running.await.unwrap();
        drop(relay); // checks the expectations: one claim, one mark
    }

    #[tokio::test]
    async fn messages_a_commit_left_to_claim_go_before_those_handed_over_after_it() {
        let mut outbox = MockOutbox::new();
        let mut seq = mockall::Sequence::new();
        let (marked, mut marks) = tokio::sync::mpsc::unbounded_channel();
        // The claim at start finds nothing; the next, after a commit that was not
        // handed over woke the relay, finds message 7.
        outbox
            .expect_claim_unpublished()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Ok(Vec::new()));
        outbox
            .expect_claim_unpublished()
            .times(1)
            .in_sequence(&mut seq)
            .returning(|_, _, _| Ok(vec![message(7)]));
        outbox.expect_claim_unpublished().returning(|_, _, _| Ok(Vec::new()));
        outbox.expect_mark_published().returning(move |ids, _| {
            let _ = marked.send(ids.to_vec());
            Ok(())
        });
        let relay = Arc::new(relay(outbox, vec![subscriber(&[])]));
        let (handoff, handed_over) = crate::processing::handoff::channel(8, Duration::from_secs(30), clock());
        let published = Arc::new(Notify::new());
        let (stop, shutdown) = watch::channel(false);
        let running = tokio::spawn(run_relay(
            relay.clone(),
            Duration::from_secs(3600),
            published.clone(),
            handed_over,
            shutdown,
        ));
        let mut next_mark = async || {
            tokio::time::timeout(Duration::from_secs(5), marks.recv())
                .await
                .ok()
                .flatten()
        };
        handoff.reserve(1).unwrap().hand_over([message(5)]);
        assert_eq!(next_mark().await, Some(vec![5]));
        // Message 7 was committed (and the relay woken) before 6 was handed over.
        published.notify_one();
        handoff.reserve(1).unwrap().hand_over([message(6)]);
        assert_eq!(next_mark().await, Some(vec![7]), "claimed first");
        assert_eq!(next_mark().await, Some(vec![6]));
        stop.send(true).unwrap();
        running.await.unwrap();
    }

    #[tokio::test]
    async fn messages_still_waiting_in_the_handoff_are_delivered_before_stopping() {
        let mut outbox = MockOutbox::new();
        outbox.expect_claim_unpublished().never();
        outbox
            .expect_mark_published()
            .withf(|ids, _| ids == [8])
            .times(1)
            .returning(|_, _| Ok(()));
        let relay = Arc::new(relay(outbox, vec![subscriber(&[])]));
        let (handoff, handed_over) = crate::processing::handoff::channel(8, Duration::from_secs(30), clock());
        handoff.reserve(1).unwrap().hand_over([message(8)]);
        let (_stop, shutdown) = watch::channel(true);
        run_relay(
            relay.clone(),
            Duration::from_secs(3600),
            Arc::new(Notify::new()),
            handed_over,
            shutdown,
        )
        .await;
        assert!(handoff.reserve(1).is_none(), "a stopped relay takes nothing more");
        drop(relay);
    }
}
