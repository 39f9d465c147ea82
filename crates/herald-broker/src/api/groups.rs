//! Consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::text;
use crate::broker::{Broker, now_ms};
use crate::config::Durability;
use crate::group::coordinator::{JoinRequest, JoinResult, SyncResult};
use crate::group::{Committed, GroupError, GroupState, Pending};
use crate::request::{Call, FrameError, Reply};

/// Kafka's `offset.metadata.max.bytes`.
const METADATA_BYTES_MAX: usize = 4096;

/// The Kafka error code of a group error.
pub(crate) fn code(error: GroupError) -> i16 {
    let kafka = match error {
        GroupError::UnknownMember => ResponseError::UnknownMemberId,
        GroupError::IllegalGeneration => ResponseError::IllegalGeneration,
        GroupError::RebalanceInProgress => ResponseError::RebalanceInProgress,
        GroupError::MemberIdRequired => ResponseError::MemberIdRequired,
        GroupError::FencedInstance => ResponseError::FencedInstanceId,
        GroupError::InconsistentProtocol => ResponseError::InconsistentGroupProtocol,
        GroupError::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        GroupError::InvalidGroupId => ResponseError::InvalidGroupId,
        GroupError::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        GroupError::NonEmptyGroup => ResponseError::NonEmptyGroup,
        GroupError::GroupIdNotFound => ResponseError::GroupIdNotFound,
        GroupError::NotCoordinator => ResponseError::NotCoordinator,
        GroupError::StaleMemberEpoch => ResponseError::StaleMemberEpoch,
        GroupError::FencedMemberEpoch => ResponseError::FencedMemberEpoch,
    };
    kafka.code()
}

fn opt_text(s: Option<String>) -> Option<StrBytes> {
    s.map(text)
}

pub(crate) fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let config = broker.config();
    let mut response = FindCoordinatorResponse::default();
    // Transaction coordinators (key type 1) do not exist here.
    let error = (request.key_type != 0).then_some(ResponseError::CoordinatorNotAvailable.code());
    if version >= 4 {
        for key in request.coordinator_keys {
            let mut c = find_coordinator_response::Coordinator::default();
            c.key = key;
            c.node_id = BrokerId(config.node_id);
            c.host = text(config.advertised_host.clone());
            c.port = i32::from(config.advertised_port);
            if let Some(code) = error {
                c.error_code = code;
            }
            response.coordinators.push(c);
        }
        return response;
    }
    response.node_id = BrokerId(config.node_id);
    response.host = text(config.advertised_host.clone());
    response.port = i32::from(config.advertised_port);
    if let Some(code) = error {
        response.error_code = code;
    }
    response
}

pub(crate) fn join_group(
    broker: &Arc<Broker>,
    request: JoinGroupRequest,
    call: Call,
    client_id: String,
    client_host: String,
) -> Result<Reply, FrameError> {
    let version = call.version;
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id,
        client_host,
        session_timeout_ms: i64::from(request.session_timeout_ms),
        rebalance_timeout_ms: i64::from(if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        }),
        protocol_type: request.protocol_type.to_string(),
        protocols: request.protocols.iter().map(|p| (p.name.to_string(), p.metadata.clone())).collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = join.member_id.clone();
    let encode = move |result: JoinResult| call.respond(&join_response(result, version));
    match broker.groups().join(&request.group_id.0, join, now_ms()) {
        Err(error) => Ok(Reply::Ready(Some(encode(JoinResult::error(error, &member_id))?))),
        Ok(Pending::Ready(result)) => Ok(Reply::Ready(Some(encode(result)?))),
        Ok(Pending::Wait(receiver)) => Ok(Reply::Pending(Box::pin(async move {
            let result =
                receiver.await.unwrap_or_else(|_| JoinResult::error(GroupError::RebalanceInProgress, &member_id));
            encode(result).map(Some)
        }))),
    }
}

fn join_response(result: JoinResult, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = result.error.map_or(0, code);
    response.generation_id = result.generation;
    if version >= 7 {
        response.protocol_type = opt_text(result.protocol_type);
        response.protocol_name = opt_text(result.protocol);
    } else {
        response.protocol_name = Some(text(result.protocol.unwrap_or_default()));
    }
    response.leader = text(result.leader);
    response.member_id = text(result.member_id);
    response.members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut member = join_group_response::JoinGroupResponseMember::default();
            member.member_id = text(id);
            if version >= 5 {
                member.group_instance_id = opt_text(instance);
            }
            member.metadata = metadata;
            member
        })
        .collect();
    response
}

pub(crate) fn sync_group(broker: &Arc<Broker>, request: SyncGroupRequest, call: Call) -> Result<Reply, FrameError> {
    let version = call.version;
    let encode = move |result: SyncResult| {
        let mut response = SyncGroupResponse::default();
        response.error_code = result.error.map_or(0, code);
        if version >= 5 {
            response.protocol_type = opt_text(result.protocol_type);
            response.protocol_name = opt_text(result.protocol);
        }
        response.assignment = result.assignment;
        call.respond(&response)
    };
    let assignments = request.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let pending = broker.groups().sync(
        &request.group_id.0,
        &request.member_id,
        instance.as_deref(),
        request.generation_id,
        assignments,
    );
    match pending {
        Pending::Ready(result) => Ok(Reply::Ready(Some(encode(result)?))),
        Pending::Wait(receiver) => Ok(Reply::Pending(Box::pin(async move {
            let result = receiver.await.unwrap_or_else(|_| SyncResult::error(GroupError::RebalanceInProgress));
            encode(result).map(Some)
        }))),
    }
}

pub(crate) fn heartbeat(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let result = broker.groups().heartbeat(
        &request.group_id.0,
        &request.member_id,
        instance.as_deref(),
        request.generation_id,
        now_ms(),
    );
    let mut response = HeartbeatResponse::default();
    response.error_code = result.err().map_or(0, code);
    response
}

pub(crate) fn leave_group(broker: &Broker, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let results = broker.groups().leave(&request.group_id.0, &members, now_ms());
    let mut response = LeaveGroupResponse::default();
    if version >= 3 {
        for ((member_id, instance), result) in members.into_iter().zip(results) {
            let mut member = leave_group_response::MemberResponse::default();
            member.member_id = text(member_id);
            member.group_instance_id = opt_text(instance);
            member.error_code = result.err().map_or(0, code);
            response.members.push(member);
        }
    } else {
        response.error_code = results.into_iter().next().and_then(Result::err).map_or(0, code);
    }
    response
}

pub(crate) fn offset_commit(
    broker: &Arc<Broker>,
    request: OffsetCommitRequest,
    call: Call,
) -> Result<Reply, FrameError> {
    let now = now_ms();
    let group = request.group_id.0.to_string();
    let instance = request.group_instance_id.as_ref().map(|s| s.to_string());
    let allowed = broker.groups().check_commit(
        &group,
        &request.member_id,
        instance.as_deref(),
        request.generation_id_or_member_epoch,
    );
    let mut response = OffsetCommitResponse::default();
    let mut entries = Vec::new();
    for topic in &request.topics {
        let mut topic_result = offset_commit_response::OffsetCommitResponseTopic::default();
        topic_result.name = topic.name.clone();
        for p in &topic.partitions {
            let mut result = offset_commit_response::OffsetCommitResponsePartition::default();
            result.partition_index = p.partition_index;
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
            result.error_code = match &allowed {
                Err(error) => code(*error),
                Ok(()) if broker.partition(&topic.name.0, p.partition_index).is_none() => {
                    ResponseError::UnknownTopicOrPartition.code()
                }
                Ok(()) if metadata.len() > METADATA_BYTES_MAX => ResponseError::OffsetMetadataTooLarge.code(),
                Ok(()) => {
                    let committed = Committed {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_ms: now,
                    };
                    entries.push((topic.name.0.to_string(), p.partition_index, committed));
                    0
                }
            };
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    if let Err(error) = allowed {
        tracing::debug!(group, member = %request.member_id, generation = request.generation_id_or_member_epoch, ?error, "offset commit refused");
    }
    if entries.is_empty() {
        return Ok(Reply::Ready(Some(call.respond(&response)?)));
    }
    let durable_at = match broker.groups().offsets().commit(&group, entries, now) {
        Ok(at) => at,
        Err(error) => {
            tracing::error!(group, %error, "storing committed offsets failed");
            set_all(&mut response, ResponseError::KafkaStorageError.code());
            return Ok(Reply::Ready(Some(call.respond(&response)?)));
        }
    };
    if broker.config().durability != Durability::Fsync {
        return Ok(Reply::Ready(Some(call.respond(&response)?)));
    }
    let broker = Arc::clone(broker);
    Ok(Reply::Pending(Box::pin(async move {
        let synced =
            tokio::task::spawn_blocking(move || broker.groups().offsets().log().sync_through(durable_at)).await;
        if !matches!(synced, Ok(Ok(()))) {
            tracing::error!("fsync of committed offsets failed; the commit is not acknowledged");
            set_all(&mut response, ResponseError::KafkaStorageError.code());
        }
        call.respond(&response).map(Some)
    })))
}

fn set_all(response: &mut OffsetCommitResponse, error_code: i16) {
    for topic in &mut response.topics {
        for p in &mut topic.partitions {
            if p.error_code == 0 {
                p.error_code = error_code;
            }
        }
    }
}

/// Per topic, each partition asked for and its committed offset, if any.
type TopicOffsets = Vec<(String, Vec<(i32, Option<Committed>)>)>;

/// Committed offsets of one group: the asked partitions, or every committed one.
fn fetch_offsets(broker: &Broker, group: &str, asked: Option<Vec<(String, Vec<i32>)>>) -> TopicOffsets {
    match asked {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let found =
                    partitions.into_iter().map(|p| (p, broker.groups().offsets().get(group, &topic, p))).collect();
                (topic, found)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
            for ((topic, p), committed) in broker.groups().offsets().group(group) {
                by_topic.entry(topic).or_default().push((p, Some(committed)));
            }
            by_topic.into_iter().collect()
        }
    }
}

pub(crate) fn offset_fetch(broker: &Broker, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in request.groups {
            let asked =
                group.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
            let mut result = offset_fetch_response::OffsetFetchResponseGroup::default();
            // v9 names the fetching member of a new-protocol group: a stale one is refused.
            let member = group.member_id.as_deref().filter(|m| version >= 9 && !m.is_empty());
            if let Some(Err(error)) =
                member.map(|m| broker.groups().check_fetch(&group.group_id.0, m, group.member_epoch))
            {
                result.error_code = code(error);
                result.group_id = group.group_id;
                response.groups.push(result);
                continue;
            }
            for (topic, partitions) in fetch_offsets(broker, &group.group_id.0, asked) {
                let mut t = offset_fetch_response::OffsetFetchResponseTopics::default();
                t.name = super::topic_name(&topic);
                for (index, committed) in partitions {
                    let mut p = offset_fetch_response::OffsetFetchResponsePartitions::default();
                    p.partition_index = index;
                    p.committed_offset = committed.as_ref().map_or(-1, |c| c.offset);
                    p.committed_leader_epoch = committed.as_ref().map_or(-1, |c| c.leader_epoch);
                    p.metadata = Some(text(committed.map(|c| c.metadata).unwrap_or_default()));
                    t.partitions.push(p);
                }
                result.topics.push(t);
            }
            result.group_id = group.group_id;
            response.groups.push(result);
        }
        return response;
    }
    let asked = request.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    for (topic, partitions) in fetch_offsets(broker, &request.group_id.0, asked) {
        let mut t = offset_fetch_response::OffsetFetchResponseTopic::default();
        t.name = super::topic_name(&topic);
        for (index, committed) in partitions {
            let mut p = offset_fetch_response::OffsetFetchResponsePartition::default();
            p.partition_index = index;
            p.committed_offset = committed.as_ref().map_or(-1, |c| c.offset);
            if version >= 5 {
                p.committed_leader_epoch = committed.as_ref().map_or(-1, |c| c.leader_epoch);
            }
            p.metadata = Some(text(committed.map(|c| c.metadata).unwrap_or_default()));
            t.partitions.push(p);
        }
        response.topics.push(t);
    }
    response
}

pub(crate) fn list_groups(broker: &Broker, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    let mut response = ListGroupsResponse::default();
    // Every group here is a classic one (v5 can ask for types).
    let types = &request.types_filter;
    if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case("classic")) {
        return response;
    }
    for listing in broker.groups().list() {
        let state = listing.state.name();
        if !request.states_filter.is_empty() && !request.states_filter.iter().any(|s| s.eq_ignore_ascii_case(state)) {
            continue;
        }
        let mut group = list_groups_response::ListedGroup::default();
        group.group_id = GroupId(text(listing.group_id));
        group.protocol_type = text(listing.protocol_type);
        if version >= 4 {
            group.group_state = text(state);
        }
        if version >= 5 {
            group.group_type = text("classic");
        }
        response.groups.push(group);
    }
    response
}

pub(crate) fn describe_groups(broker: &Broker, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for group_id in request.groups {
        let mut described = describe_groups_response::DescribedGroup::default();
        match broker.groups().describe(&group_id.0) {
            None => described.group_state = text(GroupState::Dead.name()),
            Some(group) => {
                described.group_state = text(group.state().name());
                described.protocol_type = text(group.protocol_type().unwrap_or_default());
                let protocol = group.protocol().unwrap_or_default().to_string();
                described.protocol_data = text(protocol.clone());
                for member in group.members().values() {
                    let mut m = describe_groups_response::DescribedGroupMember::default();
                    m.member_id = text(member.id.clone());
                    if version >= 4 {
                        m.group_instance_id = opt_text(member.instance_id.clone());
                    }
                    m.client_id = text(member.client_id.clone());
                    m.client_host = text(member.client_host.clone());
                    m.member_metadata = member
                        .protocols
                        .iter()
                        .find(|(n, _)| *n == protocol)
                        .map(|(_, m)| m.clone())
                        .unwrap_or_default();
                    m.member_assignment = member.assignment.clone();
                    described.members.push(m);
                }
            }
        }
        described.group_id = group_id;
        response.groups.push(described);
    }
    response
}

pub(crate) fn delete_groups(broker: &Broker, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for group_id in request.groups_names {
        let mut result = delete_groups_response::DeletableGroupResult::default();
        result.error_code = match broker.groups().delete(&group_id.0, now_ms()) {
            Ok(Ok(durable_at)) => match broker.groups().offsets().log().sync_through(durable_at) {
                Ok(()) => 0,
                Err(_) => ResponseError::KafkaStorageError.code(),
            },
            Ok(Err(_)) => ResponseError::KafkaStorageError.code(),
            Err(error) => code(error),
        };
        result.group_id = group_id;
        response.results.push(result);
    }
    response
}

pub(crate) fn offset_delete(broker: &Broker, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let mut response = OffsetDeleteResponse::default();
    let group = request.group_id.0.to_string();
    if broker.groups().describe(&group).is_none() {
        response.error_code = ResponseError::GroupIdNotFound.code();
        return response;
    }
    let subscribed = broker.groups().subscribed_topics(&group).unwrap_or_default();
    let mut doomed = Vec::new();
    for topic in request.topics {
        let mut t = offset_delete_response::OffsetDeleteResponseTopic::default();
        let busy = subscribed.contains(&*topic.name.0);
        for p in topic.partitions {
            let mut result = offset_delete_response::OffsetDeleteResponsePartition::default();
            result.partition_index = p.partition_index;
            if busy {
                result.error_code = ResponseError::GroupSubscribedToTopic.code();
            } else {
                doomed.push((topic.name.0.to_string(), p.partition_index));
            }
            t.partitions.push(result);
        }
        t.name = topic.name;
        response.topics.push(t);
    }
    if !doomed.is_empty() {
        let stored = broker.groups().offsets().delete_offsets(&group, &doomed, now_ms());
        if stored.and_then(|at| broker.groups().offsets().log().sync_through(at)).is_err() {
            response.error_code = ResponseError::KafkaStorageError.code();
        }
    }
    response
}
