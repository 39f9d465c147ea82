//! herald-broker is Herald's single-node, Kafka-wire-compatible broker: every Kafka
//! client (librdkafka, kcat, the Java client) talks to it unchanged. Each topic
//! partition is a herald-log [`herald_log::Log`]; topics live in a durable registry; the
//! idempotent-producer rules are plain code ([`producer_state`]) tested against a model.
//!
//! It refuses replication, clustering and transactions: one node leads every partition,
//! and a transactional producer gets an error, not a half-implementation. Its key
//! choice is that an acknowledgement means what the durability setting says: under
//! [`Durability::Fsync`] (the default) a produce is answered only after an fsync covers
//! it, and consumers never see a record a power cut could take back.
//!
//! Layout: [`server`] (sockets, limits, ordering) → [`request`] (framing, dispatch) →
//! `api` (one handler per Kafka API) → [`broker::Broker`] (topics and partitions) →
//! [`partition`] (log plus producer state).

mod api;
pub mod broker;
pub mod config;
pub mod error;
pub mod group;
pub mod partition;
pub mod producer_state;
pub mod request;
mod running;
pub mod server;
pub mod topic_config;
pub mod topics;

pub use broker::{Broker, BrokerError};
pub use config::{BrokerConfig, Durability};
pub use running::{RunningBroker, StartError};
pub use server::{Server, ServerConfig};
