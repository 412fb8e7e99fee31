//! Processing: the worker applies stored events to their payments through the
//! domain's state machine ([`worker`]). Events reach it in-process from the ingest
//! path, or by claiming due inbox rows; [`handoff`] is the bounded in-process
//! channel both the ingest path (to the worker) and the worker (to the relay) use;
//! [`replay`] makes stored events due again in bulk; [`mirror_fill`] fills the Stripe
//! mirror from Stripe's API; [`subscribing`] opens subscriptions and keeps them where
//! their payments and the calendar say.

pub mod handoff;
pub mod mirror_fill;
pub mod reconcile;
pub mod replay;
pub mod subscribing;
pub mod worker;
