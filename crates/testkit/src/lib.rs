//! Test support for payhook and for code that embeds it: the store contract suite
//! (one set of behaviours every store must show, run against each store), fake
//! provider APIs served over real HTTP on loopback (also as the `payhook-fakes`
//! binary, for `make demo` and trying payhook offline), and throw-away Postgres
//! databases for tests. A dev-dependency of the other crates, never a dependency of
//! the production binary; it depends on no store crate, so each store's tests can
//! use it without a cycle.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod contract;
mod contract_subscriptions;
pub mod fake_junglepay;
pub mod fake_qpay;
pub mod fake_stripe;
pub mod fake_xendit;
mod loopback;
pub mod postgres;
pub mod signing;
