//! payhook-stripe's integration tests, in one test binary (each module a topic).

mod conformance;
mod gateway;
