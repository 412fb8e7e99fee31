//! The outbox relay: delivers committed domain events to every subscriber at least
//! once. Woken right after a commit that wrote events, and by a periodic sweep that
//! also picks up messages a crashed relay leased and never marked.

use crate::processing::{jitter, RetryPolicy};
use payhook_domain::ports::{Clock, EventPublisher, Outbox, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

pub struct OutboxRelay {
    outbox: Arc<dyn Outbox>,
    subscribers: Vec<Arc<dyn EventPublisher>>,
    clock: Arc<dyn Clock>,
    /// Only the backoff is used: a domain event is never given up on.
    backoff: RetryPolicy,
    batch_size: u32,
    lease: Duration,
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
        }
    }

    /// Delivers one batch of due messages in commit order; returns how many were claimed.
    /// Every subscriber gets the batch; a message that any of them failed to take is
    /// given to all again later (they are idempotent), with backoff.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        let messages = self.outbox.claim_unpublished(now, self.batch_size, lease_until).await?;
        if messages.is_empty() {
            return Ok(0);
        }
        let mut failures = vec![Vec::new(); messages.len()];
        for subscriber in &self.subscribers {
            let results = subscriber.publish_all(&messages).await;
            for (i, failed) in failures.iter_mut().enumerate() {
                match results.get(i) {
                    Some(Ok(())) => {}
                    Some(Err(e)) => failed.push(e.to_string()),
                    None => failed.push("a subscriber gave no answer for this message".to_owned()),
                }
            }
        }
        let mut delivered = Vec::with_capacity(messages.len());
        for (message, failed) in messages.iter().zip(failures) {
            if failed.is_empty() {
                delivered.push(message.id);
                continue;
            }
            let error = failed.join("; ");
            tracing::warn!(outbox_id = message.id, topic = %message.topic, %error, "domain event not delivered; will retry");
            let retry_at = self.backoff.backoff(message.attempts + 1, self.clock.now(), jitter());
            self.outbox.record_publish_failure(message.id, &error, retry_at).await?;
        }
        // One statement for the batch; a crash before it only means a redelivery.
        self.outbox.mark_published(&delivered, self.clock.now()).await?;
        Ok(messages.len())
    }
}

/// Runs the relay until `shutdown`: after each commit that wrote events, and at least
/// every `sweep_interval`.
pub async fn run_relay(
    relay: Arc<OutboxRelay>,
    sweep_interval: Duration,
    published: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            break;
        }
        match relay.run_once().await {
            Ok(n) if n as u32 >= relay.batch_size => continue,
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "outbox relay could not claim messages"),
        }
        tokio::select! {
            _ = published.notified() => {}
            _ = tokio::time::sleep(sweep_interval) => {}
            _ = shutdown.changed() => {}
        }
    }
    tracing::info!("outbox relay stopped");
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

    fn relay(outbox: MockOutbox, subscribers: Vec<Arc<dyn EventPublisher>>) -> OutboxRelay {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        let backoff = RetryPolicy {
            max_attempts: i32::MAX,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        };
        OutboxRelay::new(
            Arc::new(outbox),
            subscribers,
            Arc::new(clock),
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
                    && *at >= now() + chrono::Duration::milliseconds(3200)
                    && *at <= now() + chrono::Duration::milliseconds(4800)
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
}
