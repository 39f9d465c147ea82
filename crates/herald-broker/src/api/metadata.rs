//! Metadata: this broker leads every partition; unknown topics are created when allowed.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use uuid::Uuid;

use super::{text, topic_name};
use crate::broker::Broker;
use crate::topics::TopicMeta;

pub(crate) fn metadata(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let config = broker.config();
    let node = BrokerId(config.node_id);
    // v0 asks for every topic with an empty list; v1+ with a null one. From v10 a topic
    // may be asked for by id alone.
    let requested: Option<Vec<Asked>> = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(
            topics
                .into_iter()
                .filter_map(|t| match t.name {
                    _ if !t.topic_id.is_nil() => Some(Asked::Id(t.topic_id)),
                    Some(name) => Some(Asked::Name(name.0.to_string())),
                    None => None,
                })
                .collect(),
        ),
        _ => None,
    };
    // Before v4 there is no flag and Kafka auto-creates whenever the broker allows it.
    let may_create = config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match requested {
        None => broker.topics().iter().map(|(name, meta)| topic_entry(node, version, name, Some(meta))).collect(),
        Some(asked) => asked
            .iter()
            .map(|asked| match asked {
                Asked::Name(name) => named(broker, node, version, name, may_create),
                Asked::Id(id) => match broker.topic_name(*id) {
                    Some(name) => topic_entry(node, version, &name, broker.topic(&name).as_ref()),
                    None => unknown_id(*id),
                },
            })
            .collect(),
    };

    let mut me = MetadataResponseBroker::default();
    me.node_id = node;
    me.host = text(config.advertised_host.clone());
    me.port = i32::from(config.advertised_port);
    let mut response = MetadataResponse::default();
    response.brokers = vec![me];
    // Fields a version lacks must keep their defaults, or the encoder refuses them.
    if version >= 2 {
        response.cluster_id = Some(text(broker.cluster_id()));
    }
    if version >= 1 {
        response.controller_id = node;
    }
    response.topics = topics;
    response
}

/// A topic in the request.
enum Asked {
    Name(String),
    Id(Uuid),
}

/// The entry of a topic asked for by name, created first when allowed.
fn named(broker: &Broker, node: BrokerId, version: i16, name: &str, may_create: bool) -> MetadataResponseTopic {
    match broker.topic(name) {
        Some(meta) => topic_entry(node, version, name, Some(&meta)),
        None if may_create => match broker.create_topic(name, None, Default::default(), false) {
            Ok(meta) => topic_entry(node, version, name, Some(&meta)),
            Err(error) if error.code == ResponseError::TopicAlreadyExists.code() => {
                topic_entry(node, version, name, broker.topic(name).as_ref())
            }
            Err(error) => {
                tracing::info!(topic = name, %error, "auto-create refused");
                with_error(topic_entry(node, version, name, None), error.code)
            }
        },
        None => topic_entry(node, version, name, None),
    }
}

/// The entry of an id no topic has: no name, the id echoed (never auto-created).
fn unknown_id(id: Uuid) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.topic_id = id;
    topic.error_code = ResponseError::UnknownTopicId.code();
    topic
}

fn topic_entry(node: BrokerId, version: i16, name: &str, meta: Option<&TopicMeta>) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(topic_name(name));
    let Some(meta) = meta else {
        topic.error_code = ResponseError::UnknownTopicOrPartition.code();
        return topic;
    };
    topic.topic_id = meta.id; // written from v10 on
    topic.partitions = (0..meta.partitions as i32)
        .map(|index| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index;
            partition.leader_id = node;
            if version >= 7 {
                partition.leader_epoch = 0;
            }
            partition.replica_nodes = vec![node];
            partition.isr_nodes = vec![node];
            partition
        })
        .collect();
    topic
}

fn with_error(mut topic: MetadataResponseTopic, code: i16) -> MetadataResponseTopic {
    topic.error_code = code;
    topic
}
