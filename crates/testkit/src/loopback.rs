//! Serving a fake provider API over real HTTP on 127.0.0.1 with a random port.

use actix_web::dev::Service;
use actix_web::{web, App, HttpServer};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A delay a test puts before every answer of a fake's API (not its `/_fake/…` test
/// routes): to provoke timeouts, or to hold a request in flight while something else
/// happens (a process killed mid-call). Requests waiting in it are counted.
#[derive(Clone, Default)]
pub struct Stall(Arc<Mutex<StallState>>);

#[derive(Default)]
struct StallState {
    delay: Option<Duration>,
    waiting: usize,
    /// API requests received, by path (the `/_fake/…` routes not counted).
    calls: std::collections::BTreeMap<String, u64>,
    /// Statuses to answer the next API requests with, set over HTTP
    /// (`POST /_fake/fail`); a test in the same process uses each fake's `fail_next`.
    failures: std::collections::VecDeque<u16>,
}

impl Stall {
    /// Requests that arrive from now on wait `delay` first; `Duration::ZERO` stops it
    /// (requests already waiting keep waiting).
    pub fn set(&self, delay: Duration) {
        self.lock().delay = (!delay.is_zero()).then_some(delay);
    }

    /// How many requests are waiting now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StallState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sleeps `delay`, counted as waiting meanwhile (also when the sleep is dropped
    /// because the caller hung up).
    pub(crate) async fn wait(&self, delay: Option<Duration>) {
        struct Waiting<'a>(&'a Stall);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.lock().waiting -= 1;
            }
        }
        if let Some(delay) = delay {
            self.lock().waiting += 1;
            let _waiting = Waiting(self);
            tokio::time::sleep(delay).await;
        }
    }
}

/// Starts an HTTP server with the routes `configure` adds on 127.0.0.1:`port` (0: any
/// free port); returns its base URL. The server runs on the current tokio runtime
/// until the test (or the `payhook-fakes` process) ends. Every request but the
/// `/_fake/…` ones waits in `stall` first.
pub fn serve<F>(port: u16, stall: Stall, configure: F) -> std::io::Result<String>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let base_url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    let server = HttpServer::new(move || {
        let stall = stall.clone();
        App::new()
            .app_data(web::Data::new(stall.clone()))
            .wrap_fn(move |req, service| {
                let api = !req.path().contains("/_fake/");
                let (delay, failure) = if api {
                    let mut state = stall.lock();
                    *state.calls.entry(req.path().to_owned()).or_default() += 1;
                    (state.delay, state.failures.pop_front())
                } else {
                    (None, None)
                };
                let stall = stall.clone();
                let answer = match failure {
                    None => futures_util::future::Either::Left(service.call(req)),
                    Some(status) => {
                        let code = actix_web::http::StatusCode::from_u16(status)
                            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
                        let body = serde_json::json!({ "error": { "message": format!("the fake answered {status} as told") } });
                        let response = req.into_response(actix_web::HttpResponse::build(code).json(body));
                        futures_util::future::Either::Right(std::future::ready(Ok(response)))
                    }
                };
                async move {
                    stall.wait(delay).await;
                    answer.await
                }
            })
            .route("/_fake/stall", web::post().to(set_stall))
            .route("/_fake/fail", web::post().to(set_failures))
            .route("/_fake/calls", web::get().to(calls))
            .configure(configure.clone())
    })
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
    tokio::spawn(server);
    Ok(base_url)
}

/// `POST /_fake/stall?ms=N`: later API requests wait N ms before their answer (0 stops).
async fn set_stall(
    stall: web::Data<Stall>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> actix_web::HttpResponse {
    let ms = query.get("ms").and_then(|ms| ms.parse::<u64>().ok()).unwrap_or(0);
    stall.set(Duration::from_millis(ms));
    actix_web::HttpResponse::Ok().json(serde_json::json!({ "stall_ms": ms }))
}

/// `POST /_fake/fail?status=503&times=N`: the next N API requests (1 by default) are
/// answered with that status.
async fn set_failures(
    stall: web::Data<Stall>,
    query: web::Query<std::collections::HashMap<String, String>>,
) -> actix_web::HttpResponse {
    let Some(status) = query
        .get("status")
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| (400..600).contains(s))
    else {
        return actix_web::HttpResponse::BadRequest().json(serde_json::json!({ "error": "status must be 400 to 599" }));
    };
    let times = query.get("times").and_then(|t| t.parse::<usize>().ok()).unwrap_or(1);
    stall.lock().failures.extend(std::iter::repeat_n(status, times));
    actix_web::HttpResponse::Ok().json(serde_json::json!({ "status": status, "times": times }))
}

/// `GET /_fake/calls`: API requests received so far, in all and by path.
async fn calls(stall: web::Data<Stall>) -> actix_web::HttpResponse {
    let state = stall.lock();
    let total: u64 = state.calls.values().sum();
    actix_web::HttpResponse::Ok().json(serde_json::json!({ "calls": total, "by_path": state.calls }))
}

/// Sends what a provider sends to payhook (a callback, a postback, a signed event)
/// and returns the answer's status and body, or why it could not be sent.
pub(crate) async fn deliver(url: &str, headers: &[(&str, String)], body: Option<Vec<u8>>) -> serde_json::Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let mut request = match &body {
        Some(_) => client.post(url).header("content-type", "application/json"),
        None => client.post(url),
    };
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            serde_json::json!({ "url": strip_token(url), "status": status, "body": body })
        }
        Err(e) => serde_json::json!({ "url": strip_token(url), "error": e.to_string() }),
    }
}

/// The URL without its `token` value, for answers that may end up in a terminal.
fn strip_token(url: &str) -> String {
    match url.split_once("token=") {
        Some((before, _)) => format!("{before}token=[redacted]"),
        None => url.to_owned(),
    }
}

/// A request a fake received, with its body as that fake decodes it (JSON, a form).
#[derive(Debug, Clone)]
pub struct Recorded<B> {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub idempotency_key: Option<String>,
    pub body: B,
    /// When it arrived (to check the rate a client calls at).
    pub at: std::time::Instant,
}

/// What every fake keeps: the requests it got, and the failures a test told it to give.
pub(crate) struct Journal<B> {
    requests: Vec<Recorded<B>>,
    failures: std::collections::VecDeque<u16>,
}

impl<B> Default for Journal<B> {
    fn default() -> Self {
        Self {
            requests: Vec::new(),
            failures: std::collections::VecDeque::new(),
        }
    }
}

impl<B: Clone> Journal<B> {
    /// Records a request. Returns its `Authorization` header, and the status to fail it
    /// with if the test asked for one.
    pub(crate) fn record(&mut self, req: &actix_web::HttpRequest, body: B) -> (Option<String>, Option<u16>) {
        let authorization = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.requests.push(Recorded {
            method: req.method().to_string(),
            path: req.path().to_owned(),
            authorization: authorization.clone(),
            idempotency_key: req
                .headers()
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body,
            at: std::time::Instant::now(),
        });
        // A status under 400 in the list lets that request through: `[200, 503]`
        // fails the second request from now.
        (authorization, self.failures.pop_front().filter(|status| *status >= 400))
    }

    pub(crate) fn requests(&self) -> Vec<Recorded<B>> {
        self.requests.clone()
    }

    pub(crate) fn fail_next(&mut self, statuses: &[u16]) {
        self.failures.extend(statuses);
    }
}

/// Whether a fake's `/_fake/.../{status}` sends the provider's webhook:
/// `?deliver=false` settles without it, as when the provider's webhook is lost.
#[derive(serde::Deserialize)]
pub(crate) struct Deliver {
    #[serde(default = "deliver_by_default")]
    pub deliver: bool,
}

fn deliver_by_default() -> bool {
    true
}
