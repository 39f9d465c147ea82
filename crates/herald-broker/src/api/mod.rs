//! The Kafka API handlers: each takes the decoded request and returns the response to
//! encode. Per-topic and per-partition failures become error codes in the response; a
//! handler never fails the whole connection.

mod admin;
mod configs;
mod consumer_groups;
mod describe;
mod fetch;
mod groups;
mod metadata;
mod offsets;
mod produce;

pub(crate) use admin::{create_partitions, create_topics, delete_topics, describe_cluster, init_producer_id};
pub(crate) use configs::{alter_configs, describe_configs, incremental_alter_configs};
pub(crate) use consumer_groups::{consumer_group_describe, consumer_group_heartbeat};
pub(crate) use describe::{describe_log_dirs, describe_producers, describe_topic_partitions, offset_for_leader_epoch};
pub(crate) use fetch::fetch;
pub(crate) use groups::{
    delete_groups, describe_groups, find_coordinator, heartbeat, join_group, leave_group, list_groups, offset_commit,
    offset_delete, offset_fetch, sync_group,
};
pub(crate) use metadata::metadata;
pub(crate) use offsets::{delete_records, list_offsets};
pub(crate) use produce::produce;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// A `kafka-protocol` string from a Rust one.
fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

/// A topic name for a response.
fn topic_name(s: &str) -> TopicName {
    TopicName(text(s))
}
