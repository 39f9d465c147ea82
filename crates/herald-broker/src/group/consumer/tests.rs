//! A model check of the new group protocol's decisions: members join, leave and
//! heartbeat in any order, each honest about what it was told; no partition is ever
//! owned by two members, and once membership settles every partition has one owner.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

/// A member as a client keeps it: what it was last told, and what it is really using.
/// A revoked partition stays in use until the client's next heartbeat, which is when it
/// reports having let it go.
#[derive(Debug, Default, Clone)]
struct Client {
    epoch: i32,
    owned: BTreeSet<Place>,
    using: BTreeSet<Place>,
}

fn beat(group: &mut ConsumerGroup, id: &str, client: &mut Client, topics: &BTreeMap<String, u32>, now: i64) -> Answer {
    // Revocations are done before the heartbeat that reports them.
    client.using = client.owned.clone();
    let subscriptions = (client.epoch == 0).then(|| topics.keys().cloned().collect());
    let heartbeat = Heartbeat {
        member_id: id.to_string(),
        member_epoch: client.epoch,
        subscriptions,
        owned: Some(client.owned.clone()),
        assignor: None,
    };
    let answer = group.heartbeat(heartbeat, topics, now);
    if let Answer::Assignment { epoch, partitions } = &answer {
        client.epoch = *epoch;
        client.owned = partitions.clone();
        // New partitions are used at once; revoked ones until the next heartbeat.
        client.using.extend(partitions.iter().cloned());
    }
    answer
}

fn owned_twice(clients: &BTreeMap<String, Client>) -> Option<Place> {
    let mut seen = BTreeSet::new();
    clients.values().flat_map(|c| c.using.iter()).find(|p| !seen.insert((*p).clone())).cloned()
}

proptest! {
    #[test]
    fn no_partition_is_ever_owned_twice_and_a_settled_group_owns_them_all(
        steps in prop::collection::vec((0u8..5, 0u8..4), 1..120),
    ) {
        let topics: BTreeMap<String, u32> = [("a".to_string(), 5), ("b".to_string(), 3)].into();
        let mut group = ConsumerGroup::default();
        let mut clients: BTreeMap<String, Client> = BTreeMap::new();
        for (now, (who, what)) in steps.into_iter().enumerate() {
            let id = format!("m{who}");
            match what {
                0 if !clients.contains_key(&id) => {
                    let mut client = Client::default();
                    beat(&mut group, &id, &mut client, &topics, now as i64);
                    clients.insert(id, client);
                }
                1 if clients.contains_key(&id) => {
                    group.heartbeat(Heartbeat { member_id: id.clone(), member_epoch: -1, subscriptions: None, owned: None, assignor: None }, &topics, now as i64);
                    clients.remove(&id);
                }
                _ => {
                    if let Some(mut client) = clients.remove(&id) {
                        let answer = beat(&mut group, &id, &mut client, &topics, now as i64);
                        prop_assert!(matches!(answer, Answer::Assignment { .. }), "an honest member is never fenced: {answer:?}");
                        clients.insert(id, client);
                    }
                }
            }
            prop_assert_eq!(owned_twice(&clients), None);
        }
        // Membership settles: a few rounds of heartbeats hand every partition out once.
        for round in 0..4 {
            let ids: Vec<String> = clients.keys().cloned().collect();
            for id in ids {
                let mut client = clients.remove(&id).expect("client");
                beat(&mut group, &id, &mut client, &topics, 1_000 + round);
                clients.insert(id, client);
                prop_assert_eq!(owned_twice(&clients), None);
            }
        }
        if !clients.is_empty() {
            let owned: BTreeSet<Place> = clients.values().flat_map(|c| c.owned.iter().cloned()).collect();
            prop_assert_eq!(owned.len(), 8, "every partition of a and b has an owner: {:?}", clients);
        }
    }
}

#[test]
fn a_stale_epoch_is_fenced_and_commits_follow_the_member_epoch() {
    let topics: BTreeMap<String, u32> = [("a".to_string(), 2)].into();
    let mut group = ConsumerGroup::default();
    let mut client = Client::default();
    beat(&mut group, "m", &mut client, &topics, 0);
    assert_eq!(client.owned.len(), 2, "the only member takes both partitions");
    assert!(client.epoch > 0);
    assert_eq!(group.may_commit("m", client.epoch), Ok(()));
    assert_eq!(group.may_commit("m", client.epoch - 1), Err(Answer::Fenced));
    assert_eq!(group.may_commit("stranger", 1), Err(Answer::Unknown));
    let stale = Heartbeat { member_id: "m".into(), member_epoch: 1, subscriptions: None, owned: None, assignor: None };
    assert_eq!(group.heartbeat(stale, &topics, 1), Answer::Fenced);
}

#[test]
fn a_second_member_gets_partitions_only_after_the_first_gives_them_up() {
    let topics: BTreeMap<String, u32> = [("a".to_string(), 4)].into();
    let mut group = ConsumerGroup::default();
    let (mut first, mut second) = (Client::default(), Client::default());
    beat(&mut group, "m1", &mut first, &topics, 0);
    assert_eq!(first.owned.len(), 4);
    beat(&mut group, "m2", &mut second, &topics, 1);
    assert!(second.owned.is_empty(), "m1 still holds everything: {second:?}");
    beat(&mut group, "m1", &mut first, &topics, 2);
    assert_eq!(first.owned.len(), 2, "m1 is told to revoke half");
    beat(&mut group, "m2", &mut second, &topics, 3);
    assert!(second.owned.is_empty(), "not before m1 reports them given up");
    beat(&mut group, "m1", &mut first, &topics, 4);
    beat(&mut group, "m2", &mut second, &topics, 5);
    assert_eq!(second.owned.len(), 2, "then m2 takes them");
    assert!(first.owned.is_disjoint(&second.owned));
    assert_eq!(group.expire(100_000, 45_000), ["m1", "m2"]);
}

#[test]
fn the_range_assignor_gives_contiguous_ranges_when_most_members_ask_for_it() {
    let topics: BTreeMap<String, u32> = [("a".to_string(), 5)].into();
    let mut group = ConsumerGroup::default();
    let join = |id: &str| Heartbeat {
        member_id: id.to_string(),
        member_epoch: 0,
        subscriptions: Some(["a".to_string()].into()),
        owned: Some(BTreeSet::new()),
        assignor: Some(Assignor::Range),
    };
    group.heartbeat(join("m1"), &topics, 0);
    group.heartbeat(join("m2"), &topics, 1);
    assert_eq!(group.assignor(), Assignor::Range);
    let targets: Vec<BTreeSet<Place>> = group.members().into_iter().map(|m| m.target).collect();
    let place = |p: i32| ("a".to_string(), p);
    assert_eq!(targets[0], [place(0), place(1), place(2)].into());
    assert_eq!(targets[1], [place(3), place(4)].into());
    assert_eq!(Assignor::parse("sticky"), None);
}

#[test]
fn a_topic_created_after_the_subscription_is_assigned_when_it_appears() {
    let mut group = ConsumerGroup::default();
    let mut client = Client::default();
    let none: BTreeMap<String, u32> = BTreeMap::new();
    let join = Heartbeat {
        member_id: "m".into(),
        member_epoch: 0,
        subscriptions: Some(["later".to_string()].into()),
        owned: Some(BTreeSet::new()),
        assignor: None,
    };
    let Answer::Assignment { epoch, partitions } = group.heartbeat(join, &none, 0) else { panic!("joined") };
    assert!(partitions.is_empty(), "no topic yet");
    client.epoch = epoch;
    let topics: BTreeMap<String, u32> = [("later".to_string(), 3)].into();
    beat(&mut group, "m", &mut client, &topics, 1);
    assert_eq!(client.owned.len(), 3, "the new topic's partitions");
    assert!(client.epoch > epoch, "the group epoch moved with it");
}
