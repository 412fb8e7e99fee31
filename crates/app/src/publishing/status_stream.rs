//! `GET /payments/{id}/events?token=…`: the payment's status as Server-Sent Events,
//! for the customer's browser. The client token from `POST /payments` authorizes it
//! (compared with the stored hash in constant time). The first event is the current
//! status, then one per change; a comment line every 15 s keeps proxies from closing
//! the connection, and is how a stream whose browser has gone is noticed (the write
//! fails) within two heartbeats.
//!
//! What one client may hold is bounded: `limits.streams_per_payment` and
//! `limits.streams_total` open streams (429 `too_many_streams`), each for at most
//! `limits.stream_max_secs`, and a stream ends once it has sent a status that
//! settles the checkout. Domain events reach streams through a [`StreamHub`] keyed
//! by payment, so an event wakes only its own payment's streams, however many
//! others are open.

use crate::api::credentials::check_client_token;
use crate::api::{ApiError, AppState};
use actix_web::web::Bytes;
use actix_web::{web, HttpResponse};
use payhook_domain::ports::PaymentStore;
use payhook_domain::{OutboxMessage, Payment, PaymentId};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, Interval, MissedTickBehavior};

pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Changes one payment's streams may lag behind before they re-read the payment.
const PER_PAYMENT_BUFFER: usize = 16;

#[derive(Deserialize)]
pub struct StreamQuery {
    pub token: Option<String>,
}

/// What a payment's streams are told.
#[derive(Debug, Clone)]
enum Update {
    /// A domain event's payload about this payment.
    Status(Arc<serde_json::Value>),
    /// Changes may have been missed: read the payment again.
    Reread,
}

/// Stream limits (`limits.*`).
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub per_payment: usize,
    pub total: usize,
    pub max_age: Duration,
}

/// The open status streams, by payment.
pub struct StreamHub {
    payments: Mutex<HashMap<PaymentId, Channel>>,
    open: AtomicUsize,
    limits: StreamLimits,
}

struct Channel {
    sender: broadcast::Sender<Update>,
    streams: usize,
}

/// One open stream's place in the hub; dropping it frees the place.
struct Ticket {
    hub: Arc<StreamHub>,
    id: PaymentId,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
        let mut payments = self.hub.payments.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = payments.get_mut(&self.id) {
            channel.streams -= 1;
            if channel.streams == 0 {
                payments.remove(&self.id);
            }
        }
    }
}

impl StreamHub {
    pub fn new(limits: StreamLimits) -> Arc<Self> {
        Arc::new(Self {
            payments: Mutex::new(HashMap::new()),
            open: AtomicUsize::new(0),
            limits,
        })
    }

    pub fn limits(&self) -> StreamLimits {
        self.limits
    }

    /// How many streams are open.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A place for one more stream on `id`, or which limit is reached.
    fn open(self: &Arc<Self>, id: PaymentId) -> Result<(Ticket, broadcast::Receiver<Update>), ApiError> {
        let mut payments = self.payments.lock().unwrap_or_else(|e| e.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.limits.total {
            return Err(ApiError::TooManyStreams(""));
        }
        let channel = payments.entry(id).or_insert_with(|| Channel {
            sender: broadcast::channel(PER_PAYMENT_BUFFER).0,
            streams: 0,
        });
        if channel.streams >= self.limits.per_payment {
            return Err(ApiError::TooManyStreams(" on this payment"));
        }
        channel.streams += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        let receiver = channel.sender.subscribe();
        Ok((Ticket { hub: self.clone(), id }, receiver))
    }

    /// Tells the streams of the payment a domain event is about (one map look-up;
    /// no other stream is woken).
    pub fn deliver(&self, message: &OutboxMessage) {
        let Some(id) = message.payload["payment_id"].as_str().and_then(PaymentId::parse) else {
            return;
        };
        let payments = self.payments.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(channel) = payments.get(&id) {
            let _ = channel.sender.send(Update::Status(Arc::new(message.payload.clone())));
        }
    }

    /// Tells every stream to re-read its payment (the hub itself missed events).
    fn reread_all(&self) {
        let payments = self.payments.lock().unwrap_or_else(|e| e.into_inner());
        for channel in payments.values() {
            let _ = channel.sender.send(Update::Reread);
        }
    }
}

/// Feeds the hub from the in-process bus (`events`, subscribed before this runs,
/// so nothing published meanwhile is missed) until the bus closes.
pub async fn dispatch(mut events: broadcast::Receiver<OutboxMessage>, hub: Arc<StreamHub>) {
    loop {
        match events.recv().await {
            Ok(message) => hub.deliver(&message),
            Err(RecvError::Lagged(_)) => hub.reread_all(),
            Err(RecvError::Closed) => return,
        }
    }
}

#[utoipa::path(get, path = "/payments/{id}/events", tag = "browser",
    params(("id" = String, Path, description = "The payment id"), ("token" = String, Query, description = "The payment's client token")),
    responses(
        (status = 200, description = "Server-Sent Events: `status` events, heartbeat comments", content_type = "text/event-stream"),
        (status = 401, description = "`missing_client_token`, `invalid_client_token`", body = crate::api::openapi::ErrorBody),
        (status = 404, description = "`payment_not_found`", body = crate::api::openapi::ErrorBody),
        (status = 429, description = "`too_many_streams`", body = crate::api::openapi::ErrorBody),
    ))]
pub async fn stream(
    path: web::Path<String>,
    query: web::Query<StreamQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let id = check_client_token(state.payments.as_ref(), &raw, query.token.as_deref()).await?;
    // Open before reading the payment, so no change falls between the two.
    let (ticket, updates) = state.streams.open(id)?;
    let payment = state
        .payments
        .payment(id)
        .await?
        .ok_or(ApiError::PaymentNotFound(raw))?;
    let mut heartbeat = tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let stream = StatusStream {
        id,
        payments: state.payments.clone(),
        updates,
        first: Some(status_of(&payment)),
        heartbeat,
        closes_at: Instant::now() + state.streams.limits().max_age,
        settled: false,
        _ticket: ticket,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        .streaming(futures_util::stream::unfold(stream, StatusStream::next)))
}

struct StatusStream {
    id: PaymentId,
    payments: Arc<dyn PaymentStore>,
    updates: broadcast::Receiver<Update>,
    first: Option<serde_json::Value>,
    /// On its own timer: no event, for this payment or any other, delays it.
    heartbeat: Interval,
    closes_at: Instant,
    /// A status that settles the checkout has been sent: the stream ends.
    settled: bool,
    _ticket: Ticket,
}

impl StatusStream {
    /// The next chunk: the current status first, then this payment's changes and
    /// heartbeats. Ends after a settling status, at the stream's maximum age, or
    /// when the gateway shuts down.
    async fn next(mut self) -> Option<(Result<Bytes, actix_web::Error>, Self)> {
        if self.settled {
            return None;
        }
        if let Some(first) = self.first.take() {
            return Some((Ok(self.status_event(&first)), self));
        }
        loop {
            let chunk = tokio::select! {
                received = self.updates.recv() => match received {
                    Ok(Update::Status(payload)) => Some(self.status_event(&payload)),
                    // Too slow to keep up, or the hub missed events: the current state
                    // sums up what was missed.
                    Ok(Update::Reread) | Err(RecvError::Lagged(_)) => {
                        self.reread().await.map(|p| self.status_event(&status_of(&p)))
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => Some(Bytes::from_static(b": heartbeat\n\n")),
                _ = tokio::time::sleep_until(self.closes_at) => return None,
            };
            if let Some(chunk) = chunk {
                return Some((Ok(chunk), self));
            }
        }
    }

    /// The payment as stored. In a task of its own: the stream is dropped whenever
    /// its browser goes, and a store call dropped half-way is not safe everywhere
    /// (see `crate::api::store_call`).
    async fn reread(&self) -> Option<Payment> {
        let (payments, id) = (self.payments.clone(), self.id);
        tokio::spawn(async move { payments.payment(id).await })
            .await
            .ok()?
            .ok()?
    }

    fn status_event(&mut self, data: &serde_json::Value) -> Bytes {
        self.settled |= data["status"].as_str().is_some_and(settles_checkout);
        Bytes::from(format!("event: status\ndata: {data}\n\n"))
    }
}

/// Whether the customer's checkout is over at this status, whatever comes later:
/// authorized (the customer's part is done; the merchant captures later), paid (or
/// since refunded) or canceled. After `failed` or `expired` the stream stays open: a
/// retry or a late payment can still pay.
fn settles_checkout(status: &str) -> bool {
    matches!(
        status,
        "authorized" | "paid" | "partially_refunded" | "refunded" | "canceled"
    )
}

/// The payment's state in the shape of the domain events' payload.
fn status_of(p: &Payment) -> serde_json::Value {
    serde_json::json!({
        "payment_id": p.id,
        "status": p.status,
        "dispute_status": p.dispute_status,
        "amount": p.amount.amount_minor(),
        "currency": p.amount.currency(),
        "paid_amount": p.paid_amount,
        "refunded_amount": p.refunded_amount,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_payment: usize, total: usize) -> StreamLimits {
        StreamLimits {
            per_payment,
            total,
            max_age: Duration::from_secs(900),
        }
    }

    fn message(id: PaymentId, status: &str) -> OutboxMessage {
        OutboxMessage {
            id: 1,
            topic: "payment.status_changed".into(),
            payload: serde_json::json!({ "payment_id": id.to_string(), "status": status }),
            created_at: chrono::Utc::now(),
            attempts: 0,
        }
    }

    fn new_id() -> PaymentId {
        PaymentId::from_uuid(uuid::Uuid::new_v4())
    }

    #[test]
    fn an_event_reaches_only_its_own_payments_streams() {
        let hub = StreamHub::new(limits(10, 100));
        let (a, b) = (new_id(), new_id());
        let (_ta, mut on_a) = hub.open(a).unwrap();
        let (_tb, mut on_b) = hub.open(b).unwrap();
        hub.deliver(&message(a, "paid"));
        assert!(matches!(on_a.try_recv(), Ok(Update::Status(p)) if p["status"] == "paid"));
        assert!(on_b.try_recv().is_err(), "another payment's stream was not woken");
    }

    /// A browser that has gone is only noticed when a write to it fails; the
    /// heartbeat is that write. It keeps its own schedule, so even a payment whose
    /// status changes every 5 s (each change written too) gets its heartbeats every
    /// `HEARTBEAT`, and a gone client is dropped within two of them.
    #[tokio::test(start_paused = true)]
    async fn heartbeats_keep_their_schedule_whatever_events_arrive() {
        let hub = StreamHub::new(limits(10, 100));
        let id = new_id();
        let (ticket, updates) = hub.open(id).unwrap();
        let mut stream = Some(StatusStream {
            id,
            payments: Arc::new(payhook_domain::ports::MockPaymentStore::new()),
            updates,
            first: None,
            heartbeat: tokio::time::interval_at(Instant::now() + HEARTBEAT, HEARTBEAT),
            closes_at: Instant::now() + Duration::from_secs(900),
            settled: false,
            _ticket: ticket,
        });
        let busy = {
            let hub = hub.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    hub.deliver(&message(id, "requires_action"));
                }
            })
        };
        let started = Instant::now();
        let mut heartbeats = Vec::new();
        while started.elapsed() < 2 * HEARTBEAT + Duration::from_secs(1) {
            let (chunk, next) = stream.take().unwrap().next().await.unwrap();
            if chunk.unwrap().starts_with(b": heartbeat") {
                heartbeats.push(started.elapsed().as_secs());
            }
            stream = Some(next);
        }
        busy.abort();
        assert_eq!(heartbeats, [HEARTBEAT.as_secs(), 2 * HEARTBEAT.as_secs()]);
    }

    #[test]
    fn limits_per_payment_and_in_all_and_closed_streams_free_their_place() {
        let hub = StreamHub::new(limits(2, 3));
        let (a, b) = (new_id(), new_id());
        let first = hub.open(a).unwrap();
        let _second = hub.open(a).unwrap();
        assert!(matches!(hub.open(a), Err(ApiError::TooManyStreams(_))), "per payment");
        let _third = hub.open(b).unwrap();
        assert!(matches!(hub.open(b), Err(ApiError::TooManyStreams(_))), "in all");
        assert_eq!(hub.open_streams(), 3);
        drop(first);
        assert_eq!(hub.open_streams(), 2);
        assert!(hub.open(a).is_ok(), "a closed stream's place is free again");
    }

    #[test]
    fn a_payment_without_streams_is_forgotten() {
        let hub = StreamHub::new(limits(2, 3));
        let a = new_id();
        drop(hub.open(a).unwrap());
        assert!(hub.payments.lock().unwrap().is_empty());
    }

    #[test]
    fn settling_statuses() {
        for status in ["authorized", "paid", "refunded", "partially_refunded", "canceled"] {
            assert!(settles_checkout(status), "{status}");
        }
        for status in ["pending", "requires_action", "failed", "expired"] {
            assert!(!settles_checkout(status), "{status}");
        }
    }
}
