//! payhook-postgres's integration tests, in one test binary (each module a topic).

mod admission;
mod contract;
mod fan_out;
