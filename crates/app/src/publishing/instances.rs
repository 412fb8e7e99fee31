//! Hands what every instance's relay announces (`FanOut`) to this instance's local
//! subscribers (the bus behind status streams), listening again when the connection
//! is lost.

use payhook_domain::ports::{EventPublisher, FanOut, FanOutListener};
use std::sync::Arc;
use std::time::Duration;

const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// Runs until aborted. Announcements made while no listener is connected are not
/// heard: a status stream misses those changes, while the payment itself, its
/// history and the outbox's other subscribers have them.
pub async fn follow(fan_out: Arc<dyn FanOut>, mut listener: Box<dyn FanOutListener>, local: Arc<dyn EventPublisher>) {
    loop {
        match listener.next().await {
            Ok(message) => {
                // The local bus never refuses (nobody listening is not a failure).
                let _ = local.publish(&message).await;
            }
            Err(error) => {
                tracing::warn!(%error, "lost the domain event fan-out; listening again");
                listener = listen_again(fan_out.as_ref()).await;
            }
        }
    }
}

async fn listen_again(fan_out: &dyn FanOut) -> Box<dyn FanOutListener> {
    let mut pause = FIRST_PAUSE;
    loop {
        tokio::time::sleep(pause).await;
        match fan_out.listen().await {
            Ok(listener) => return listener,
            Err(error) => {
                pause = (pause * 2).min(MAX_PAUSE);
                tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "cannot listen for domain events");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use chrono::Utc;
    use payhook_domain::ports::StoreError;
    use payhook_domain::{OutboxMessage, PublishError};
    use std::collections::VecDeque;
    use std::sync::Mutex;

    fn message(id: i64) -> OutboxMessage {
        OutboxMessage {
            id,
            topic: "payment.paid".into(),
            payload: serde_json::json!({ "n": id }),
            created_at: Utc::now(),
            attempts: 0,
        }
    }

    /// Each listener hears its script, then breaks.
    struct Scripted {
        listens: Mutex<VecDeque<Result<Vec<i64>, ()>>>,
    }

    struct Listener(VecDeque<i64>);

    #[async_trait]
    impl FanOutListener for Listener {
        async fn next(&mut self) -> Result<OutboxMessage, StoreError> {
            match self.0.pop_front() {
                Some(id) => Ok(message(id)),
                None => Err(StoreError::Unavailable("connection lost".into())),
            }
        }
    }

    #[async_trait]
    impl EventPublisher for Scripted {
        async fn publish(&self, _: &OutboxMessage) -> Result<(), PublishError> {
            Ok(())
        }
    }

    #[async_trait]
    impl FanOut for Scripted {
        async fn listen(&self) -> Result<Box<dyn FanOutListener>, StoreError> {
            let next = self.listens.lock().unwrap().pop_front();
            match next {
                Some(Ok(ids)) => Ok(Box::new(Listener(ids.into()))),
                Some(Err(())) => Err(StoreError::Unavailable("database down".into())),
                None => std::future::pending().await,
            }
        }
    }

    struct Collect(tokio::sync::mpsc::UnboundedSender<i64>);

    #[async_trait]
    impl EventPublisher for Collect {
        async fn publish(&self, message: &OutboxMessage) -> Result<(), PublishError> {
            let _ = self.0.send(message.id);
            Ok(())
        }
    }

    #[tokio::test]
    async fn what_any_instance_announces_reaches_the_local_subscribers_across_reconnections() {
        // The first listener hears 1 and 2 and breaks; listening fails once, then the
        // next listener hears 3.
        let fan_out = Arc::new(Scripted {
            listens: Mutex::new(VecDeque::from([Err(()), Ok(vec![3])])),
        });
        let (sender, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let follower = tokio::spawn(follow(
            fan_out,
            Box::new(Listener(VecDeque::from([1, 2]))),
            Arc::new(Collect(sender)),
        ));
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(heard.recv().await.unwrap());
        }
        assert_eq!(ids, [1, 2, 3]);
        follower.abort();
    }
}
