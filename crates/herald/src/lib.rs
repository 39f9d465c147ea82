//! herald is the half of Herald that services link: typed domain events in the seeds'
//! standard envelope ([`Envelope`], [`Event`], [`event!`]), a [`Publisher`] for any
//! Kafka-compatible broker, and a [`consumer::Consumer`] runtime (typed handlers routed by
//! the `event-type` header, per-key order with parallelism across keys, retries with
//! backoff, dead letters, commits only past finished work, correlation and causation ids
//! carried into what handlers publish) with idempotent [`inbox`]es in memory, SQLite or
//! PostgreSQL.
//!
//! It refuses to speak anything but the Kafka protocol: it reaches brokers only through
//! rdkafka, so the same service runs against `herald serve`, Apache Kafka or Redpanda. Its
//! key choice is safety by default: an idempotent producer with acks=all, names checked at
//! compile time, and a size limit on every envelope.

/// Builder methods for settings structs: `name(value) -> Self` per field, taking the
/// given parameter type (`impl Into<String>` for text).
macro_rules! setters {
    ($($(#[$doc:meta])* $field:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            #[allow(clippy::useless_conversion)]
            pub fn $field(mut self, value: $ty) -> Self {
                self.$field = value.into();
                self
            }
        )*
    };
}

pub mod backoff;
pub mod consumer;
pub mod envelope;
pub mod event;
pub mod inbox;
pub mod names;
pub mod outbox;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod projection;
pub mod publisher;
pub mod registry;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod saga;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod schema;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod store;
mod sync;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod time;
pub mod upcast;

pub use envelope::{Envelope, EnvelopeError};

/// For [`events!`]: the user's crate need not depend on serde_json itself.
#[doc(hidden)]
pub use serde_json as __serde_json;

/// The README's code blocks, compiled as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
pub use event::Event;
pub use publisher::{PublishError, Published, Publisher, PublisherConfig};
