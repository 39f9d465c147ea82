//! ConsumerGroupHeartbeat and ConsumerGroupDescribe: the next-generation consumer group
//! protocol (KIP-848). The decisions are `group::consumer`'s; this file translates topic
//! ids and names and the error codes.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{self as describe, DescribedGroup};
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
};

use super::{groups::code, text, topic_name};
use crate::broker::{Broker, now_ms};
use crate::group::consumer::{Answer, Assignor, Heartbeat, Place};

pub(crate) fn consumer_group_heartbeat(
    broker: &Broker,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let mut response = ConsumerGroupHeartbeatResponse::default();
    let refuse = |mut response: ConsumerGroupHeartbeatResponse, error: ResponseError, message: &str| {
        response.error_code = error.code();
        response.error_message = Some(text(message));
        response
    };
    // librdkafka sends an empty regex for none.
    if request.subscribed_topic_regex.as_ref().is_some_and(|r| !r.is_empty()) {
        return refuse(response, ResponseError::InvalidRequest, "regular-expression subscriptions are not supported");
    }
    // v0 lets the broker choose a joining member's id; v1 clients choose their own.
    let member_id = match (request.member_id.is_empty(), request.member_epoch) {
        (false, _) => request.member_id.to_string(),
        (true, 0) => uuid::Uuid::new_v4().simple().to_string(),
        (true, _) => return refuse(response, ResponseError::UnknownMemberId, "a member id is required"),
    };
    let assignor = match request.server_assignor.as_deref().filter(|name| !name.is_empty()) {
        None => None,
        Some(name) => match Assignor::parse(name) {
            Some(assignor) => Some(assignor),
            None => return refuse(response, ResponseError::UnsupportedAssignor, "the assignors are uniform and range"),
        },
    };
    let owned = request.topic_partitions.map(|topics| {
        topics
            .iter()
            .filter_map(|t| Some((broker.topic_name(t.topic_id)?, &t.partitions)))
            .flat_map(|(name, partitions)| partitions.iter().map(move |p| (name.clone(), *p)))
            .collect::<BTreeSet<Place>>()
    });
    let beat = Heartbeat {
        member_id: member_id.clone(),
        // -2 is a static member leaving for a while: no static members here, so it leaves.
        member_epoch: request.member_epoch.max(-1),
        subscriptions: request.subscribed_topic_names.map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        owned,
        assignor,
    };
    let partitions: BTreeMap<String, u32> =
        broker.topics().into_iter().map(|(name, meta)| (name, meta.partitions)).collect();
    let answer = broker.groups().consumer_heartbeat(&request.group_id.0, beat, &partitions, now_ms());
    response.member_id = Some(text(member_id));
    response.heartbeat_interval_ms = broker.config().groups.consumer_heartbeat_interval_ms;
    match answer {
        Err(error) => response.error_code = code(error),
        Ok(Answer::Assignment { epoch, partitions }) => {
            response.member_epoch = epoch;
            response.assignment = Some(Assignment::default().with_topic_partitions(by_topic_id(broker, &partitions)));
        }
        Ok(Answer::Left) => response.member_epoch = request.member_epoch,
        Ok(Answer::Fenced) => response.error_code = ResponseError::FencedMemberEpoch.code(),
        Ok(Answer::Unknown) => response.error_code = ResponseError::UnknownMemberId.code(),
        Ok(Answer::Full) => response.error_code = ResponseError::GroupMaxSizeReached.code(),
    }
    response
}

/// Partitions grouped by topic id (a topic deleted meanwhile is left out).
fn by_topic_id(broker: &Broker, partitions: &BTreeSet<Place>) -> Vec<TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    by_topic
        .into_iter()
        .filter_map(|(topic, partitions)| {
            let id = broker.topic(topic)?.id;
            Some(TopicPartitions::default().with_topic_id(id).with_partitions(partitions))
        })
        .collect()
}

pub(crate) fn consumer_group_describe(
    broker: &Broker,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut response = ConsumerGroupDescribeResponse::default();
    for group_id in request.group_ids {
        let mut described = DescribedGroup::default();
        match broker.groups().describe_consumer(&group_id.0) {
            None => {
                described.error_code = ResponseError::GroupIdNotFound.code();
                described.error_message = Some(text(format!("{} is not a consumer group", &*group_id.0)));
            }
            Some(group) => {
                let (epoch, target_epoch) = group.epochs();
                described.group_state = text(if group.is_empty() { "Empty" } else { "Stable" });
                described.group_epoch = epoch;
                described.assignment_epoch = target_epoch;
                described.assignor_name = text(group.assignor().name());
                described.members = group
                    .members()
                    .into_iter()
                    .map(|m| {
                        let mut member = describe::Member::default();
                        member.member_id = text(m.member_id);
                        member.member_epoch = m.epoch;
                        member.subscribed_topic_names = m.subscriptions.iter().map(|t| topic_name(t)).collect();
                        member.assignment = described_assignment(broker, &m.assigned);
                        member.target_assignment = described_assignment(broker, &m.target);
                        member
                    })
                    .collect();
            }
        }
        described.group_id = group_id;
        response.groups.push(described);
    }
    response
}

fn described_assignment(broker: &Broker, partitions: &BTreeSet<Place>) -> describe::Assignment {
    let topics = by_topic_id(broker, partitions)
        .into_iter()
        .filter_map(|t| {
            let name = broker.topic_name(t.topic_id)?;
            Some(
                describe::TopicPartitions::default()
                    .with_topic_id(t.topic_id)
                    .with_topic_name(topic_name(&name))
                    .with_partitions(t.partitions),
            )
        })
        .collect();
    describe::Assignment::default().with_topic_partitions(topics)
}
