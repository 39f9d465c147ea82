//! `herald groups list|describe|reset-offsets|delete`: consumer groups, their members and
//! assignments, committed offsets and lag; moving a stopped group's offsets (dry run unless
//! `--execute`).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::cluster::{ClusterArgs, print_table};

/// `herald groups ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct GroupsArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: GroupsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GroupsCommand {
    /// Groups with their state and member count.
    List,
    /// Members and their assignments; committed offsets and lag per partition.
    Describe {
        /// The group.
        group: String,
    },
    /// Move a stopped group's committed offsets (prints the plan; --execute applies it).
    ResetOffsets {
        /// The group.
        group: String,
        /// Topics to reset (repeatable) [default: the topics the group has offsets for].
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// To each partition's oldest record.
        #[arg(long, group = "target")]
        to_earliest: bool,
        /// To each partition's end (skip everything not yet read).
        #[arg(long, group = "target")]
        to_latest: bool,
        /// To the first record at or after this time (RFC 3339, e.g. 2026-11-27T08:00:00Z).
        #[arg(long, group = "target", value_parser = herald::time::parse_rfc3339_ms)]
        to_datetime: Option<i64>,
        /// Apply the plan (without it, nothing changes).
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group and its committed offsets.
    Delete {
        /// The group.
        group: String,
    },
}

/// One partition's place: committed offset, start and end of the log.
struct Place {
    committed: Option<i64>,
    start: i64,
    end: i64,
}

pub(crate) fn run(args: GroupsArgs) -> anyhow::Result<()> {
    let cluster = &args.cluster;
    match args.command {
        GroupsCommand::List => list(cluster),
        GroupsCommand::Describe { group } => describe(cluster, &group),
        GroupsCommand::ResetOffsets { group, topics, to_earliest, to_latest, to_datetime, execute } => {
            let target = match (to_earliest, to_latest, to_datetime) {
                (true, _, _) => Target::Earliest,
                (_, true, _) => Target::Latest,
                (_, _, Some(ms)) => Target::Time(ms),
                _ => bail!("say where to: --to-earliest, --to-latest or --to-datetime"),
            };
            reset(cluster, &group, &topics, target, execute)
        }
        GroupsCommand::Delete { group } => {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
            runtime.block_on(delete(cluster, &group))
        }
    }
}

fn list(cluster: &ClusterArgs) -> anyhow::Result<()> {
    let consumer = cluster.consumer()?;
    cluster.metadata(&consumer, None)?;
    let groups = consumer.fetch_group_list(None, cluster.timeout()).context("listing groups")?;
    let mut rows: Vec<(String, String, usize)> =
        groups.groups().iter().map(|g| (g.name().to_string(), g.state().to_string(), g.members().len())).collect();
    rows.sort();
    if cluster.json {
        let list: Vec<_> = rows.iter().map(|(n, s, m)| json!({"group": n, "state": s, "members": m})).collect();
        println!("{}", serde_json::Value::Array(list));
    } else {
        let rows: Vec<Vec<String>> = rows.into_iter().map(|(n, s, m)| vec![n, s, m.to_string()]).collect();
        print_table(&["GROUP", "STATE", "MEMBERS"], &rows);
    }
    Ok(())
}

/// A consumer that reads (and may commit) `group`'s offsets without joining it.
fn group_consumer(cluster: &ClusterArgs, group: &str) -> anyhow::Result<BaseConsumer> {
    cluster
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .with_context(|| format!("connecting to {}", cluster.brokers))
}

/// Committed offsets and log bounds for `topics` (all topics when empty, keeping only
/// partitions the group has committed to).
fn places(
    cluster: &ClusterArgs,
    consumer: &BaseConsumer,
    topics: &[String],
) -> anyhow::Result<BTreeMap<(String, i32), Place>> {
    let metadata = cluster.metadata(consumer, None)?;
    let mut wanted = TopicPartitionList::new();
    for topic in metadata.topics() {
        let chosen =
            if topics.is_empty() { !topic.name().starts_with("__") } else { topics.iter().any(|t| t == topic.name()) };
        if chosen {
            for p in topic.partitions() {
                wanted.add_partition(topic.name(), p.id());
            }
        }
    }
    for topic in topics {
        if !metadata.topics().iter().any(|t| t.name() == topic && !t.partitions().is_empty()) {
            bail!("topic {topic} does not exist");
        }
    }
    let committed = consumer.committed_offsets(wanted, cluster.timeout()).context("reading committed offsets")?;
    // Without --topic: every partition of each topic the group has committed to.
    let consumed: std::collections::HashSet<String> = committed
        .elements()
        .iter()
        .filter(|e| matches!(e.offset(), Offset::Offset(_)))
        .map(|e| e.topic().to_string())
        .collect();
    let mut places = BTreeMap::new();
    for element in committed.elements() {
        let offset = match element.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        };
        if topics.is_empty() && !consumed.contains(element.topic()) {
            continue;
        }
        let (start, end) = consumer
            .fetch_watermarks(element.topic(), element.partition(), cluster.timeout())
            .with_context(|| format!("reading the offsets of {}/{}", element.topic(), element.partition()))?;
        places.insert((element.topic().to_string(), element.partition()), Place { committed: offset, start, end });
    }
    Ok(places)
}

fn describe(cluster: &ClusterArgs, group: &str) -> anyhow::Result<()> {
    let consumer = group_consumer(cluster, group)?;
    cluster.metadata(&consumer, None)?;
    let list = consumer.fetch_group_list(Some(group), cluster.timeout()).context("describing the group")?;
    let info = list.groups().iter().find(|g| g.name() == group);
    let places = places(cluster, &consumer, &[])?;
    let state = info.map_or("Dead", |g| g.state());
    if info.is_none_or(|g| g.state() == "Dead") && places.is_empty() {
        bail!("group {group} does not exist");
    }
    let mut owners: BTreeMap<(String, i32), String> = BTreeMap::new();
    let mut members = Vec::new();
    for member in info.map(|g| g.members()).unwrap_or_default() {
        let assigned = member.assignment().and_then(decode_assignment).unwrap_or_default();
        for (topic, partitions) in &assigned {
            for p in partitions {
                owners.insert((topic.clone(), *p), member.client_id().to_string());
            }
        }
        let text: Vec<String> = assigned.iter().map(|(t, ps)| format!("{t}{ps:?}")).collect();
        members.push((
            member.id().to_string(),
            member.client_id().to_string(),
            member.client_host().to_string(),
            text.join(" "),
        ));
    }
    let lag = |p: &Place| p.committed.map(|c| (p.end - c).max(0));
    if cluster.json {
        let members: Vec<_> = members
            .iter()
            .map(|(id, client, host, assignment)| json!({"member": id, "client_id": client, "host": host, "assignment": assignment}))
            .collect();
        let offsets: Vec<_> = places
            .iter()
            .map(|((topic, partition), p)| {
                json!({"topic": topic, "partition": partition, "committed": p.committed, "end": p.end,
                       "lag": lag(p), "owner": owners.get(&(topic.clone(), *partition))})
            })
            .collect();
        let total: i64 = places.values().filter_map(lag).sum();
        println!("{}", json!({"group": group, "state": state, "members": members, "offsets": offsets, "lag": total}));
        return Ok(());
    }
    let total: i64 = places.values().filter_map(lag).sum();
    println!("group {group}: {state}, {} member(s), total lag {total}", members.len());
    if !members.is_empty() {
        let rows: Vec<Vec<String>> = members.into_iter().map(|(a, b, c, d)| vec![a, b, c, d]).collect();
        print_table(&["MEMBER", "CLIENT", "HOST", "ASSIGNMENT"], &rows);
        println!();
    }
    let rows: Vec<Vec<String>> = places
        .iter()
        .map(|((topic, partition), p)| {
            vec![
                topic.clone(),
                partition.to_string(),
                p.committed.map_or("-".into(), |c| c.to_string()),
                p.end.to_string(),
                lag(p).map_or("-".into(), |l| l.to_string()),
                owners.get(&(topic.clone(), *partition)).cloned().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "OWNER"], &rows);
    Ok(())
}

/// Where `reset-offsets` moves to.
#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Time(i64),
}

fn reset(cluster: &ClusterArgs, group: &str, topics: &[String], target: Target, execute: bool) -> anyhow::Result<()> {
    let consumer = group_consumer(cluster, group)?;
    let places = places(cluster, &consumer, topics)?;
    if places.is_empty() {
        bail!("group {group} has no committed offsets; name the topics with --topic");
    }
    let mut plan: BTreeMap<(String, i32), i64> = places
        .iter()
        .map(|(at, p)| (at.clone(), if matches!(target, Target::Earliest) { p.start } else { p.end }))
        .collect();
    if let Target::Time(ms) = target {
        let mut query = TopicPartitionList::new();
        for (topic, partition) in plan.keys() {
            query.add_partition_offset(topic, *partition, Offset::Offset(ms)).context("building the query")?;
        }
        let found = consumer.offsets_for_times(query, cluster.timeout()).context("looking up offsets by time")?;
        for element in found.elements() {
            let at = (element.topic().to_string(), element.partition());
            if let Err(error) = element.error() {
                bail!("looking up {}/{} by time: {error}", at.0, at.1);
            }
            if let (Offset::Offset(n), Some(slot), Some(place)) = (element.offset(), plan.get_mut(&at), places.get(&at))
            {
                // No record that late leaves the end; a partition the broker did not answer
                // for would keep the query's timestamp, so clamp to what exists.
                *slot = n.clamp(place.start, place.end);
            }
        }
    }
    if execute {
        let list = consumer.fetch_group_list(Some(group), cluster.timeout()).context("describing the group")?;
        if let Some(info) = list.groups().iter().find(|g| g.name() == group && !g.members().is_empty()) {
            bail!(
                "group {group} has {} active member(s); stop them before resetting its offsets",
                info.members().len()
            );
        }
        let mut commit = TopicPartitionList::new();
        for ((topic, partition), offset) in &plan {
            commit.add_partition_offset(topic, *partition, Offset::Offset(*offset)).context("building the commit")?;
        }
        consumer.commit(&commit, CommitMode::Sync).with_context(|| format!("committing the new offsets of {group}"))?;
    }
    if cluster.json {
        let rows: Vec<_> = plan
            .iter()
            .map(|((t, p), new)| json!({"topic": t, "partition": p, "current": places[&(t.clone(), *p)].committed, "new": new}))
            .collect();
        println!("{}", json!({"group": group, "executed": execute, "offsets": rows}));
    } else {
        let rows: Vec<Vec<String>> = plan
            .iter()
            .map(|((t, p), new)| {
                let current = places[&(t.clone(), *p)].committed.map_or("-".into(), |c| c.to_string());
                vec![t.clone(), p.to_string(), current, new.to_string()]
            })
            .collect();
        print_table(&["TOPIC", "PARTITION", "CURRENT", "NEW"], &rows);
        if execute {
            eprintln!("offsets of {group} reset");
        } else {
            eprintln!("dry run: nothing changed; add --execute to apply");
        }
    }
    Ok(())
}

async fn delete(cluster: &ClusterArgs, group: &str) -> anyhow::Result<()> {
    let admin = cluster.admin()?;
    let options = AdminOptions::new().request_timeout(Some(cluster.timeout()));
    let results = admin.delete_groups(&[group], &options).await.context("deleting the group")?;
    for result in results {
        if let Err((group, code)) = result {
            bail!("cannot delete group {group}: {code}");
        }
    }
    if cluster.json {
        println!("{}", json!({"deleted": group}));
    } else {
        println!("deleted group {group}");
    }
    Ok(())
}

/// The topics and partitions in a consumer-protocol assignment (version, [topic,
/// [partition]], user data), or None if the bytes are not one. Every count is checked
/// against the bytes left before anything is allocated.
fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        *rest = tail;
        Some(head)
    }
    let mut rest = bytes;
    take(&mut rest, 2)?; // version
    let topics = i32::from_be_bytes(take(&mut rest, 4)?.try_into().ok()?);
    let topics = usize::try_from(topics).ok().filter(|&n| n <= rest.len() / 6)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let len = usize::try_from(i16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?)).ok()?;
        let name = String::from_utf8(take(&mut rest, len)?.to_vec()).ok()?;
        let count = i32::from_be_bytes(take(&mut rest, 4)?.try_into().ok()?);
        let count = usize::try_from(count).ok().filter(|&n| n <= rest.len() / 4)?;
        let mut partitions = Vec::with_capacity(count);
        for _ in 0..count {
            partitions.push(i32::from_be_bytes(take(&mut rest, 4)?.try_into().ok()?));
        }
        out.push((name, partitions));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_decode_and_garbage_does_not() {
        let mut bytes = vec![0, 1, 0, 0, 0, 1, 0, 5];
        bytes.extend_from_slice(b"users");
        bytes.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_assignment(&bytes), Some(vec![("users".to_string(), vec![0, 3])]));
        assert_eq!(decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None, "a count larger than the bytes");
        assert_eq!(decode_assignment(&[0]), None);
    }
}
