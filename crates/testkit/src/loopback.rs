//! Serving a fake provider API over real HTTP on 127.0.0.1 with a random port.

use actix_web::{web, App, HttpServer};

/// Starts an HTTP server with the routes `configure` adds; returns its base URL. The
/// server runs on the current tokio runtime until the test ends.
pub fn serve<F>(configure: F) -> String
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let server = HttpServer::new(move || App::new().configure(configure.clone()))
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
    tokio::spawn(server);
    base_url
}
