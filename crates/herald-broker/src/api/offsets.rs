//! ListOffsets (earliest, latest, by timestamp) and DeleteRecords.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::error::ApiError;

/// ListOffsets' special timestamps.
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// ListOffsets v7+.
const MAX_TIMESTAMP: i64 = -3;
/// ListOffsets v8+.
const EARLIEST_LOCAL: i64 = -4;
/// ListOffsets v9+.
const LATEST_TIERED: i64 = -5;

pub(crate) fn list_offsets(broker: &Broker, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    for topic in request.topics {
        let mut topic_result = ListOffsetsTopicResponse::default();
        for asked in &topic.partitions {
            let mut result = ListOffsetsPartitionResponse::default();
            result.partition_index = asked.partition_index;
            match lookup(broker, &topic.name.0, asked.partition_index, asked.timestamp) {
                Ok((offset, timestamp)) => {
                    result.offset = offset;
                    result.timestamp = timestamp;
                }
                Err(error) => {
                    result.error_code = error.code;
                    result.offset = -1;
                    result.timestamp = -1;
                }
            }
            topic_result.partitions.push(result);
        }
        topic_result.name = topic.name;
        response.topics.push(topic_result);
    }
    response
}

/// `(offset, timestamp)` for one partition; `(-1, -1)` when no record is that new.
fn lookup(broker: &Broker, topic: &str, partition: i32, timestamp: i64) -> Result<(i64, i64), ApiError> {
    let partition_log =
        broker.partition(topic, partition).ok_or_else(|| ApiError::unknown_partition(topic, partition))?;
    let log = partition_log.log();
    match timestamp {
        LATEST => Ok((log.high_watermark() as i64, -1)),
        // Without tiered storage the earliest local offset is the earliest.
        EARLIEST | EARLIEST_LOCAL => Ok((log.log_start_offset() as i64, -1)),
        // The first record with the largest timestamp (KIP-734).
        MAX_TIMESTAMP => match log.max_timestamp() {
            Some(max) => {
                Ok(log.offset_for_timestamp(max)?.map_or((-1, -1), |found| (found.offset as i64, found.timestamp)))
            }
            None => Ok((-1, -1)),
        },
        // Nothing is tiered (KIP-1005): Kafka's answer without remote storage.
        LATEST_TIERED => Ok((-1, -1)),
        t if t >= 0 => {
            Ok(log.offset_for_timestamp(t)?.map_or((-1, -1), |found| (found.offset as i64, found.timestamp)))
        }
        other => Err(ApiError::new(ResponseError::InvalidRequest, format!("timestamp {other} is not supported"))),
    }
}

pub(crate) fn delete_records(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic in request.topics {
        let mut topic_result = DeleteRecordsTopicResult::default();
        for asked in &topic.partitions {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = asked.partition_index;
            let outcome = broker
                .partition(&topic.name.0, asked.partition_index)
                .ok_or_else(|| ApiError::unknown_partition(&topic.name.0, asked.partition_index))
                .and_then(|p| {
                    let log = p.log();
                    // -1 means "up to the high watermark".
                    let offset = if asked.offset == -1 { log.high_watermark() } else { checked_offset(asked.offset)? };
                    Ok(log.delete_records_before(offset)?)
                });
            match outcome {
                Ok(low_watermark) => result.low_watermark = low_watermark as i64,
                Err(error) => {
                    result.error_code = error.code;
                    result.low_watermark = -1;
                }
            }
            topic_result.partitions.push(result);
        }
        topic_result.name = topic.name;
        response.topics.push(topic_result);
    }
    response
}

fn checked_offset(offset: i64) -> Result<u64, ApiError> {
    u64::try_from(offset)
        .map_err(|_| ApiError::new(ResponseError::OffsetOutOfRange, format!("offset {offset} is negative")))
}
