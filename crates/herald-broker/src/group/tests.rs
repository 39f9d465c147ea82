//! The coordinator state machine driven by a manual clock: no sockets, no sleeps.

use bytes::Bytes;

use super::coordinator::*;

const CONFIG: GroupConfig = GroupConfig {
    min_session_timeout_ms: 1_000,
    max_session_timeout_ms: 60_000,
    initial_rebalance_delay_ms: 3_000,
    consumer_session_timeout_ms: 45_000,
    consumer_heartbeat_interval_ms: 5_000,
};

fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: "c".into(),
        client_host: "h".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|p| (p.to_string(), Bytes::from(format!("meta-{p}")))).collect(),
        require_known_member_id: true,
    }
}

/// First join (MEMBER_ID_REQUIRED) then the real one; returns the member id.
fn join_new(group: &mut Group, protocols: &[&str], now: i64) -> (String, Vec<Completion>) {
    let (reply, _) = group.join(request("", protocols), &CONFIG, now);
    let Reply::Now(JoinResult { error: Some(GroupError::MemberIdRequired), member_id, .. }) = reply else {
        panic!("expected MEMBER_ID_REQUIRED, got {reply:?}");
    };
    let (reply, completions) = group.join(request(&member_id, protocols), &CONFIG, now);
    assert_eq!(reply, Reply::Wait(member_id.clone()));
    (member_id, completions)
}

fn joined(completions: &[Completion], member: &str) -> JoinResult {
    completions
        .iter()
        .find_map(|c| match c {
            Completion::Join { member_id, result } if member_id == member => Some(result.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no join completion for {member} in {completions:?}"))
}

/// Two members in a stable group; returns (group, leader, follower).
fn stable_pair() -> (Group, String, String) {
    let mut group = Group::new("g");
    let (a, early) = join_new(&mut group, &["range"], 0);
    assert!(early.is_empty(), "the initial delay holds the first join");
    let (b, _) = join_new(&mut group, &["range"], 1_000);
    let done = group.tick(&CONFIG, 4_100);
    let result_a = joined(&done, &a);
    let result_b = joined(&done, &b);
    assert_eq!(result_a.generation, 1);
    assert_eq!(result_a.leader, a, "the first member leads");
    assert_eq!(result_a.members.len(), 2, "the leader sees every member");
    assert!(result_b.members.is_empty(), "followers see none");
    assert_eq!(group.state(), GroupState::CompletingRebalance);
    let (follower_sync, _) = group.sync(&b, None, 1, vec![]);
    assert_eq!(follower_sync, Reply::Wait(b.clone()));
    let assignments = vec![(a.clone(), Bytes::from_static(b"A")), (b.clone(), Bytes::from_static(b"B"))];
    let (leader_sync, completions) = group.sync(&a, None, 1, assignments);
    let Reply::Now(SyncResult { error: None, assignment, .. }) = leader_sync else { panic!("{leader_sync:?}") };
    assert_eq!(&assignment[..], b"A");
    assert!(
        matches!(&completions[..], [Completion::Sync { member_id, result }] if *member_id == b && &result.assignment[..] == b"B")
    );
    assert_eq!(group.state(), GroupState::Stable);
    (group, a, b)
}

#[test]
fn joins_wait_out_the_initial_delay_then_sync_hands_out_assignments() {
    stable_pair();
}

#[test]
fn a_silent_member_expires_and_the_rest_rebalance_without_it() {
    let (mut group, a, b) = stable_pair();
    // a keeps heartbeating; b went quiet after its join at 1 s (10 s session).
    for t in (5_000..=11_000).step_by(1_000) {
        assert_eq!(group.heartbeat(&a, None, 1, t), Ok(()));
        assert!(group.tick(&CONFIG, t).is_empty());
        assert_eq!(group.state(), GroupState::Stable, "b is still within its session at {t}");
    }
    assert!(group.tick(&CONFIG, 15_200).is_empty(), "b expired; a must rejoin first");
    assert_eq!(group.state(), GroupState::PreparingRebalance);
    assert_eq!(group.heartbeat(&a, None, 1, 15_300), Err(GroupError::RebalanceInProgress));
    let (reply, done) = group.join(request(&a, &["range"]), &CONFIG, 15_400);
    assert_eq!(reply, Reply::Wait(a.clone()));
    let result = joined(&done, &a);
    assert_eq!(result.generation, 2);
    assert_eq!(result.members.len(), 1);
    assert_eq!(group.check_commit(&b, None, 1), Err(GroupError::RebalanceInProgress), "completing: no commits");
    let _ = group.sync(&a, None, 2, vec![(a.clone(), Bytes::from_static(b"AB"))]);
    // The expired member is gone for good: it cannot heartbeat, sync or commit.
    assert_eq!(group.heartbeat(&b, None, 1, 15_500), Err(GroupError::UnknownMember));
    assert_eq!(group.check_commit(&b, None, 1), Err(GroupError::UnknownMember));
}

#[test]
fn a_zombie_commit_is_refused_and_the_new_generation_commits() {
    let (mut group, a, b) = stable_pair();
    assert_eq!(group.check_commit(&b, None, 1), Ok(()));
    let (_, done) = group.leave(&a, None, &CONFIG, 5_000);
    assert!(done.is_empty(), "b has to rejoin first");
    assert_eq!(group.check_commit(&b, None, 1), Ok(()), "the current generation may commit while preparing");
    let (_, done) = group.join(request(&b, &["range"]), &CONFIG, 5_100);
    assert_eq!(joined(&done, &b).generation, 2);
    assert_eq!(group.check_commit(&b, None, 1), Err(GroupError::RebalanceInProgress), "completing: no commits");
    let _ = group.sync(&b, None, 2, vec![(b.clone(), Bytes::new())]);
    assert_eq!(group.check_commit(&b, None, 1), Err(GroupError::IllegalGeneration), "an old generation");
    assert_eq!(group.check_commit(&a, None, 1), Err(GroupError::UnknownMember), "a member that left");
    assert_eq!(group.check_commit(&b, None, 2), Ok(()));
    assert_eq!(
        group.check_commit("", None, -1),
        Err(GroupError::UnknownMember),
        "no outside commits while members hold partitions"
    );
}

#[test]
fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
    let (mut group, a, b) = stable_pair();
    // a rejoins (a leader rejoin starts a rebalance); b keeps its session alive with
    // heartbeats but never rejoins.
    let (_, done) = group.join(request(&a, &["range"]), &CONFIG, 5_000);
    assert!(done.is_empty());
    for t in (6_000..=34_000).step_by(4_000) {
        assert_eq!(group.heartbeat(&b, None, 1, t), Err(GroupError::RebalanceInProgress));
        assert!(group.tick(&CONFIG, t).is_empty(), "still within the 30 s rebalance timeout at {t}");
    }
    let done = group.tick(&CONFIG, 35_001);
    let result = joined(&done, &a);
    assert_eq!((result.generation, result.members.len()), (2, 1));
    assert!(!group.members().contains_key(&b));
}

#[test]
fn static_members_rejoin_without_a_rebalance_and_fence_their_old_id() {
    let mut group = Group::new("g");
    let static_request =
        |member: &str| JoinRequest { instance_id: Some("instance-1".into()), ..request(member, &["range"]) };
    let (reply, done) = group.join(static_request(""), &CONFIG, 0);
    let Reply::Wait(first_id) = reply else { panic!("static members skip MEMBER_ID_REQUIRED: {reply:?}") };
    assert!(done.is_empty());
    let done = group.tick(&CONFIG, 3_100);
    assert_eq!(joined(&done, &first_id).generation, 1);
    let _ = group.sync(&first_id, Some("instance-1"), 1, vec![(first_id.clone(), Bytes::from_static(b"P"))]);
    assert_eq!(group.state(), GroupState::Stable);

    // The process restarts and joins again with the same instance id.
    let (reply, done) = group.join(static_request(""), &CONFIG, 4_000);
    let Reply::Now(result) = reply else { panic!("a stable static rejoin answers at once: {reply:?}") };
    assert!(done.is_empty());
    assert_eq!(result.generation, 1, "no rebalance");
    assert_ne!(result.member_id, first_id);
    let (sync, _) = group.sync(&result.member_id, Some("instance-1"), 1, vec![]);
    assert!(matches!(sync, Reply::Now(SyncResult { error: None, ref assignment, .. }) if &assignment[..] == b"P"));
    // The old incarnation is fenced.
    assert_eq!(group.heartbeat(&first_id, Some("instance-1"), 1, 4_100), Err(GroupError::FencedInstance));
    assert_eq!(group.check_commit(&first_id, Some("instance-1"), 1), Err(GroupError::FencedInstance));
}

#[test]
fn the_assignor_is_one_every_member_supports_by_vote() {
    let mut group = Group::new("g");
    let (a, _) = join_new(&mut group, &["cooperative-sticky", "range"], 0);
    let (b, _) = join_new(&mut group, &["range", "cooperative-sticky"], 0);
    let (c, _) = join_new(&mut group, &["cooperative-sticky", "range"], 0);
    let done = group.tick(&CONFIG, 3_000);
    assert_eq!(joined(&done, &a).protocol.as_deref(), Some("cooperative-sticky"), "two votes to one");
    let _ = (b, c);
    // A member that shares no assignor with the group is refused.
    let (reply, _) = group.join(request("", &["roundrobin"]), &CONFIG, 3_100);
    assert!(matches!(reply, Reply::Now(JoinResult { error: Some(GroupError::InconsistentProtocol), .. })));
}

#[test]
fn the_last_member_leaving_empties_the_group_and_bad_joins_are_refused() {
    let (mut group, a, b) = stable_pair();
    assert_eq!(group.leave(&a, None, &CONFIG, 5_000).0, Ok(()));
    assert_eq!(group.leave(&b, None, &CONFIG, 5_001).0, Ok(()));
    assert_eq!(group.state(), GroupState::Empty);
    assert_eq!(group.leave(&b, None, &CONFIG, 5_002).0, Err(GroupError::UnknownMember));
    assert_eq!(group.check_commit("", None, -1), Ok(()), "an empty group takes outside commits");
    let too_short = JoinRequest { session_timeout_ms: 10, ..request("", &["range"]) };
    assert!(matches!(
        group.join(too_short, &CONFIG, 6_000).0,
        Reply::Now(JoinResult { error: Some(GroupError::InvalidSessionTimeout), .. })
    ));
    assert!(matches!(
        group.join(request("made-up", &["range"]), &CONFIG, 6_000).0,
        Reply::Now(JoinResult { error: Some(GroupError::UnknownMember), .. })
    ));
}
