//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topic configs.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, alter_configs_response,
    incremental_alter_configs_response,
};
use kafka_protocol::protocol::StrBytes;

use super::text;
use crate::broker::Broker;
use crate::error::ApiError;
use crate::topic_config::{self, TOPIC_CONFIGS};
use crate::topics::TopicError;

/// Kafka's resource type for a topic.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type for a broker.
const RESOURCE_BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

pub(crate) fn describe_configs(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let defaults = broker.config().log_defaults();
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        // A null or empty key list asks for every config.
        let wanted = |name: &str| {
            resource.configuration_keys.as_ref().is_none_or(|keys| keys.is_empty() || keys.iter().any(|k| &**k == name))
        };
        match resource.resource_type {
            RESOURCE_TOPIC => match broker.topic(&resource.resource_name) {
                Some(meta) => {
                    for def in TOPIC_CONFIGS.iter().filter(|d| wanted(d.name)) {
                        let set = meta.configs.get(def.name).cloned();
                        let mut entry = DescribeConfigsResourceResult::default();
                        entry.name = text(def.name);
                        entry.config_source = if set.is_some() { SOURCE_TOPIC } else { SOURCE_DEFAULT };
                        entry.value = set.or_else(|| topic_config::default_value(&defaults, def.name)).map(text);
                        if version >= 3 {
                            entry.config_type = def.kind as i8;
                        }
                        if version >= 3 && request.include_documentation {
                            entry.documentation = Some(text(def.doc));
                        }
                        result.configs.push(entry);
                    }
                }
                None => {
                    result.error_code = ResponseError::UnknownTopicOrPartition.code();
                    result.error_message = Some(text(format!("unknown topic {:?}", &*resource.resource_name)));
                }
            },
            // Broker configs are not adjustable at runtime; describe none rather than fail
            // tools that list them.
            RESOURCE_BROKER => {}
            other => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = Some(text(format!("resource type {other} is not supported")));
            }
        }
        response.results.push(result);
    }
    response
}

pub(crate) fn alter_configs(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        // AlterConfigs replaces the whole set of overrides.
        let configs: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
            .collect();
        let outcome = topic_resource(resource.resource_type, &resource.resource_name)
            .and_then(|name| broker.set_topic_configs(name, configs, request.validate_only));
        let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err(error) = outcome {
            result.error_code = error.code;
            result.error_message = Some(text(error.message));
        }
        response.responses.push(result);
    }
    response
}

pub(crate) fn incremental_alter_configs(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let outcome = topic_resource(resource.resource_type, &resource.resource_name).and_then(|name| {
            let mut configs =
                broker.topic(name).ok_or_else(|| ApiError::from(TopicError::Unknown(name.to_string())))?.configs;
            for op in &resource.configs {
                apply_operation(&mut configs, &op.name, op.config_operation, op.value.as_deref())?;
            }
            broker.set_topic_configs(name, configs, request.validate_only)
        });
        let mut result = incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name;
        if let Err(error) = outcome {
            result.error_code = error.code;
            result.error_message = Some(text(error.message));
        }
        response.responses.push(result);
    }
    response
}

fn topic_resource(resource_type: i8, name: &StrBytes) -> Result<&str, ApiError> {
    if resource_type != RESOURCE_TOPIC {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("resource type {resource_type}: only topic configs can be changed"),
        ));
    }
    Ok(name)
}

/// Kafka's operations: 0 SET, 1 DELETE, 2 APPEND and 3 SUBTRACT (list configs only).
fn apply_operation(
    configs: &mut BTreeMap<String, String>,
    name: &str,
    operation: i8,
    value: Option<&str>,
) -> Result<(), ApiError> {
    let invalid = |message: String| ApiError::new(ResponseError::InvalidConfig, message);
    let def = topic_config::definition(name).ok_or_else(|| invalid(format!("unknown topic config {name:?}")))?;
    let is_list = def.kind == topic_config::ConfigType::List;
    match (operation, value) {
        (0, Some(value)) => {
            configs.insert(name.to_string(), value.to_string());
        }
        (1, _) => {
            configs.remove(name);
        }
        (2 | 3, Some(value)) if is_list => {
            let current = configs.get(name).map_or("delete", String::as_str);
            let mut items: Vec<String> =
                current.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            if operation == 2 {
                for item in value.split(',').map(str::trim) {
                    if !item.is_empty() && !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                }
            } else {
                let remove: Vec<&str> = value.split(',').map(str::trim).collect();
                items.retain(|item| !remove.contains(&item.as_str()));
            }
            configs.insert(name.to_string(), items.join(","));
        }
        (2 | 3, _) => return Err(invalid(format!("{name} is not a list; APPEND and SUBTRACT do not apply"))),
        (op, _) => return Err(invalid(format!("operation {op} on {name} needs a value or is unknown"))),
    }
    Ok(())
}
