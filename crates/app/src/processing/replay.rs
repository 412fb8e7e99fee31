//! Bulk replay, shared by `payhook replay --status …` and `POST
//! /admin/webhooks/replay`: every inbox event matching a filter is made due again,
//! a batch at a time, so no statement holds many rows (a replay of a day's dead
//! events does not stall the webhooks arriving meanwhile).

use chrono::{DateTime, Utc};
use payhook_domain::ports::{StoreError, WebhookInbox};
use payhook_domain::ReplayFilter;

/// Events made due per statement.
pub const REPLAY_BATCH: u32 = 500;

/// Makes every event matching `filter` due at `now`; how many. Idempotent: replayed
/// events are pending, which no filter matches, so a second call finds none of them.
pub async fn replay_matching(
    inbox: &dyn WebhookInbox,
    filter: &ReplayFilter,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut replayed = 0;
    loop {
        let n = inbox.replay_batch(filter, now, REPLAY_BATCH).await?;
        replayed += n;
        if n < u64::from(REPLAY_BATCH) {
            return Ok(replayed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payhook_domain::ports::MockWebhookInbox;
    use payhook_domain::InboxStatus;

    #[tokio::test]
    async fn replays_batch_after_batch_until_one_is_short() {
        let mut inbox = MockWebhookInbox::new();
        let mut left = 1_234u64;
        inbox.expect_replay_batch().times(3).returning(move |_, _, limit| {
            let n = left.min(u64::from(limit));
            left -= n;
            Ok(n)
        });
        let filter = ReplayFilter {
            status: InboxStatus::Dead,
            provider: None,
            since: None,
        };
        assert_eq!(replay_matching(&inbox, &filter, Utc::now()).await.unwrap(), 1_234);
    }
}
