//! The async edge of the group coordinator: one lock over every group, parked JoinGroup
//! and SyncGroup requests as oneshot channels, and the committed-offset store.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use herald_log::{LogConfig, LogError, Storage};
use kafka_protocol::messages::ConsumerProtocolSubscription;
use kafka_protocol::protocol::Decodable;
use tokio::sync::oneshot;

use super::consumer::{Answer, ConsumerGroup, Heartbeat};
use super::coordinator::{
    Completion, Group, GroupConfig, GroupError, GroupState, JoinRequest, JoinResult, Reply, SyncResult,
};
use super::offsets::{OFFSETS_DIR, OffsetStore};

/// An answer now, or a channel that delivers it when the group gets there.
#[derive(Debug)]
pub enum Pending<T> {
    /// Answer at once.
    Ready(T),
    /// Answer when this resolves (a dropped sender means the wait was superseded).
    Wait(oneshot::Receiver<T>),
}

#[derive(Debug)]
enum Waiter {
    Join(oneshot::Sender<JoinResult>),
    Sync(oneshot::Sender<SyncResult>),
}

impl Waiter {
    /// Whether the request's receiver is gone (its connection closed).
    fn is_closed(&self) -> bool {
        match self {
            Waiter::Join(sender) => sender.is_closed(),
            Waiter::Sync(sender) => sender.is_closed(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    groups: HashMap<String, Group>,
    /// Groups of the new protocol (KIP-848); a group id is in one map or the other.
    consumer: HashMap<String, ConsumerGroup>,
    waiters: HashMap<(String, String), Waiter>,
    /// Set by [`GroupManager::give_up`]: no request parks any more.
    given_up: bool,
}

/// What ListGroups shows of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// "consumer", or empty for a group that only holds offsets.
    pub protocol_type: String,
    /// The state.
    pub state: GroupState,
    /// `classic` or `consumer` (the new protocol).
    pub group_type: &'static str,
}

/// Every consumer group of the broker.
#[derive(Debug)]
pub struct GroupManager {
    config: GroupConfig,
    inner: Mutex<Inner>,
    offsets: OffsetStore,
}

impl GroupManager {
    /// Opens the offset store under `data_dir`; groups that have offsets start Empty.
    pub fn open(
        storage: Arc<dyn Storage>,
        data_dir: &Path,
        log_config: LogConfig,
        config: GroupConfig,
        compact_bytes: u64,
    ) -> Result<Self, LogError> {
        let offsets = OffsetStore::open(storage, data_dir.join(OFFSETS_DIR), log_config, compact_bytes)?;
        let mut inner = Inner::default();
        for group in offsets.groups() {
            inner.groups.insert(group.clone(), Group::new(&group));
        }
        Ok(Self { config, inner: Mutex::new(inner), offsets })
    }

    /// The committed-offset store.
    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// Consumes the manager, returning the offset store (to close its log).
    pub fn into_offsets(self) -> OffsetStore {
        self.offsets
    }

    /// JoinGroup.
    pub fn join(&self, group_id: &str, request: JoinRequest, now_ms: i64) -> Result<Pending<JoinResult>, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let mut inner = self.lock();
        // A group of the new protocol with members takes no classic members.
        if inner.consumer.get(group_id).is_some_and(|g| !g.is_empty()) {
            return Err(GroupError::InconsistentProtocol);
        }
        if inner.given_up {
            return Err(GroupError::NotCoordinator);
        }
        let group = inner.groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id));
        if group.state() == GroupState::Dead {
            *group = Group::new(group_id);
        }
        let (reply, completions) = group.join(request, &self.config, now_ms);
        let pending = match reply {
            Reply::Now(result) => Pending::Ready(result),
            Reply::Wait(member_id) => {
                let (sender, receiver) = oneshot::channel();
                inner.waiters.insert((group_id.to_string(), member_id), Waiter::Join(sender));
                Pending::Wait(receiver)
            }
        };
        deliver(&mut inner, group_id, completions);
        Ok(pending)
    }

    /// SyncGroup.
    pub fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Pending<SyncResult> {
        let mut inner = self.lock();
        if inner.given_up {
            return Pending::Ready(SyncResult::error(GroupError::NotCoordinator));
        }
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Pending::Ready(SyncResult::error(GroupError::UnknownMember));
        };
        let (reply, completions) = group.sync(member_id, instance_id, generation, assignments);
        let pending = match reply {
            Reply::Now(result) => Pending::Ready(result),
            Reply::Wait(member_id) => {
                let (sender, receiver) = oneshot::channel();
                inner.waiters.insert((group_id.to_string(), member_id), Waiter::Sync(sender));
                Pending::Wait(receiver)
            }
        };
        deliver(&mut inner, group_id, completions);
        pending
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        let mut inner = self.lock();
        let group = inner.groups.get_mut(group_id).ok_or(GroupError::UnknownMember)?;
        group.heartbeat(member_id, instance_id, generation, now_ms)
    }

    /// LeaveGroup, for each (member id, instance id).
    pub fn leave(
        &self,
        group_id: &str,
        members: &[(String, Option<String>)],
        now_ms: i64,
    ) -> Vec<Result<(), GroupError>> {
        let mut inner = self.lock();
        let mut results = Vec::new();
        let mut completions = Vec::new();
        match inner.groups.get_mut(group_id) {
            None => results.extend(members.iter().map(|_| Err(GroupError::UnknownMember))),
            Some(group) => {
                for (member_id, instance_id) in members {
                    let (result, done) = group.leave(member_id, instance_id.as_deref(), &self.config, now_ms);
                    results.push(result);
                    completions.extend(done);
                }
            }
        }
        deliver(&mut inner, group_id, completions);
        results
    }

    /// ConsumerGroupHeartbeat (KIP-848): `partitions` gives each topic's partition
    /// count. A group id with classic members is not a consumer group.
    pub(crate) fn consumer_heartbeat(
        &self,
        group_id: &str,
        beat: Heartbeat,
        partitions: &BTreeMap<String, u32>,
        now_ms: i64,
    ) -> Result<Answer, GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let mut inner = self.lock();
        if inner.groups.get(group_id).is_some_and(|g| !g.members().is_empty()) {
            return Err(GroupError::GroupIdNotFound);
        }
        let group = inner.consumer.entry(group_id.to_string()).or_default();
        Ok(group.heartbeat(beat, partitions, now_ms))
    }

    /// Whether a new-protocol member at `member_epoch` may fetch the group's offsets
    /// (OffsetFetch v9 names its member); a classic group does not check.
    pub fn check_fetch(&self, group_id: &str, member_id: &str, member_epoch: i32) -> Result<(), GroupError> {
        match self.lock().consumer.get(group_id) {
            Some(group) => group.may_commit(member_id, member_epoch).map_err(refused_member),
            None => Ok(()),
        }
    }

    /// A copy of one new-protocol group, for ConsumerGroupDescribe.
    pub(crate) fn describe_consumer(&self, group_id: &str) -> Option<ConsumerGroup> {
        self.lock().consumer.get(group_id).cloned()
    }

    /// Whether this member may commit offsets for the group now (an unknown group is
    /// created Empty for a commit from outside the group protocol).
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let mut inner = self.lock();
        if let Some(group) = inner.consumer.get(group_id) {
            // A commit from outside the group (no member, no epoch) only while it is empty.
            if member_id.is_empty() && generation < 0 && group.is_empty() {
                return Ok(());
            }
            return group.may_commit(member_id, generation).map_err(refused_member);
        }
        match inner.groups.get(group_id) {
            Some(group) => group.check_commit(member_id, instance_id, generation),
            None if generation < 0 && member_id.is_empty() => {
                inner.groups.insert(group_id.to_string(), Group::new(group_id));
                Ok(())
            }
            None => Err(GroupError::UnknownMember),
        }
    }

    /// Every group.
    pub fn list(&self) -> Vec<GroupListing> {
        let inner = self.lock();
        let mut groups: Vec<GroupListing> = inner
            .groups
            .values()
            .filter(|g| g.state() != GroupState::Dead)
            .filter(|g| !inner.consumer.contains_key(&g.id))
            .map(|g| GroupListing {
                group_id: g.id.clone(),
                protocol_type: g.protocol_type().unwrap_or_default().to_string(),
                state: g.state(),
                group_type: "classic",
            })
            .collect();
        groups.extend(inner.consumer.iter().map(|(id, group)| GroupListing {
            group_id: id.clone(),
            protocol_type: "consumer".to_string(),
            state: if group.is_empty() { GroupState::Empty } else { GroupState::Stable },
            group_type: "consumer",
        }));
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups
    }

    /// A copy of one group, for DescribeGroups.
    pub fn describe(&self, group_id: &str) -> Option<Group> {
        self.lock().groups.get(group_id).cloned()
    }

    /// DeleteGroups: only an empty group can go; its offsets go with it. Returns the
    /// offset the offsets log must be durable to.
    pub fn delete(&self, group_id: &str, now_ms: i64) -> Result<Result<u64, LogError>, GroupError> {
        let mut inner = self.lock();
        let group = inner.groups.get_mut(group_id).ok_or(GroupError::GroupIdNotFound)?;
        match group.state() {
            GroupState::Empty => {}
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            _ => return Err(GroupError::NonEmptyGroup),
        }
        group.mark_dead();
        inner.groups.remove(group_id);
        Ok(self.offsets.delete_group(group_id, now_ms))
    }

    /// Topics the group's members subscribe to (from their consumer-protocol metadata),
    /// or `None` when the group is not a consumer group with members.
    pub fn subscribed_topics(&self, group_id: &str) -> Option<BTreeSet<String>> {
        let inner = self.lock();
        let group = inner.groups.get(group_id)?;
        if group.protocol_type() != Some("consumer") || group.members().is_empty() {
            return None;
        }
        let mut topics = BTreeSet::new();
        for member in group.members().values() {
            for (_, metadata) in &member.protocols {
                let mut bytes = metadata.clone();
                if bytes.len() < 2 {
                    continue;
                }
                let version = i16::from_be_bytes([bytes[0], bytes[1]]);
                let _ = bytes::Buf::get_i16(&mut bytes);
                if let Ok(subscription) = ConsumerProtocolSubscription::decode(&mut bytes, version.clamp(0, 3)) {
                    topics.extend(subscription.topics.iter().map(|t| t.to_string()));
                }
            }
        }
        Some(topics)
    }

    /// Gives every group up, as Kafka's coordinator does when it moves a group away:
    /// each parked JoinGroup and SyncGroup is answered NOT_COORDINATOR now, and later
    /// ones at once, so a shutdown never waits for a rebalance to finish. Group state
    /// and committed offsets are kept; the maintenance tick still expires sessions.
    pub fn give_up(&self) {
        let mut inner = self.lock();
        inner.given_up = true;
        for ((_, member_id), waiter) in inner.waiters.drain() {
            match waiter {
                Waiter::Join(sender) => {
                    let _ = sender.send(JoinResult::error(GroupError::NotCoordinator, &member_id));
                }
                Waiter::Sync(sender) => {
                    let _ = sender.send(SyncResult::error(GroupError::NotCoordinator));
                }
            }
        }
    }

    /// Parked JoinGroup and SyncGroup requests whose connection still waits for them.
    pub fn parked(&self) -> usize {
        let inner = self.lock();
        inner.waiters.values().filter(|w| !w.is_closed()).count()
    }

    /// Expires sessions and ends join phases whose time is up.
    pub fn tick(&self, now_ms: i64) {
        let mut inner = self.lock();
        // Forget parked requests whose connection is gone.
        inner.waiters.retain(|_, waiter| !waiter.is_closed());
        let timeout = self.config.consumer_session_timeout_ms;
        for (id, group) in inner.consumer.iter_mut() {
            for member in group.expire(now_ms, timeout) {
                tracing::info!(group = %id, %member, "a consumer group member's session expired");
            }
        }
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            let completions = match inner.groups.get_mut(&id) {
                Some(group) => group.tick(&self.config, now_ms),
                None => continue,
            };
            deliver(&mut inner, &id, completions);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        herald_log::sync::lock(&self.inner)
    }
}

/// The error a new-protocol member's refused commit or fetch gets.
fn refused_member(answer: Answer) -> GroupError {
    match answer {
        Answer::Fenced => GroupError::StaleMemberEpoch,
        _ => GroupError::UnknownMember,
    }
}

/// Hands each completion to the member's parked request, if it is still waiting.
fn deliver(inner: &mut Inner, group_id: &str, completions: Vec<Completion>) {
    for completion in completions {
        match completion {
            Completion::Join { member_id, result } => {
                if let Some(Waiter::Join(sender)) = inner.waiters.remove(&(group_id.to_string(), member_id)) {
                    let _ = sender.send(result);
                }
            }
            Completion::Sync { member_id, result } => {
                if let Some(Waiter::Sync(sender)) = inner.waiters.remove(&(group_id.to_string(), member_id)) {
                    let _ = sender.send(result);
                }
            }
        }
    }
}
