//! The outbox relay: delivers committed domain events to every subscriber at least
//! once. Woken right after a commit that wrote events, and by a periodic sweep that
//! also picks up messages a crashed relay leased and never marked.

use crate::processing::{jitter, RetryPolicy};
use payhook_domain::ports::{Clock, EventPublisher, Outbox, StoreError};
use payhook_domain::OutboxMessage;
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
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::MAX);
        let messages = self.outbox.claim_unpublished(now, self.batch_size, lease_until).await?;
        let mut delivered = Vec::with_capacity(messages.len());
        for message in &messages {
            if self.deliver(message).await? {
                delivered.push(message.id);
            }
        }
        // One statement for the batch; a crash before it only means a redelivery.
        self.outbox.mark_published(&delivered, self.clock.now()).await?;
        Ok(messages.len())
    }

    /// Every subscriber gets the message; if any fails, all get it again later (they
    /// are idempotent), with backoff. `true` when every subscriber took it.
    async fn deliver(&self, message: &OutboxMessage) -> Result<bool, StoreError> {
        let mut failures = Vec::new();
        for subscriber in &self.subscribers {
            if let Err(e) = subscriber.publish(message).await {
                failures.push(e.to_string());
            }
        }
        if failures.is_empty() {
            return Ok(true);
        }
        let error = failures.join("; ");
        tracing::warn!(outbox_id = message.id, topic = %message.topic, %error, "domain event not delivered; will retry");
        let retry_at = self.backoff.backoff(message.attempts + 1, self.clock.now(), jitter());
        self.outbox.record_publish_failure(message.id, &error, retry_at).await?;
        Ok(false)
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
    use payhook_domain::PublishError;

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

    fn subscriber(ok: bool) -> Arc<dyn EventPublisher> {
        let mut s = MockEventPublisher::new();
        s.expect_publish().returning(move |_| {
            if ok {
                Ok(())
            } else {
                Err(PublishError {
                    subscriber: "test".into(),
                    reason: "down".into(),
                })
            }
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
            relay(outbox, vec![subscriber(true), subscriber(true)])
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
        relay(outbox, vec![subscriber(true), subscriber(false)])
            .run_once()
            .await
            .unwrap();
    }
}
