//! The classic consumer-group protocol as plain code: every call takes `now_ms` and
//! returns what to answer now plus the answers it completes for members that were
//! waiting (a JoinGroup parked until the rebalance completes, a SyncGroup parked until
//! the leader's assignment arrives). No IO, no clock, no channels: the async edge
//! (`group::manager`) delivers the completions.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

/// A group's state, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may still be stored).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Everyone has an assignment.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// Kafka's name, as ListGroups and DescribeGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Why a group request is refused (each maps to one Kafka error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    /// UNKNOWN_MEMBER_ID.
    UnknownMember,
    /// ILLEGAL_GENERATION.
    IllegalGeneration,
    /// REBALANCE_IN_PROGRESS.
    RebalanceInProgress,
    /// MEMBER_ID_REQUIRED (the join is answered with the id to use).
    MemberIdRequired,
    /// FENCED_INSTANCE_ID.
    FencedInstance,
    /// INCONSISTENT_GROUP_PROTOCOL.
    InconsistentProtocol,
    /// INVALID_SESSION_TIMEOUT.
    InvalidSessionTimeout,
    /// INVALID_GROUP_ID.
    InvalidGroupId,
    /// COORDINATOR_NOT_AVAILABLE (a dead group).
    CoordinatorNotAvailable,
    /// NON_EMPTY_GROUP.
    NonEmptyGroup,
    /// GROUP_ID_NOT_FOUND.
    GroupIdNotFound,
    /// NOT_COORDINATOR (the broker is giving its groups up: it is shutting down).
    NotCoordinator,
    /// STALE_MEMBER_EPOCH (a new-protocol member committing at an epoch it is not at).
    StaleMemberEpoch,
    /// FENCED_MEMBER_EPOCH (a new-protocol heartbeat at an epoch the member is not at).
    FencedMemberEpoch,
}

/// Coordinator settings, each with Kafka's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i64,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i64,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group
    /// waits for more members (extended by each join, up to the rebalance timeout).
    pub initial_rebalance_delay_ms: i64,
    /// `group.consumer.session.timeout.ms`: a new-protocol (KIP-848) member silent this
    /// long leaves.
    pub consumer_session_timeout_ms: i64,
    /// `group.consumer.heartbeat.interval.ms`: how often new-protocol members heartbeat.
    pub consumer_heartbeat_interval_ms: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 5_000,
        }
    }
}

/// A JoinGroup request, in plain terms.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Empty for a first join.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// Client id and host, for DescribeGroups.
    pub client_id: String,
    /// See `client_id`.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i64,
    /// Rebalance timeout (v0: the session timeout).
    pub rebalance_timeout_ms: i64,
    /// Usually "consumer".
    pub protocol_type: String,
    /// The member's assignors, preferred first, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a first join without an id gets MEMBER_ID_REQUIRED and an id.
    pub require_known_member_id: bool,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    /// Refused, or MEMBER_ID_REQUIRED with `member_id` set.
    pub error: Option<GroupError>,
    /// Generation joined.
    pub generation: i32,
    /// The chosen protocol type and assignor.
    pub protocol_type: Option<String>,
    /// See `protocol_type`.
    pub protocol: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// For the leader: every member's id, instance id and metadata for the chosen assignor.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    /// A refusal for `member_id`.
    pub fn error(error: GroupError, member_id: &str) -> Self {
        Self {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    /// Refused.
    pub error: Option<GroupError>,
    /// The chosen protocol type and assignor.
    pub protocol_type: Option<String>,
    /// See `protocol_type`.
    pub protocol: Option<String>,
    /// This member's assignment.
    pub assignment: Bytes,
}

impl SyncResult {
    /// A refusal.
    pub fn error(error: GroupError) -> Self {
        Self { error: Some(error), protocol_type: None, protocol: None, assignment: Bytes::new() }
    }
}

/// An answer for a member whose request was parked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Its JoinGroup.
    Join {
        /// The member.
        member_id: String,
        /// The answer.
        result: JoinResult,
    },
    /// Its SyncGroup.
    Sync {
        /// The member.
        member_id: String,
        /// The answer.
        result: SyncResult,
    },
}

/// What to do with a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    /// Answer at once.
    Now(T),
    /// Park it under this member id; a [`Completion`] for the member answers it, possibly
    /// among the completions returned by this same call (so park before delivering them).
    Wait(String),
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// `group.instance.id`, if static.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i64,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i64,
    /// Assignors, preferred first.
    pub protocols: Vec<(String, Bytes)>,
    /// Its current assignment.
    pub assignment: Bytes,
    last_heartbeat_ms: i64,
    awaiting_join: bool,
    awaiting_sync: bool,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// One consumer group.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its id.
    pub id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out with MEMBER_ID_REQUIRED, and when they expire.
    pending: HashMap<String, i64>,
    /// Static members: instance id → member id.
    instances: HashMap<String, String>,
    /// PreparingRebalance ends by this time at the latest.
    rebalance_deadline_ms: i64,
    /// The initial delay of a rebalance from Empty holds the join phase open until then.
    initial_delay_until_ms: i64,
    next_member: u64,
}

impl Group {
    /// A new, empty group.
    pub fn new(id: &str) -> Self {
        Self {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            instances: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay_until_ms: 0,
            next_member: 0,
        }
    }

    /// The state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The generation.
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The protocol type ("consumer"), once a member has joined.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The chosen assignor, once a rebalance has completed.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The members, by id.
    pub fn members(&self) -> &BTreeMap<String, Member> {
        &self.members
    }

    /// The leader.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Marks the group deleted.
    pub fn mark_dead(&mut self) {
        self.state = GroupState::Dead;
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        request: JoinRequest,
        config: &GroupConfig,
        now_ms: i64,
    ) -> (Reply<JoinResult>, Vec<Completion>) {
        let fail = |error| (Reply::Now(JoinResult::error(error, &request.member_id)), Vec::new());
        if self.state == GroupState::Dead {
            return fail(GroupError::CoordinatorNotAvailable);
        }
        if !(config.min_session_timeout_ms..=config.max_session_timeout_ms).contains(&request.session_timeout_ms) {
            return fail(GroupError::InvalidSessionTimeout);
        }
        if request.protocols.is_empty() || request.protocol_type.is_empty() || !self.supports(&request) {
            return fail(GroupError::InconsistentProtocol);
        }
        if request.member_id.is_empty() {
            return self.join_new(request, config, now_ms);
        }
        if let Some(instance) = &request.instance_id
            && self.instances.get(instance).is_some_and(|id| *id != request.member_id)
        {
            return fail(GroupError::FencedInstance);
        }
        if self.pending.remove(&request.member_id).is_some() {
            let id = request.member_id.clone();
            return self.add_and_rebalance(id, request, config, now_ms);
        }
        let Some(member) = self.members.get_mut(&request.member_id) else {
            return fail(GroupError::UnknownMember);
        };
        let changed = member.protocols != request.protocols;
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.last_heartbeat_ms = now_ms;
        let is_leader = self.leader.as_deref() == Some(&request.member_id);
        match self.state {
            GroupState::Stable if !changed && !is_leader => {
                // A follower rejoining without changes gets the current generation again.
                let result = self.join_result(&request.member_id);
                (Reply::Now(result), Vec::new())
            }
            GroupState::PreparingRebalance => {
                self.members.get_mut(&request.member_id).expect("checked").awaiting_join = true;
                let completions = self.try_complete_join(now_ms);
                (Reply::Wait(request.member_id.clone()), completions)
            }
            _ => {
                let mut completions = self.prepare_rebalance(config, now_ms);
                self.members.get_mut(&request.member_id).expect("checked").awaiting_join = true;
                completions.extend(self.try_complete_join(now_ms));
                (Reply::Wait(request.member_id.clone()), completions)
            }
        }
    }

    fn join_new(
        &mut self,
        request: JoinRequest,
        config: &GroupConfig,
        now_ms: i64,
    ) -> (Reply<JoinResult>, Vec<Completion>) {
        let id = self.new_member_id(&request.client_id, now_ms);
        if let Some(instance) = request.instance_id.clone()
            && let Some(old) = self.instances.get(&instance).cloned()
            && let Some(mut member) = self.members.remove(&old)
        {
            // A static member restarting: the new id replaces (fences) the old one and
            // keeps its assignment; no rebalance while the group is stable.
            member.id = id.clone();
            member.protocols = request.protocols.clone();
            member.last_heartbeat_ms = now_ms;
            self.members.insert(id.clone(), member);
            self.instances.insert(instance, id.clone());
            if self.leader.as_deref() == Some(old.as_str()) {
                self.leader = Some(id.clone());
            }
            return match self.state {
                GroupState::Stable => (Reply::Now(self.join_result(&id)), Vec::new()),
                GroupState::PreparingRebalance => {
                    self.members.get_mut(&id).expect("inserted").awaiting_join = true;
                    let completions = self.try_complete_join(now_ms);
                    (Reply::Wait(id), completions)
                }
                _ => {
                    let mut completions = self.prepare_rebalance(config, now_ms);
                    self.members.get_mut(&id).expect("inserted").awaiting_join = true;
                    completions.extend(self.try_complete_join(now_ms));
                    (Reply::Wait(id), completions)
                }
            };
        }
        if request.require_known_member_id && request.instance_id.is_none() {
            self.pending.insert(id.clone(), now_ms + request.session_timeout_ms);
            return (Reply::Now(JoinResult::error(GroupError::MemberIdRequired, &id)), Vec::new());
        }
        self.add_and_rebalance(id, request, config, now_ms)
    }

    fn add_and_rebalance(
        &mut self,
        id: String,
        request: JoinRequest,
        config: &GroupConfig,
        now_ms: i64,
    ) -> (Reply<JoinResult>, Vec<Completion>) {
        if let Some(instance) = &request.instance_id {
            self.instances.insert(instance.clone(), id.clone());
        }
        self.protocol_type.get_or_insert_with(|| request.protocol_type.clone());
        let member = Member {
            id: id.clone(),
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: request.protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            awaiting_join: true,
            awaiting_sync: false,
        };
        self.members.insert(id.clone(), member);
        let mut completions = Vec::new();
        if self.state == GroupState::PreparingRebalance {
            // A member arriving during the initial delay extends it (up to the deadline).
            if self.initial_delay_until_ms > now_ms {
                self.initial_delay_until_ms =
                    (now_ms + config.initial_rebalance_delay_ms).min(self.rebalance_deadline_ms);
            }
        } else {
            completions.extend(self.prepare_rebalance(config, now_ms));
        }
        completions.extend(self.try_complete_join(now_ms));
        (Reply::Wait(id), completions)
    }

    /// SyncGroup: the leader brings every member's assignment.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> (Reply<SyncResult>, Vec<Completion>) {
        let fail = |error| (Reply::Now(SyncResult::error(error)), Vec::new());
        if self.state == GroupState::Dead {
            return fail(GroupError::CoordinatorNotAvailable);
        }
        if let Err(error) = self.check_member(member_id, instance_id) {
            return fail(error);
        }
        if generation != self.generation {
            return fail(GroupError::IllegalGeneration);
        }
        match self.state {
            GroupState::CompletingRebalance => {
                self.members.get_mut(member_id).expect("checked").awaiting_sync = true;
                if self.leader.as_deref() != Some(member_id) {
                    return (Reply::Wait(member_id.to_string()), Vec::new());
                }
                let mut assigned: HashMap<String, Bytes> = assignments.into_iter().collect();
                for member in self.members.values_mut() {
                    member.assignment = assigned.remove(&member.id).unwrap_or_default();
                }
                self.state = GroupState::Stable;
                let mut completions = Vec::new();
                for member in self.members.values_mut() {
                    if std::mem::take(&mut member.awaiting_sync) && member.id != member_id {
                        completions.push(Completion::Sync {
                            member_id: member.id.clone(),
                            result: SyncResult {
                                error: None,
                                protocol_type: self.protocol_type.clone(),
                                protocol: self.protocol.clone(),
                                assignment: member.assignment.clone(),
                            },
                        });
                    }
                }
                (Reply::Now(self.sync_result(member_id)), completions)
            }
            GroupState::Stable => (Reply::Now(self.sync_result(member_id)), Vec::new()),
            _ => fail(GroupError::RebalanceInProgress),
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now_ms: i64,
    ) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        self.check_member(member_id, instance_id)?;
        let member = self.members.get_mut(member_id).expect("checked");
        if generation != self.generation && self.state != GroupState::PreparingRebalance {
            return Err(GroupError::IllegalGeneration);
        }
        member.last_heartbeat_ms = now_ms;
        match self.state {
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    /// LeaveGroup for one member (given by id, or by instance id for a static member).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        config: &GroupConfig,
        now_ms: i64,
    ) -> (Result<(), GroupError>, Vec<Completion>) {
        if self.state == GroupState::Dead {
            return (Err(GroupError::CoordinatorNotAvailable), Vec::new());
        }
        let id = match instance_id {
            Some(instance) => match self.instances.get(instance) {
                Some(id) if member_id.is_empty() || id == member_id => id.clone(),
                Some(_) => return (Err(GroupError::FencedInstance), Vec::new()),
                None => return (Err(GroupError::UnknownMember), Vec::new()),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            return (Ok(()), Vec::new());
        }
        if !self.members.contains_key(&id) {
            return (Err(GroupError::UnknownMember), Vec::new());
        }
        (Ok(()), self.remove_member(&id, config, now_ms))
    }

    /// Expires members whose session ran out, ends join phases whose time is up, and
    /// forgets unused member ids. Returns the answers this completes.
    pub fn tick(&mut self, config: &GroupConfig, now_ms: i64) -> Vec<Completion> {
        self.pending.retain(|_, expires| *expires > now_ms);
        let mut completions = Vec::new();
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && now_ms.saturating_sub(m.last_heartbeat_ms) > m.session_timeout_ms)
            .map(|m| m.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %self.id, member = %id, "member session expired");
            completions.extend(self.remove_member(&id, config, now_ms));
        }
        if self.state == GroupState::PreparingRebalance {
            if now_ms >= self.rebalance_deadline_ms {
                // Members that did not rejoin in time are out.
                let stragglers: Vec<String> =
                    self.members.values().filter(|m| !m.awaiting_join).map(|m| m.id.clone()).collect();
                for id in stragglers {
                    tracing::info!(group = %self.id, member = %id, "member did not rejoin within the rebalance timeout");
                    self.forget(&id);
                }
                completions.extend(self.complete_join());
            } else {
                completions.extend(self.try_complete_join(now_ms));
            }
        }
        completions
    }

    /// Checks that `member_id` of `generation` may commit offsets.
    pub fn check_commit(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<(), GroupError> {
        if self.state == GroupState::Dead {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation < 0 && member_id.is_empty() {
            // A commit outside the group protocol (admin tools, manual assignment): allowed
            // only while no member holds partitions.
            return if self.members.is_empty() { Ok(()) } else { Err(GroupError::UnknownMember) };
        }
        if self.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(GroupError::IllegalGeneration);
        }
        Ok(())
    }

    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), GroupError> {
        if let Some(instance) = instance_id
            && self.instances.get(instance).is_some_and(|id| id != member_id)
        {
            return Err(GroupError::FencedInstance);
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMember);
        }
        Ok(())
    }

    fn supports(&self, request: &JoinRequest) -> bool {
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref().is_some_and(|t| t != request.protocol_type) {
            return false;
        }
        // Some assignor every member (the new one included) supports must exist.
        request.protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.id != request.member_id)
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    fn new_member_id(&mut self, client_id: &str, now_ms: i64) -> String {
        self.next_member += 1;
        let client = if client_id.is_empty() { "member" } else { client_id };
        format!("{client}-{now_ms:x}-{:x}", self.next_member)
    }

    fn prepare_rebalance(&mut self, config: &GroupConfig, now_ms: i64) -> Vec<Completion> {
        let mut completions = Vec::new();
        if self.state == GroupState::CompletingRebalance {
            // Followers waiting for an assignment must rejoin instead.
            for member in self.members.values_mut() {
                if std::mem::take(&mut member.awaiting_sync) {
                    completions.push(Completion::Sync {
                        member_id: member.id.clone(),
                        result: SyncResult::error(GroupError::RebalanceInProgress),
                    });
                }
            }
        }
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
        self.rebalance_deadline_ms = now_ms + timeout;
        self.initial_delay_until_ms =
            if self.state == GroupState::Empty { now_ms + config.initial_rebalance_delay_ms.min(timeout) } else { 0 };
        self.state = GroupState::PreparingRebalance;
        tracing::info!(group = %self.id, members = self.members.len(), "rebalance started");
        completions
    }

    fn try_complete_join(&mut self, now_ms: i64) -> Vec<Completion> {
        let everyone_in = self.members.values().all(|m| m.awaiting_join);
        if self.state == GroupState::PreparingRebalance && everyone_in && now_ms >= self.initial_delay_until_ms {
            self.complete_join()
        } else {
            Vec::new()
        }
    }

    /// Ends the join phase: a new generation, a protocol, a leader; answers every join.
    fn complete_join(&mut self) -> Vec<Completion> {
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol = None;
            self.leader = None;
            return Vec::new();
        }
        self.protocol = self.choose_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol.as_deref().unwrap_or(""),
            "rebalance joined"
        );
        let ids: Vec<String> = self.members.keys().cloned().collect();
        let mut completions = Vec::new();
        for id in ids {
            let result = self.join_result(&id);
            let member = self.members.get_mut(&id).expect("listed");
            member.awaiting_join = false;
            member.assignment = Bytes::new();
            completions.push(Completion::Join { member_id: id, result });
        }
        completions
    }

    /// Each member votes for its most preferred assignor among those all support.
    fn choose_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| self.members.values().all(|m| m.protocols.iter().any(|(n, _)| n == *name)))
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, *c)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(n, _)| candidates.contains(&n))
                && let Some(entry) = votes.iter_mut().find(|(_, c)| *c == name)
            {
                entry.0 += 1;
            }
        }
        // Most votes; ties go to the first member's preference.
        let best = votes.iter().map(|(n, _)| *n).max()?;
        votes.into_iter().find(|(n, _)| *n == best).map(|(_, name)| name.clone())
    }

    fn join_result(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        let protocol = self.protocol.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members.values().map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata_for(&protocol))).collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    fn sync_result(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol: self.protocol.clone(),
            assignment: self.members.get(member_id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    fn remove_member(&mut self, id: &str, config: &GroupConfig, now_ms: i64) -> Vec<Completion> {
        self.forget(id);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                let mut completions = self.prepare_rebalance(config, now_ms);
                // Nobody waits for the initial delay after a departure.
                self.initial_delay_until_ms = 0;
                completions.extend(self.try_complete_join(now_ms));
                completions
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms),
            GroupState::Empty | GroupState::Dead => Vec::new(),
        }
    }

    fn forget(&mut self, id: &str) {
        if let Some(member) = self.members.remove(id)
            && let Some(instance) = member.instance_id
        {
            self.instances.remove(&instance);
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }
}
