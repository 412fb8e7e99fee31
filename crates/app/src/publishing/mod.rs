//! Publishing: the outbox relay delivers each domain event to every subscriber
//! ([`relay`]): this instance's in-process bus ([`bus`]), which feeds the browsers'
//! live status streams ([`status_stream`]); other instances, through the store's
//! fan-out ([`instances`]); and the merchant's outgoing webhook
//! (`payhook-outgoing-webhook`).

pub mod bus;
pub mod instances;
pub mod relay;
pub mod status_stream;
