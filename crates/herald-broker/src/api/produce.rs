//! Produce: append each partition's batch in request order, then acknowledge when the
//! durability policy allows (after the fsync that covers it, under `Durability::Fsync`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::text;
use crate::broker::{Broker, now_ms};
use crate::config::Durability;
use crate::error::ApiError;
use crate::partition::Partition;
use crate::request::{Call, FrameError, Reply};

/// A partition whose acknowledgement waits for the log to be durable up to an offset.
struct PendingSync {
    topic: usize,
    partition: usize,
    log: Arc<Partition>,
    durable_at: u64,
}

pub(crate) fn produce(broker: &Arc<Broker>, request: ProduceRequest, call: Call) -> Result<Reply, FrameError> {
    let now = now_ms();
    let fsync = broker.config().durability == Durability::Fsync;
    let mut response = ProduceResponse::default();
    let mut pending = Vec::new();
    for (t, topic) in request.topic_data.into_iter().enumerate() {
        let mut topic_result = TopicProduceResponse::default();
        for (p, data) in topic.partition_data.into_iter().enumerate() {
            let mut result = PartitionProduceResponse::default();
            result.index = data.index;
            result.log_append_time_ms = -1;
            let appended = if request.transactional_id.is_some() {
                Err(ApiError::new(ResponseError::TransactionalIdAuthorizationFailed, "transactions are not supported"))
            } else {
                // From v13 a topic is named by its id.
                let found = match call.version >= 13 {
                    true => broker.partition_for_produce_by_id(topic.topic_id, data.index),
                    false => broker.partition_for_produce(&topic.name.0, data.index),
                };
                found.and_then(|found| append(found, data.records, now))
            };
            match appended {
                Ok((partition, appended)) => {
                    result.base_offset = appended.base_offset as i64;
                    if call.version >= 5 {
                        result.log_start_offset = appended.log_start_offset as i64;
                    }
                    if fsync {
                        pending.push(PendingSync {
                            topic: t,
                            partition: p,
                            log: partition,
                            durable_at: appended.durable_at,
                        });
                    }
                }
                Err(error) => {
                    tracing::debug!(topic = %topic.name.0, partition = data.index, %error, "produce refused");
                    result.error_code = error.code;
                    if call.version >= 8 {
                        result.error_message = Some(text(error.message));
                    }
                    result.base_offset = -1;
                }
            }
            topic_result.partition_responses.push(result);
        }
        topic_result.name = topic.name;
        topic_result.topic_id = topic.topic_id; // written from v13 on
        response.responses.push(topic_result);
    }
    if !fsync {
        broker.notify_data();
    }
    let acks = request.acks;
    if pending.is_empty() {
        return Ok(Reply::Ready(if acks == 0 { None } else { Some(call.respond(&response)?) }));
    }
    let broker = Arc::clone(broker);
    let positions: Vec<(usize, usize)> = pending.iter().map(|w| (w.topic, w.partition)).collect();
    Ok(Reply::Pending(Box::pin(async move {
        let synced = tokio::task::spawn_blocking(move || {
            pending
                .into_iter()
                .filter_map(|wait| match wait.log.log().sync_through(wait.durable_at) {
                    Ok(()) => None,
                    Err(error) => Some((wait.topic, wait.partition, ApiError::from(error))),
                })
                .collect::<Vec<_>>()
        })
        .await;
        broker.notify_data();
        let failures = synced.unwrap_or_else(|panic| {
            let error = ApiError::new(ResponseError::KafkaStorageError, format!("fsync task failed: {panic}"));
            positions.into_iter().map(|(t, p)| (t, p, error.clone())).collect()
        });
        for (t, p, error) in failures {
            tracing::error!(%error, "fsync failed; the produce is not acknowledged");
            let result = &mut response.responses[t].partition_responses[p];
            result.error_code = error.code;
            if call.version >= 8 {
                result.error_message = Some(text(error.message));
            }
            result.base_offset = -1;
        }
        if acks == 0 { Ok(None) } else { call.respond(&response).map(Some) }
    })))
}

fn append(
    (partition, max_message_bytes): (Arc<Partition>, u32),
    records: Option<bytes::Bytes>,
    now: i64,
) -> Result<(Arc<Partition>, crate::partition::Appended), ApiError> {
    let records = records.ok_or_else(|| ApiError::new(ResponseError::CorruptMessage, "no records"))?;
    // Offsets are written into the batch header, so the batch needs its own buffer.
    let mut records = records.to_vec();
    let appended = partition.append(&mut records, max_message_bytes, now)?;
    Ok((partition, appended))
}
