//! Domain events across instances over Postgres LISTEN/NOTIFY (docs/architecture.md,
//! "Several instances"), so status streams on every instance hear every change. The relay of whichever
//! instance delivers a message announces it on one channel; every instance listens
//! on its own connection and hands what it hears to its local subscribers.

use crate::PgStore;
use async_trait::async_trait;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use payhook_domain::ports::{EventPublisher, FanOut, FanOutListener, StoreError};
use payhook_domain::{OutboxMessage, PublishError};
use payhook_sql_shared::db_error;
use payhook_sql_shared::rows::OutboxRow;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::time::Duration;

/// The channel every instance listens on.
pub const CHANNEL: &str = "payhook_domain_events";
/// NOTIFY payloads must stay under 8,000 bytes: a larger message is announced by its
/// outbox id and read back by each listener.
const MAX_INLINE_BYTES: usize = 7_900;
/// A listener that heard nothing for this long checks that its connection still
/// works, so a lost connection is noticed and replaced.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// What travels on the channel: borrowed when announcing, owned when heard.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Announcement<'a> {
    Message(Cow<'a, OutboxMessage>),
    OutboxId(i64),
}

/// [`FanOut`] over the store's database.
pub struct PgFanOut {
    store: PgStore,
    database_url: String,
}

impl PgFanOut {
    pub fn new(store: PgStore, database_url: &str) -> Self {
        Self {
            store,
            database_url: database_url.to_owned(),
        }
    }
}

/// What is announced of a message: itself, or its outbox id when too long for NOTIFY.
fn announcement(message: &OutboxMessage) -> Result<String, PublishError> {
    let text = serde_json::to_string(&Announcement::Message(Cow::Borrowed(message))).map_err(failure)?;
    if text.len() > MAX_INLINE_BYTES {
        return serde_json::to_string(&Announcement::OutboxId(message.id)).map_err(failure);
    }
    Ok(text)
}

fn failure(reason: impl ToString) -> PublishError {
    PublishError {
        subscriber: "postgres fan-out".into(),
        reason: reason.to_string(),
    }
}

impl PgFanOut {
    /// Announces `texts` in order, in one statement: one round trip for a batch.
    async fn announce(&self, texts: &[String]) -> Result<(), PublishError> {
        let mut conn = self.store.conn().await.map_err(failure)?;
        diesel::sql_query(
            "SELECT pg_notify($1, announcement) FROM unnest($2) WITH ORDINALITY AS a(announcement, ord) ORDER BY ord",
        )
        .bind::<Text, _>(CHANNEL)
        .bind::<Array<Text>, _>(texts)
        .execute(&mut *conn)
        .await
        .map_err(failure)?;
        Ok(())
    }
}

#[async_trait]
impl EventPublisher for PgFanOut {
    async fn publish(&self, message: &OutboxMessage) -> Result<(), PublishError> {
        self.announce(&[announcement(message)?]).await
    }

    /// The whole batch at once; it is announced, or fails, as one.
    async fn publish_all(&self, messages: &[OutboxMessage]) -> Vec<Result<(), PublishError>> {
        let announced = match messages.iter().map(announcement).collect::<Result<Vec<_>, _>>() {
            Ok(texts) if texts.is_empty() => Ok(()),
            Ok(texts) => self.announce(&texts).await,
            Err(e) => Err(e),
        };
        messages.iter().map(|_| announced.clone()).collect()
    }
}

#[async_trait]
impl FanOut for PgFanOut {
    async fn listen(&self) -> Result<Box<dyn FanOutListener>, StoreError> {
        let mut conn = AsyncPgConnection::establish(&self.database_url)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot connect to listen: {e}")))?;
        diesel::sql_query(format!("LISTEN {CHANNEL}"))
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        Ok(Box::new(PgListener { conn }))
    }
}

/// A connection of its own (not pooled: LISTEN belongs to a session).
struct PgListener {
    conn: AsyncPgConnection,
}

#[async_trait]
impl FanOutListener for PgListener {
    async fn next(&mut self) -> Result<OutboxMessage, StoreError> {
        loop {
            // The connection keeps what arrives between two streams.
            let heard = {
                let mut notifications = std::pin::pin!(self.conn.notifications_stream());
                tokio::time::timeout(KEEPALIVE, notifications.next()).await
            };
            let notification = match heard {
                Ok(Some(notification)) => notification.map_err(db_error)?,
                Ok(None) => return Err(StoreError::Unavailable("the listening connection closed".into())),
                Err(_quiet) => {
                    diesel::sql_query("SELECT 1")
                        .execute(&mut self.conn)
                        .await
                        .map_err(db_error)?;
                    continue;
                }
            };
            let announcement: Announcement = match serde_json::from_str(&notification.payload) {
                Ok(announcement) => announcement,
                // Not one of ours (another program on the channel): nothing to hand on.
                Err(error) => {
                    tracing::warn!(%error, channel = CHANNEL, "ignoring an unreadable announcement");
                    continue;
                }
            };
            return match announcement {
                Announcement::Message(message) => Ok(message.into_owned()),
                Announcement::OutboxId(id) => {
                    let row: OutboxRow =
                        diesel::sql_query("SELECT id, topic, payload, created_at, attempts FROM outbox WHERE id = $1")
                            .bind::<BigInt, _>(id)
                            .get_result(&mut self.conn)
                            .await
                            .map_err(db_error)?;
                    Ok(row.into())
                }
            };
        }
    }
}
