//! payhook-junglepay's integration tests, in one test binary (each module a topic).

mod client;
mod conformance;
