//! payhook's application: the services (ingest, processing), the actix-web HTTP
//! adapter, the worker, configuration, and the wiring that only this crate does:
//! it is the one crate that knows every adapter.

pub mod bus;
pub mod cli;
pub mod clock;
pub mod fallback;
pub mod fan_out;
pub mod group_commit;
pub mod handoff;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod payments;
pub mod processing;
pub mod providers;
pub mod relay;
pub mod settings;
pub mod simulate;
pub mod startup;
pub mod telemetry;

pub use settings::Settings;
pub use startup::{Application, StartupError, Stores};

/// `docs/testing.md`, compiled and run as a doc test so its example stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/testing.md")]
pub struct TestingGuide;
