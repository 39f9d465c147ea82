//! Topic administration (CreateTopics, DeleteTopics, CreatePartitions), DescribeCluster
//! and InitProducerId.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{
    BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterResponse, InitProducerIdRequest, InitProducerIdResponse,
    ProducerId,
};

use uuid::Uuid;

use super::text;
use crate::broker::Broker;
use crate::error::ApiError;
use crate::topic_config;
use crate::topics::TopicMeta;

/// Kafka's config source code for a default value.
const SOURCE_DEFAULT: i8 = 5;
/// Kafka's config source code for a topic override.
const SOURCE_TOPIC: i8 = 1;

pub(crate) fn create_topics(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    for topic in request.topics {
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        match create_one(broker, &topic, request.validate_only) {
            Ok(meta) if version >= 5 => {
                result.topic_id = meta.id; // written from v7 on
                result.num_partitions = meta.partitions as i32;
                result.replication_factor = 1;
                result.configs = Some(described_configs(broker, &topic));
            }
            Ok(_) => {}
            Err(error) => {
                tracing::info!(topic = %topic.name.0, %error, "create topic refused");
                result.error_code = error.code;
                result.error_message = Some(text(error.message));
            }
        }
        response.topics.push(result);
    }
    response
}

fn create_one(broker: &Broker, topic: &CreatableTopic, validate_only: bool) -> Result<TopicMeta, ApiError> {
    if topic.replication_factor > 1 {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!("replication factor {}: this broker is a single node; use 1 or -1", topic.replication_factor),
        ));
    }
    let partitions = if !topic.assignments.is_empty() {
        Some(topic.assignments.len() as u32)
    } else if topic.num_partitions == -1 {
        None
    } else {
        Some(u32::try_from(topic.num_partitions).map_err(|_| {
            ApiError::new(ResponseError::InvalidPartitions, format!("{} partitions", topic.num_partitions))
        })?)
    };
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else { continue };
        configs.insert(config.name.to_string(), value.to_string());
    }
    broker.create_topic(&topic.name.0, partitions, configs, validate_only)
}

fn described_configs(broker: &Broker, topic: &CreatableTopic) -> Vec<CreatableTopicConfigs> {
    let defaults = broker.config().log_defaults();
    topic_config::TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let set = topic.configs.iter().find(|c| &*c.name == def.name).and_then(|c| c.value.clone());
            let mut config = CreatableTopicConfigs::default();
            config.name = text(def.name);
            config.config_source = if set.is_some() { SOURCE_TOPIC } else { SOURCE_DEFAULT };
            config.value = set.or_else(|| topic_config::default_value(&defaults, def.name).map(text));
            config
        })
        .collect()
}

pub(crate) fn delete_topics(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let asked: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request.topics.into_iter().map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id)).collect()
    } else {
        request.topic_names.into_iter().map(|n| (Some(n.0.to_string()), Uuid::nil())).collect()
    };
    let mut response = DeleteTopicsResponse::default();
    for (name, id) in asked {
        let mut result = DeletableTopicResult::default();
        let outcome = match (&name, id.is_nil()) {
            (Some(name), true) => broker.delete_topic(name).map(|()| name.clone()),
            (None, false) => broker.delete_topic_by_id(id),
            _ => Err(ApiError::new(ResponseError::InvalidRequest, "name a topic by its name or by its id, not both")),
        };
        match outcome {
            Ok(deleted) => result.name = Some(super::topic_name(&deleted)),
            Err(error) => {
                result.error_code = error.code;
                if version >= 5 {
                    result.error_message = Some(text(error.message));
                }
                result.name = name.map(|n| super::topic_name(&n));
            }
        }
        result.topic_id = id; // written from v6 on
        response.responses.push(result);
    }
    response
}

pub(crate) fn create_partitions(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        let outcome = u32::try_from(topic.count)
            .map_err(|_| ApiError::new(ResponseError::InvalidPartitions, format!("{} partitions", topic.count)))
            .and_then(|count| broker.create_partitions(&topic.name.0, count, request.validate_only));
        if let Err(error) = outcome {
            result.error_code = error.code;
            result.error_message = Some(text(error.message));
        }
        result.name = topic.name;
        response.results.push(result);
    }
    response
}

pub(crate) fn describe_cluster(broker: &Broker) -> DescribeClusterResponse {
    let config = broker.config();
    let mut me = DescribeClusterBroker::default();
    me.broker_id = BrokerId(config.node_id);
    me.host = text(config.advertised_host.clone());
    me.port = i32::from(config.advertised_port);
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = text(broker.cluster_id());
    response.controller_id = BrokerId(config.node_id);
    response.brokers = vec![me];
    response
}

pub(crate) fn init_producer_id(broker: &Broker, request: InitProducerIdRequest) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    if request.transactional_id.is_some() {
        tracing::info!("InitProducerId with a transactional id refused: transactions are not supported");
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        response.producer_id = ProducerId(-1);
        response.producer_epoch = -1;
        return response;
    }
    let current = (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
    match broker.init_producer_id(current) {
        Ok((id, epoch)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = epoch;
        }
        Err(error) => {
            tracing::error!(%error, "could not reserve producer ids");
            response.error_code = error.code;
            response.producer_id = ProducerId(-1);
            response.producer_epoch = -1;
        }
    }
    response
}
