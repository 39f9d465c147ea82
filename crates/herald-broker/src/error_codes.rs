//! [`ErrorCodes`]: every error code a response carries (top level, per topic, per
//! partition), so `herald_kafka_errors_total{api, error_code}` counts what clients were
//! told, as Kafka's `ErrorsPerSec` does, without a handler having to remember.

use kafka_protocol::messages::{
    AlterConfigsResponse, ApiVersionsResponse, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatResponse,
    CreatePartitionsResponse, CreateTopicsResponse, DeleteGroupsResponse, DeleteRecordsResponse, DeleteTopicsResponse,
    DescribeClusterResponse, DescribeConfigsResponse, DescribeGroupsResponse, DescribeLogDirsResponse,
    DescribeProducersResponse, DescribeTopicPartitionsResponse, FetchResponse, FindCoordinatorResponse,
    HeartbeatResponse, IncrementalAlterConfigsResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse,
    ListGroupsResponse, ListOffsetsResponse, MetadataResponse, OffsetCommitResponse, OffsetDeleteResponse,
    OffsetFetchResponse, OffsetForLeaderEpochResponse, ProduceResponse, SyncGroupResponse,
};

/// A response's error codes, each handed to `each` (zeros included; the caller skips them).
pub(crate) trait ErrorCodes {
    fn error_codes(&self, each: &mut dyn FnMut(i16));
}

/// Responses with one top-level code.
macro_rules! top_level {
    ($($ty:ty),*) => {$(
        impl ErrorCodes for $ty {
            fn error_codes(&self, each: &mut dyn FnMut(i16)) {
                each(self.error_code);
            }
        }
    )*};
}

top_level!(
    ApiVersionsResponse,
    ConsumerGroupHeartbeatResponse,
    DescribeClusterResponse,
    InitProducerIdResponse,
    HeartbeatResponse,
    JoinGroupResponse,
    SyncGroupResponse,
    ListGroupsResponse
);

/// Responses with a code per entry of one list.
macro_rules! per_entry {
    ($($ty:ty => $list:ident),*) => {$(
        impl ErrorCodes for $ty {
            fn error_codes(&self, each: &mut dyn FnMut(i16)) {
                self.$list.iter().for_each(|e| each(e.error_code));
            }
        }
    )*};
}

per_entry!(
    CreateTopicsResponse => topics,
    DeleteTopicsResponse => responses,
    CreatePartitionsResponse => results,
    DescribeConfigsResponse => results,
    AlterConfigsResponse => responses,
    IncrementalAlterConfigsResponse => responses,
    DescribeGroupsResponse => groups,
    ConsumerGroupDescribeResponse => groups,
    DeleteGroupsResponse => results
);

/// Responses with a code per partition of each topic.
macro_rules! per_partition {
    ($($ty:ty => $topics:ident . $partitions:ident),*) => {$(
        impl ErrorCodes for $ty {
            fn error_codes(&self, each: &mut dyn FnMut(i16)) {
                self.$topics.iter().flat_map(|t| &t.$partitions).for_each(|p| each(p.error_code));
            }
        }
    )*};
}

per_partition!(
    ListOffsetsResponse => topics.partitions,
    DeleteRecordsResponse => topics.partitions,
    OffsetCommitResponse => topics.partitions,
    ProduceResponse => responses.partition_responses,
    OffsetForLeaderEpochResponse => topics.partitions,
    DescribeProducersResponse => topics.partitions
);

impl ErrorCodes for DescribeTopicPartitionsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            each(topic.error_code);
            topic.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}

impl ErrorCodes for DescribeLogDirsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.results.iter().for_each(|r| each(r.error_code));
    }
}

impl ErrorCodes for FetchResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.responses.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
}

impl ErrorCodes for MetadataResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        for topic in &self.topics {
            each(topic.error_code);
            topic.partitions.iter().for_each(|p| each(p.error_code));
        }
    }
}

impl ErrorCodes for FindCoordinatorResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.coordinators.iter().for_each(|c| each(c.error_code));
    }
}

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.members.iter().for_each(|m| each(m.error_code));
    }
}

impl ErrorCodes for OffsetFetchResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
        for group in &self.groups {
            each(group.error_code);
            group.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
        }
    }
}

impl ErrorCodes for OffsetDeleteResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
        self.topics.iter().flat_map(|t| &t.partitions).for_each(|p| each(p.error_code));
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::metadata_response::{MetadataResponsePartition, MetadataResponseTopic};

    use super::*;

    #[test]
    fn every_level_of_a_response_is_visited() {
        let partition = MetadataResponsePartition::default().with_error_code(9);
        let topic = MetadataResponseTopic::default().with_error_code(3).with_partitions(vec![partition]);
        let response = MetadataResponse::default().with_topics(vec![topic]);
        let mut seen = Vec::new();
        response.error_codes(&mut |code| seen.push(code));
        assert_eq!(seen, [3, 9]);
    }
}
