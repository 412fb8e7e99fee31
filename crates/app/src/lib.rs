//! payhook's application, grouped by the stages one webhook goes through:
//! [`receiving`] (HTTP in, forensic log, authentication, group commit), [`processing`]
//! (the worker and its state machine applications), [`publishing`] (outbox relay,
//! in-process bus, status streams, other instances), and the merchant/admin
//! [`api`]; [`retention`] deletes what has grown old. [`startup`] wires them from [`settings`], with every provider registered
//! in one place ([`startup::providers`]); [`cli`] is the `payhook` command. The one
//! crate that knows every adapter.

pub mod api;
pub mod cli;
pub mod processing;
pub mod publishing;
pub mod receiving;
pub mod retention;
pub mod settings;
pub mod startup;

pub use settings::Settings;
pub use startup::{Application, StartupError, Stores};

/// `docs/testing.md`, compiled and run as a doc test so its example stays true.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/testing.md")]
pub struct TestingGuide;
