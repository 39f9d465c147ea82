//! The describe APIs tools use: DescribeTopicPartitions (KIP-966, with topic ids),
//! DescribeLogDirs (topic sizes in Kafka UIs), OffsetForLeaderEpoch (clients validating
//! their position after a leader change; this broker's leader epoch is always 0) and
//! DescribeProducers (the idempotent producers a partition remembers).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{
    BrokerId, DescribeLogDirsRequest, DescribeLogDirsResponse, DescribeProducersRequest, DescribeProducersResponse,
    DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProducerId,
};

use super::{text, topic_name};
use crate::broker::Broker;

/// Partitions in one DescribeTopicPartitions answer unless the client asks for fewer.
const PARTITIONS_PER_ANSWER_MAX: i32 = 2_000;

pub(crate) fn describe_topic_partitions(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let node = BrokerId(broker.config().node_id);
    let all = broker.topics();
    // An empty list asks for every topic; names come back in order, as Kafka's do.
    let mut names: Vec<String> = match request.topics.is_empty() {
        true => all.keys().cloned().collect(),
        false => request.topics.iter().map(|t| t.name.0.to_string()).collect(),
    };
    names.sort();
    names.dedup();
    let (start_topic, start_partition) = match &request.cursor {
        Some(cursor) => (cursor.topic_name.0.to_string(), cursor.partition_index.max(0)),
        None => (String::new(), 0),
    };
    let mut left = request.response_partition_limit.clamp(1, PARTITIONS_PER_ANSWER_MAX);
    let mut response = DescribeTopicPartitionsResponse::default();
    for name in names.into_iter().filter(|n| *n >= start_topic) {
        let mut topic = DescribeTopicPartitionsResponseTopic::default();
        topic.name = Some(topic_name(&name));
        let Some(meta) = all.get(&name) else {
            topic.error_code = ResponseError::UnknownTopicOrPartition.code();
            response.topics.push(topic);
            continue;
        };
        topic.topic_id = meta.id;
        let first = if name == start_topic { start_partition } else { 0 };
        for index in first..meta.partitions as i32 {
            if left == 0 {
                let next = Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(index);
                response.next_cursor = Some(next);
                break;
            }
            left -= 1;
            let mut partition = DescribeTopicPartitionsResponsePartition::default();
            partition.partition_index = index;
            partition.leader_id = node;
            partition.replica_nodes = vec![node];
            partition.isr_nodes = vec![node];
            topic.partitions.push(partition);
        }
        response.topics.push(topic);
        if response.next_cursor.is_some() {
            break;
        }
    }
    response
}

pub(crate) fn describe_log_dirs(broker: &Broker, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let all = broker.topics();
    // A null list asks for every partition.
    let wanted: Vec<(String, Vec<i32>)> = match request.topics {
        None => all.iter().map(|(name, meta)| (name.clone(), (0..meta.partitions as i32).collect())).collect(),
        Some(topics) => topics.into_iter().map(|t| (t.topic.0.to_string(), t.partitions)).collect(),
    };
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = text(broker.config().data_dir.display().to_string());
    // Not measured: Kafka's "unknown".
    result.total_bytes = -1;
    result.usable_bytes = -1;
    for (name, partitions) in wanted {
        let mut topic = DescribeLogDirsTopic::default();
        topic.name = topic_name(&name);
        // Partitions this broker does not hold are left out, as Kafka leaves them out.
        for index in partitions {
            let Some(found) = broker.partition(&name, index) else { continue };
            let mut partition = DescribeLogDirsPartition::default();
            partition.partition_index = index;
            partition.partition_size = found.log().size_bytes() as i64;
            topic.partitions.push(partition);
        }
        if !topic.partitions.is_empty() {
            result.topics.push(topic);
        }
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    response
}

pub(crate) fn offset_for_leader_epoch(
    broker: &Broker,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for asked in request.topics {
        let mut topic = OffsetForLeaderTopicResult::default();
        for p in &asked.partitions {
            let end = broker.partition(&asked.topic.0, p.partition).map(|found| found.log().high_watermark() as i64);
            topic.partitions.push(epoch_end(p.partition, p.current_leader_epoch, p.leader_epoch, end));
        }
        topic.topic = asked.topic;
        response.topics.push(topic);
    }
    response
}

/// The end of `leader_epoch` on a partition whose only epoch is 0 and whose log ends at
/// `end` (`None`: no such partition). A client that believes in a later epoch than 0 is
/// ahead of this broker (UNKNOWN_LEADER_EPOCH); asking for an epoch after 0 gets Kafka's
/// "undefined" answer, -1 and -1.
fn epoch_end(partition: i32, current_leader_epoch: i32, leader_epoch: i32, end: Option<i64>) -> EpochEndOffset {
    let mut answer = EpochEndOffset::default();
    answer.partition = partition;
    answer.leader_epoch = -1;
    answer.end_offset = -1;
    match end {
        None => answer.error_code = ResponseError::UnknownTopicOrPartition.code(),
        Some(_) if current_leader_epoch > 0 => answer.error_code = ResponseError::UnknownLeaderEpoch.code(),
        Some(end) if leader_epoch == 0 => (answer.leader_epoch, answer.end_offset) = (0, end),
        Some(_) => {}
    }
    answer
}

pub(crate) fn describe_producers(broker: &Broker, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let mut response = DescribeProducersResponse::default();
    for asked in request.topics {
        let mut topic = TopicResponse::default();
        for &index in &asked.partition_indexes {
            let mut partition = PartitionResponse::default();
            partition.partition_index = index;
            match broker.partition(&asked.name.0, index) {
                None => {
                    partition.error_code = ResponseError::UnknownTopicOrPartition.code();
                    partition.error_message = Some(text(format!("no partition {}-{index}", &*asked.name.0)));
                }
                Some(found) => {
                    partition.active_producers = found
                        .active_producers()
                        .into_iter()
                        .map(|p| {
                            let mut state = ProducerState::default();
                            state.producer_id = ProducerId(p.producer_id);
                            state.producer_epoch = i32::from(p.epoch);
                            state.last_sequence = p.last_sequence;
                            state.last_timestamp = p.last_write_ms;
                            state.coordinator_epoch = -1;
                            state.current_txn_start_offset = -1;
                            state
                        })
                        .collect();
                }
            }
            topic.partitions.push(partition);
        }
        topic.name = asked.name;
        response.topics.push(topic);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_only_epoch_ends_at_the_log_end_and_later_ones_are_undefined() {
        let answer = |current, asked, end| {
            let e = epoch_end(0, current, asked, end);
            (e.error_code, e.leader_epoch, e.end_offset)
        };
        assert_eq!(answer(-1, 0, Some(42)), (0, 0, 42));
        assert_eq!(answer(0, 0, Some(42)), (0, 0, 42));
        assert_eq!(answer(0, 3, Some(42)), (0, -1, -1), "an epoch this broker never had");
        assert_eq!(answer(5, 0, Some(42)), (75, -1, -1), "UNKNOWN_LEADER_EPOCH: the client is ahead");
        assert_eq!(answer(-1, 0, None), (3, -1, -1));
    }
}
