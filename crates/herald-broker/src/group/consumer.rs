//! The next-generation consumer group protocol's decisions (KIP-848), as plain code
//! driven by `now`: members heartbeat with their member epoch, the broker computes a
//! target assignment (the uniform assignor) whenever the group epoch moves, and each
//! member is reconciled toward its target, revoking before it is given anything another
//! member still holds. `GroupManager` keeps one per group id of this protocol; the
//! ConsumerGroupHeartbeat handler feeds it.

use std::collections::{BTreeMap, BTreeSet};

/// A topic partition, by topic name.
pub(crate) type Place = (String, i32);

/// The server-side assignors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Assignor {
    /// Every partition dealt round-robin (Kafka's default).
    Uniform,
    /// Each topic's partitions in contiguous ranges.
    Range,
}

impl Assignor {
    /// `uniform` or `range`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "uniform" => Some(Self::Uniform),
            "range" => Some(Self::Range),
            _ => None,
        }
    }

    /// Its name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Uniform => "uniform",
            Self::Range => "range",
        }
    }
}

/// A member as the group sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    /// The epoch the member is at.
    epoch: i32,
    subscriptions: BTreeSet<String>,
    /// What the member was last told it owns.
    assigned: BTreeSet<Place>,
    /// What it was told to give up and has not yet reported given up: still its own,
    /// so no other member is given these.
    revoking: BTreeSet<Place>,
    /// The assignor it asked for, if any.
    assignor: Option<Assignor>,
    last_seen_ms: i64,
}

/// One heartbeat's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heartbeat {
    pub(crate) member_id: String,
    /// 0 to join, -1 to leave, else the epoch the member believes it is at.
    pub(crate) member_epoch: i32,
    /// Topic names; `None`: unchanged.
    pub(crate) subscriptions: Option<BTreeSet<String>>,
    /// What the member owns now; `None`: unchanged.
    pub(crate) owned: Option<BTreeSet<Place>>,
    /// The assignor it asks for; `None`: unchanged.
    pub(crate) assignor: Option<Assignor>,
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The member's epoch and what it owns from now on.
    Assignment { epoch: i32, partitions: BTreeSet<Place> },
    /// The member left.
    Left,
    /// An epoch the member is not at (FENCED_MEMBER_EPOCH): it must rejoin with epoch 0.
    Fenced,
    /// A member id the group does not know (UNKNOWN_MEMBER_ID).
    Unknown,
    /// A join past [`MEMBERS_MAX`] (GROUP_MAX_SIZE_REACHED).
    Full,
}

/// Members per group at most.
pub(crate) const MEMBERS_MAX: usize = 1_000;

/// A member as ConsumerGroupDescribe shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemberView {
    pub(crate) member_id: String,
    pub(crate) epoch: i32,
    pub(crate) subscriptions: BTreeSet<String>,
    pub(crate) assigned: BTreeSet<Place>,
    pub(crate) target: BTreeSet<Place>,
}

/// A consumer group of the new protocol.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConsumerGroup {
    /// Bumps whenever membership or a subscription changes.
    epoch: i32,
    members: BTreeMap<String, Member>,
    target: BTreeMap<String, BTreeSet<Place>>,
    target_epoch: i32,
    /// The partition counts of the subscribed topics the target was computed from: a
    /// topic created or grown moves the group epoch.
    counts: BTreeMap<String, u32>,
}

impl ConsumerGroup {
    /// Handles `beat` at `now_ms`; `partitions` gives each topic's partition count.
    pub(crate) fn heartbeat(&mut self, beat: Heartbeat, partitions: &BTreeMap<String, u32>, now_ms: i64) -> Answer {
        match beat.member_epoch {
            -1 => return self.leave(&beat.member_id),
            0 if !self.members.contains_key(&beat.member_id) && self.members.len() >= MEMBERS_MAX => {
                return Answer::Full;
            }
            0 => self.join(&beat.member_id, now_ms),
            epoch => match self.members.get(&beat.member_id) {
                None => return Answer::Unknown,
                Some(member) if member.epoch != epoch => return Answer::Fenced,
                Some(_) => {}
            },
        }
        let member = self.members.get_mut(&beat.member_id).expect("joined or known");
        member.last_seen_ms = now_ms;
        if let Some(subscriptions) = beat.subscriptions
            && subscriptions != member.subscriptions
        {
            member.subscriptions = subscriptions;
            self.epoch += 1;
        }
        let member = self.members.get_mut(&beat.member_id).expect("known");
        if beat.assignor.is_some() && beat.assignor != member.assignor {
            member.assignor = beat.assignor;
            self.epoch += 1;
        }
        let member = self.members.get_mut(&beat.member_id).expect("known");
        if let Some(owned) = beat.owned {
            // A member acknowledges a revocation by no longer listing the partition.
            member.revoking.retain(|p| owned.contains(p));
        }
        let subscribed: BTreeSet<&String> = self.members.values().flat_map(|m| m.subscriptions.iter()).collect();
        let counts: BTreeMap<String, u32> =
            subscribed.into_iter().filter_map(|t| Some((t.clone(), *partitions.get(t)?))).collect();
        if counts != self.counts {
            self.counts = counts;
            self.epoch += 1;
        }
        if self.target_epoch < self.epoch {
            self.target = match self.assignor() {
                Assignor::Uniform => uniform(&self.members, partitions),
                Assignor::Range => range(&self.members, partitions),
            };
            self.target_epoch = self.epoch;
        }
        self.reconcile(&beat.member_id)
    }

    /// The assignor most members ask for (uniform on a tie or when none asks).
    pub(crate) fn assignor(&self) -> Assignor {
        let votes = |a: Assignor| self.members.values().filter(|m| m.assignor == Some(a)).count();
        if votes(Assignor::Range) > votes(Assignor::Uniform) { Assignor::Range } else { Assignor::Uniform }
    }

    /// True when no member is in the group.
    pub(crate) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The group epoch and the epoch of its target assignment.
    pub(crate) fn epochs(&self) -> (i32, i32) {
        (self.epoch, self.target_epoch)
    }

    /// Each member: id, epoch, subscriptions, what it owns, and its target.
    pub(crate) fn members(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                epoch: m.epoch,
                subscriptions: m.subscriptions.clone(),
                assigned: m.assigned.clone(),
                target: self.target.get(id).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// Members silent for longer than `session_timeout_ms` leave; returns their ids.
    pub(crate) fn expire(&mut self, now_ms: i64, session_timeout_ms: i64) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| now_ms.saturating_sub(m.last_seen_ms) > session_timeout_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.leave(id);
        }
        gone
    }

    /// Whether `member_id` at `member_epoch` may commit offsets (else STALE_MEMBER_EPOCH
    /// or UNKNOWN_MEMBER_ID).
    pub(crate) fn may_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), Answer> {
        match self.members.get(member_id) {
            None => Err(Answer::Unknown),
            Some(member) if member.epoch != member_epoch => Err(Answer::Fenced),
            Some(_) => Ok(()),
        }
    }

    fn join(&mut self, member_id: &str, now_ms: i64) {
        // A rejoin (after being fenced) starts over with nothing owned.
        let fresh = Member {
            epoch: 0,
            subscriptions: BTreeSet::new(),
            assigned: BTreeSet::new(),
            revoking: BTreeSet::new(),
            assignor: None,
            last_seen_ms: now_ms,
        };
        self.members.insert(member_id.to_string(), fresh);
        self.epoch += 1;
    }

    fn leave(&mut self, member_id: &str) -> Answer {
        if self.members.remove(member_id).is_some() {
            self.epoch += 1;
        }
        Answer::Left
    }

    /// Moves `member_id` toward its target: first it gives up what it should not own, and
    /// only once it has reported that does it take the target epoch and every target
    /// partition no other member still holds (assigned or not yet given up).
    fn reconcile(&mut self, member_id: &str) -> Answer {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let held_elsewhere: BTreeSet<Place> = self
            .members
            .iter()
            .filter(|(id, _)| id.as_str() != member_id)
            .flat_map(|(_, m)| m.assigned.iter().chain(&m.revoking).cloned())
            .collect();
        let member = self.members.get_mut(member_id).expect("known");
        let to_revoke: Vec<Place> = member.assigned.iter().filter(|p| !target.contains(*p)).cloned().collect();
        if !to_revoke.is_empty() || !member.revoking.is_empty() {
            for place in to_revoke {
                member.assigned.remove(&place);
                member.revoking.insert(place);
            }
            return Answer::Assignment { epoch: member.epoch, partitions: member.assigned.clone() };
        }
        member.epoch = self.target_epoch;
        member.assigned = target.into_iter().filter(|p| !held_elsewhere.contains(p)).collect();
        Answer::Assignment { epoch: member.epoch, partitions: member.assigned.clone() }
    }
}

/// The uniform assignor: every partition of the subscribed topics, dealt round-robin to
/// the members subscribed to its topic, in a stable order.
fn uniform(
    members: &BTreeMap<String, Member>,
    partitions: &BTreeMap<String, u32>,
) -> BTreeMap<String, BTreeSet<Place>> {
    let mut target: BTreeMap<String, BTreeSet<Place>> =
        members.keys().map(|id| (id.clone(), BTreeSet::new())).collect();
    let mut next = 0usize;
    for (topic, count) in partitions {
        let takers: Vec<&String> =
            members.iter().filter(|(_, m)| m.subscriptions.contains(topic)).map(|(id, _)| id).collect();
        if takers.is_empty() {
            continue;
        }
        for partition in 0..*count as i32 {
            let taker = takers[next % takers.len()];
            next += 1;
            target.entry(taker.clone()).or_default().insert((topic.clone(), partition));
        }
    }
    target
}

/// The range assignor: each topic's partitions split into contiguous ranges over the
/// members subscribed to it, in member id order, the first ones taking one more.
fn range(members: &BTreeMap<String, Member>, partitions: &BTreeMap<String, u32>) -> BTreeMap<String, BTreeSet<Place>> {
    let mut target: BTreeMap<String, BTreeSet<Place>> =
        members.keys().map(|id| (id.clone(), BTreeSet::new())).collect();
    for (topic, count) in partitions {
        let takers: Vec<&String> =
            members.iter().filter(|(_, m)| m.subscriptions.contains(topic)).map(|(id, _)| id).collect();
        if takers.is_empty() {
            continue;
        }
        let (each, extra) = (*count as usize / takers.len(), *count as usize % takers.len());
        let mut next = 0i32;
        for (i, taker) in takers.iter().enumerate() {
            let share = (each + usize::from(i < extra)) as i32;
            let entry = target.entry((*taker).clone()).or_default();
            entry.extend((next..next + share).map(|p| (topic.clone(), p)));
            next += share;
        }
    }
    target
}

#[cfg(test)]
mod tests;
