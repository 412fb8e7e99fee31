//! Serving a fake provider API over real HTTP on 127.0.0.1 with a random port.

use actix_web::{web, App, HttpServer};

/// Starts an HTTP server with the routes `configure` adds on 127.0.0.1:`port` (0: any
/// free port); returns its base URL. The server runs on the current tokio runtime
/// until the test (or the `payhook-fakes` process) ends.
pub fn serve<F>(port: u16, configure: F) -> std::io::Result<String>
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    let base_url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(1)
        .disable_signals()
        .listen(listener)?
        .run();
    tokio::spawn(server);
    Ok(base_url)
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
        (authorization, self.failures.pop_front())
    }

    pub(crate) fn requests(&self) -> Vec<Recorded<B>> {
        self.requests.clone()
    }

    pub(crate) fn fail_next(&mut self, statuses: &[u16]) {
        self.failures.extend(statuses);
    }
}
