//! The in-process subscriber: domain events on a broadcast channel, for code running
//! in the same process (the live status stream, embedding applications).

use payhook_domain::ports::EventPublisher;
use payhook_domain::{OutboxMessage, PublishError};
use tokio::sync::broadcast;

/// How many events a slow in-process listener may lag before it misses some (it can
/// always re-read the payment).
const CAPACITY: usize = 1024;

#[derive(Clone)]
pub struct EventBus {
    sender: broadcast::Sender<OutboxMessage>,
}

impl EventBus {
    pub fn new() -> Self {
        Self {
            sender: broadcast::channel(CAPACITY).0,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<OutboxMessage> {
        self.sender.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl EventPublisher for EventBus {
    async fn publish(&self, message: &OutboxMessage) -> Result<(), PublishError> {
        // No listener right now is not a failure: there is nobody to tell.
        let _ = self.sender.send(message.clone());
        Ok(())
    }
}
