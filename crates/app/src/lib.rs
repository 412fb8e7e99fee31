//! payhook's application: the services (ingest, processing), the actix-web HTTP
//! adapter, the worker, configuration, and the wiring that only this crate does:
//! it is the one crate that knows every adapter.

pub mod cli;
pub mod clock;
pub mod http;
pub mod ingest;
pub mod processing;
pub mod settings;
pub mod startup;
pub mod telemetry;

pub use settings::Settings;
pub use startup::{Application, StartupError, Stores};
