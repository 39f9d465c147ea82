//! herald-broker is Herald's single-node, Kafka-wire-compatible broker: every Kafka
//! client (librdkafka, kcat, the Java client) talks to it unchanged. Each topic
//! partition is a herald-log [`herald_log::Log`]; topics live in a durable registry; the
//! idempotent-producer rules are plain code (`producer_state`) tested against a model.
//!
//! It refuses replication, clustering and transactions: one node leads every partition,
//! and a transactional producer gets an error, not a half-implementation. Its key
//! choice is that an acknowledgement means what the durability setting says: under
//! [`Durability::Fsync`] (the default) a produce is answered only after an fsync covers
//! it, and consumers never see a record a power cut could take back.
//!
//! Layout: `server` (sockets, limits, ordering) → `request` (framing, dispatch) → `api`
//! (one handler per Kafka API) → `broker::Broker` (topics and partitions) → `partition`
//! (log plus producer state). The public surface is the settings, [`RunningBroker`] and,
//! for tests, fuzzing and in-process tools, [`internals`].

mod api;
mod broker;
mod codec;
mod compaction;
mod config;
mod error;
mod error_codes;
mod group;
mod new_records;
mod partition;
mod producer_state;
mod request;
mod running;
mod server;
mod topic_config;
mod topics;

pub use broker::BrokerError;
pub use config::{BrokerConfig, Durability};
pub use group::GroupConfig;
pub use producer_state::ProducerStateConfig;
pub use running::{RunningBroker, StartError};
pub use server::{CONNECTIONS, ServerConfig};

/// The broker's insides, for what runs in its process or looks into it: tests (group
/// state, committed offsets, lag), fuzzing (the request decoder) and in-process tools.
/// Not a stable interface: Kafka clients are the broker's users, through the wire.
pub mod internals {
    pub use crate::broker::{Broker, PartitionLag, now_ms};
    pub use crate::compaction::cleaner::{CleanError, Cleaner, PassOutcome};
    pub use crate::error::ApiError;
    pub use crate::group::{
        Committed, Group, GroupError, GroupListing, GroupManager, GroupState, OffsetStore, Pending,
    };
    pub use crate::new_records::{NewRecord, encode_batch, replay};
    pub use crate::partition::Partition;
    pub use crate::request::{FrameError, Reply, decode_request, handle_frame};
    pub use crate::server::Server;
    pub use crate::topics::TopicMeta;
}
