//! `/api/v1/topics`: list, create, describe, alter, delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_broker::internals::Broker;
use serde::{Deserialize, Serialize};

use crate::auth::{Admin, Read};
use crate::problem::{Json, Path, Problem};
use crate::server::{App, blocking};

/// A topic in the list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    name: String,
    partitions: u32,
    messages: i64,
    size_bytes: u64,
}

/// A partition of a described topic.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PartitionView {
    pub(crate) partition: i32,
    pub(crate) log_start_offset: i64,
    pub(crate) high_watermark: i64,
    pub(crate) size_bytes: u64,
}

/// Every partition's bounds and size (empty if the topic is gone).
pub(crate) fn partitions(broker: &Broker, topic: &str, count: u32) -> Vec<PartitionView> {
    (0..count as i32)
        .filter_map(|p| {
            let partition = broker.partition(topic, p)?;
            let log = partition.log();
            Some(PartitionView {
                partition: p,
                log_start_offset: log.log_start_offset() as i64,
                high_watermark: log.high_watermark() as i64,
                size_bytes: log.size_bytes(),
            })
        })
        .collect()
}

pub(crate) async fn list(_: Read, State(app): State<Arc<App>>) -> Response {
    let topics: Vec<Listed> = app
        .broker
        .topics()
        .into_iter()
        .map(|(name, meta)| {
            let parts = partitions(&app.broker, &name, meta.partitions);
            Listed {
                partitions: meta.partitions,
                messages: parts.iter().map(|p| p.high_watermark - p.log_start_offset).sum(),
                size_bytes: parts.iter().map(|p| p.size_bytes).sum(),
                name,
            }
        })
        .collect();
    axum::Json(serde_json::json!({ "topics": topics })).into_response()
}

/// A topic to create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTopic {
    name: String,
    partitions: Option<u32>,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

pub(crate) async fn create(
    _: Admin,
    State(app): State<Arc<App>>,
    Json(new): Json<NewTopic>,
) -> Result<Response, Problem> {
    let broker = Arc::clone(&app.broker);
    let name = new.name.clone();
    blocking(move || broker.create_topic(&new.name, new.partitions, new.configs, false).map_err(Problem::from)).await?;
    Ok((StatusCode::CREATED, describe_json(&app.broker, &name)?).into_response())
}

pub(crate) async fn describe(
    _: Read,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
) -> Result<Response, Problem> {
    Ok(describe_json(&app.broker, &topic)?.into_response())
}

fn describe_json(broker: &Broker, topic: &str) -> Result<axum::Json<serde_json::Value>, Problem> {
    let meta = broker.topic(topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
    Ok(axum::Json(serde_json::json!({
        "name": topic,
        "partitions": partitions(broker, topic, meta.partitions),
        "configs": meta.configs,
    })))
}

/// New config overrides (they replace the old ones).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Alter {
    configs: BTreeMap<String, String>,
}

pub(crate) async fn alter(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    Json(alter): Json<Alter>,
) -> Result<Response, Problem> {
    let broker = Arc::clone(&app.broker);
    let name = topic.clone();
    blocking(move || broker.set_topic_configs(&name, alter.configs, false).map_err(Problem::from)).await?;
    Ok(describe_json(&app.broker, &topic)?.into_response())
}

pub(crate) async fn delete(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
) -> Result<Response, Problem> {
    let broker = Arc::clone(&app.broker);
    blocking(move || broker.delete_topic(&topic).map_err(Problem::from)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
