//! Receiving: one webhook request in, one answer out. The HTTP handler reads the body
//! within its limit ([`http`]); the ingest service records, authenticates, parses and
//! classifies it ([`ingest`]); accepted events are stored many per transaction
//! ([`group_commit`]) and handed to this instance's worker; a forensic record the
//! store refuses goes to the fallback file ([`fallback_log`]); requests that fail
//! authentication are limited per address ([`flood`]).

pub mod fallback_log;
pub mod flood;
pub mod group_commit;
pub mod http;
pub mod ingest;
