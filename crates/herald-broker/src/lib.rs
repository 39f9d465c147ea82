//! herald-broker will be Herald's Kafka-wire-compatible broker on herald-log. Today it holds
//! the first pieces: the idempotent-producer state ([`producer_state`]), plain code that
//! takes `now` as an argument and does no IO, so it is tested directly against a reference
//! model; and request framing with ApiVersions ([`request`]), decoded with the
//! `kafka-protocol` crate behind hand-checked lengths.
//!
//! It refuses to own durability (that is herald-log's) or to read a clock; the network
//! server, topic registry and the remaining Kafka APIs arrive with issue 3.

pub mod producer_state;
pub mod request;
pub mod server;
pub mod topics;
