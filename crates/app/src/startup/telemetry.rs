//! Logging set-up. Filter with `RUST_LOG` (default `info`); `PAYHOOK_LOG_FORMAT=json`
//! for one JSON object per line. No handler logs headers or bodies, so no secret
//! reaches the log.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("PAYHOOK_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // Colours only for a person at a terminal, never into files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests starting several apps) is harmless: the first wins.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
