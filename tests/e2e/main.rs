//! payhook end to end: the real server on a random port against a fresh store per
//! test, every scenario on both stores. One test binary (each module a topic), so
//! actix, diesel and reqwest are linked once.

mod credentials;
mod hostile;
mod limits;
mod operations;
mod payments;
mod plans;
mod startup;
mod stripe_mirror;
mod stripe_webhooks;
mod subscriptions;
mod token_providers;
mod tracing_spans;
mod xendit_webhooks;
