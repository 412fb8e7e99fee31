//! Property tests of the provider crates' inbound code (`tests/providers.rs`): what
//! anyone on the internet can send reaches authentication and field extraction, so
//! no input may panic them, and a signature's time window must be exact at any
//! timestamp.
