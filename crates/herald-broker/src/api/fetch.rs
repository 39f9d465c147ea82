//! Fetch: whole batches from each partition under the partition and response byte
//! limits, long-polling up to `max_wait_ms` until `min_bytes` are available.
//!
//! Fetch sessions (KIP-227) are answered as full fetches: the response always carries
//! session id 0, which tells the client to send every partition each time.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use tokio::time::Instant;

use crate::broker::Broker;
use crate::error::ApiError;
use crate::partition::Partition;
use crate::request::{Call, FrameError, Reply};

pub(crate) fn fetch(broker: &Arc<Broker>, request: FetchRequest, call: Call) -> Result<Reply, FrameError> {
    if request.session_id != 0 {
        // We never hand out session ids, so a client cannot hold a valid one.
        let mut response = FetchResponse::default();
        response.error_code = ResponseError::FetchSessionIdNotFound.code();
        return Ok(Reply::Ready(Some(call.respond(&response)?)));
    }
    // Subscribe before reading, so data that lands between the read and the wait wakes us.
    let mut changes = broker.subscribe_data();
    let (response, bytes, failed) = read_all(broker, &request, call.version);
    let min_bytes = request.min_bytes.max(1) as usize;
    let wait_ms = u64::try_from(request.max_wait_ms).unwrap_or(0);
    let wait = Duration::from_millis(wait_ms).min(broker.config().fetch_wait_max);
    if bytes >= min_bytes || failed || wait.is_zero() || broker.is_stopping() {
        return Ok(Reply::Ready(Some(call.respond(&response)?)));
    }
    let broker = Arc::clone(broker);
    let request = Arc::new(request);
    Ok(Reply::Pending(Box::pin(async move {
        let deadline = Instant::now() + wait;
        let mut response = response;
        loop {
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => break,
            }
            changes.borrow_and_update();
            if broker.is_stopping() {
                break;
            }
            let (broker, request) = (Arc::clone(&broker), Arc::clone(&request));
            let read = tokio::task::spawn_blocking(move || read_all(&broker, &request, call.version)).await;
            let Ok((latest, bytes, failed)) = read else { break };
            response = latest;
            if bytes >= min_bytes || failed {
                break;
            }
        }
        call.respond(&response).map(Some)
    })))
}

/// Reads every requested partition; returns the response, the record bytes in it, and
/// whether any partition failed (which ends a long poll at once, as in Kafka).
fn read_all(broker: &Broker, request: &FetchRequest, version: i16) -> (FetchResponse, usize, bool) {
    let mut response = FetchResponse::default();
    let response_max = usize::try_from(request.max_bytes).unwrap_or(0).max(1);
    let mut total = 0usize;
    let mut failed = false;
    for topic in &request.topics {
        let mut topic_result = FetchableTopicResponse::default();
        topic_result.topic = topic.topic.clone();
        topic_result.topic_id = topic.topic_id;
        for asked in &topic.partitions {
            let mut result = PartitionData::default();
            result.partition_index = asked.partition;
            let partition_max = usize::try_from(asked.partition_max_bytes).unwrap_or(0);
            let limit = partition_max.min(response_max.saturating_sub(total));
            // From v13 a topic is named by its id; the name and partition are looked up
            // together, so a topic created again under the same name never answers for it.
            let found = match version >= 13 {
                true => broker.partition_by_id(topic.topic_id, asked.partition),
                false => broker
                    .partition(&topic.topic.0, asked.partition)
                    .ok_or_else(|| ApiError::unknown_partition(&topic.topic.0, asked.partition)),
            };
            match read_partition(found, asked.fetch_offset, limit, total == 0) {
                Ok((records, high_watermark, log_start)) => {
                    total += records.len();
                    result.high_watermark = high_watermark;
                    result.last_stable_offset = high_watermark;
                    if version >= 5 {
                        result.log_start_offset = log_start;
                    }
                    result.records = Some(records);
                }
                Err((error, high_watermark, log_start)) => {
                    failed = true;
                    result.error_code = error.code;
                    result.high_watermark = high_watermark;
                    result.last_stable_offset = high_watermark;
                    if version >= 5 {
                        result.log_start_offset = log_start;
                    }
                    result.records = Some(Bytes::new());
                }
            }
            topic_result.partitions.push(result);
        }
        response.responses.push(topic_result);
    }
    (response, total, failed)
}

type PartitionRead = Result<(Bytes, i64, i64), (ApiError, i64, i64)>;

/// One partition's batches from `offset`, at most `limit` bytes; when `first` (nothing
/// read yet in this response) at least one whole batch, so a large batch cannot stall
/// the consumer.
fn read_partition(found: Result<Arc<Partition>, ApiError>, offset: i64, limit: usize, first: bool) -> PartitionRead {
    let found = found.map_err(|error| (error, -1, -1))?;
    let log = found.log();
    let marks = || (log.high_watermark() as i64, log.log_start_offset() as i64);
    let Ok(offset) = u64::try_from(offset) else {
        let (hw, start) = marks();
        let error = ApiError::new(ResponseError::OffsetOutOfRange, format!("offset {offset} is negative"));
        return Err((error, hw, start));
    };
    if limit == 0 && !first {
        let (hw, start) = marks();
        return Ok((Bytes::new(), hw, start));
    }
    match log.read(offset, u32::try_from(limit).unwrap_or(u32::MAX).max(1)) {
        Ok(read) => {
            let bytes = if read.bytes.len() > limit && !first { Bytes::new() } else { Bytes::from(read.bytes) };
            Ok((bytes, read.high_watermark as i64, read.log_start_offset as i64))
        }
        Err(error) => {
            let (hw, start) = marks();
            Err((ApiError::from(error), hw, start))
        }
    }
}
