//! Metadata: this broker leads every partition; unknown topics are created when allowed.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{text, topic_name};
use crate::broker::Broker;
use crate::topics::TopicMeta;

pub(crate) fn metadata(broker: &Broker, request: MetadataRequest, version: i16) -> MetadataResponse {
    let config = broker.config();
    let node = BrokerId(config.node_id);
    // v0 asks for every topic with an empty list; v1+ with a null one.
    let requested: Option<Vec<String>> = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => {
            Some(topics.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect())
        }
        _ => None,
    };
    // Before v4 there is no flag and Kafka auto-creates whenever the broker allows it.
    let may_create = config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let topics = match requested {
        None => broker.topics().iter().map(|(name, meta)| topic_entry(node, version, name, Some(meta))).collect(),
        Some(names) => names
            .iter()
            .map(|name| match broker.topic(name) {
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

fn topic_entry(node: BrokerId, version: i16, name: &str, meta: Option<&TopicMeta>) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(topic_name(name));
    let Some(meta) = meta else {
        topic.error_code = ResponseError::UnknownTopicOrPartition.code();
        return topic;
    };
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
