//! The outgoing webhook against a real HTTP server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use payhook_domain::ports::EventPublisher;
use payhook_domain::OutboxMessage;
use payhook_outgoing_webhook::{signature, OutgoingWebhook};
use secrecy::SecretString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Headers and body of one request the receiver got.
type Request = (Vec<(String, String)>, Vec<u8>);

#[derive(Default)]
struct Received {
    requests: Vec<Request>,
    fail_next: usize,
}

async fn receiver(received: Arc<Mutex<Received>>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = HttpServer::new(move || {
        let received = received.clone();
        App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
            let received = received.clone();
            async move {
                let mut r = received.lock().unwrap();
                let headers = req
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                    .collect();
                r.requests.push((headers, body.to_vec()));
                if r.fail_next > 0 {
                    r.fail_next -= 1;
                    HttpResponse::ServiceUnavailable().finish()
                } else {
                    HttpResponse::NoContent().finish()
                }
            }
        }))
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}/hooks")
}

fn message() -> OutboxMessage {
    OutboxMessage {
        id: 42,
        topic: "payment.paid".into(),
        payload: serde_json::json!({ "payment_id": "p1", "status": "paid" }),
        created_at: chrono::Utc::now(),
        attempts: 0,
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_a_signed_standard_webhook() {
    let received = Arc::new(Mutex::new(Received::default()));
    let url = receiver(received.clone()).await;
    let notify = OutgoingWebhook::new(&url, &SecretString::from(SECRET), Duration::from_secs(5)).unwrap();
    notify.publish(&message()).await.unwrap();

    let r = received.lock().unwrap();
    assert_eq!(r.requests.len(), 1);
    let (headers, body) = &r.requests[0];
    assert_eq!(header(headers, "webhook-id"), "msg_payhook_42");
    let timestamp: i64 = header(headers, "webhook-timestamp").parse().unwrap();
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 60);
    let key = base64::engine::general_purpose::STANDARD.decode(&SECRET[6..]).unwrap();
    assert_eq!(
        header(headers, "webhook-signature"),
        signature(&key, "msg_payhook_42", timestamp, body)
    );
    let json: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(json["type"], "payment.paid");
    assert_eq!(json["data"]["payment_id"], "p1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_2xx_and_unreachable_endpoints_fail_the_delivery() {
    let received = Arc::new(Mutex::new(Received {
        fail_next: 1,
        ..Received::default()
    }));
    let url = receiver(received.clone()).await;
    let notify = OutgoingWebhook::new(&url, &SecretString::from(SECRET), Duration::from_secs(5)).unwrap();
    let err = notify.publish(&message()).await.unwrap_err();
    assert!(err.reason.contains("503"), "{err}");
    notify.publish(&message()).await.unwrap();
    assert_eq!(
        received.lock().unwrap().requests.len(),
        2,
        "the retry is a second request"
    );

    let nowhere = OutgoingWebhook::new(
        "http://127.0.0.1:9/",
        &SecretString::from(SECRET),
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(nowhere.publish(&message()).await.is_err());
}
