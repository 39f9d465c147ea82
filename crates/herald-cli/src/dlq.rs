//! `herald dlq list|redrive`: dead letters written by the consumer runtime
//! (`<topic>.dlq`, with `dlq-*` headers saying where each came from and why), shown, and sent
//! back to their original topic over the Kafka protocol. What to send, the loop guard and
//! the rate are decided by `herald_common::dlq::Redrive`, the same decisions the gateway's
//! `/dead-letters/redrive` makes in the broker's process; this file reads and sends.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald::consumer::raw_headers;
use herald_common::dlq::{DeadLetter, RedriveOptions, Step, dlq_topic};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::json;

use crate::cluster::{ClusterArgs, print_table};

/// `herald dlq ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct DlqArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DlqCommand {
    /// The dead letters of a topic: where each came from, the error, the attempts.
    List {
        /// The topic or its dead-letter topic (`orders` or `orders.dlq`).
        topic: String,
    },
    /// Send dead letters back to their original topics.
    Redrive {
        /// The dead-letter topic (`orders.dlq`; `orders` means the same).
        topic: String,
        /// Show what would be sent; send nothing, record nothing.
        #[arg(long)]
        dry_run: bool,
        /// Records per second at most (0: no limit).
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Only records with this key (progress is then not recorded, so other keys stay
        /// for a later run).
        #[arg(long)]
        key: Option<String>,
        /// Refuse records already redriven this many times.
        #[arg(long, default_value_t = herald_common::dlq::DEFAULT_MAX_REDRIVES)]
        max_redrives: u32,
        /// The group that records how far redrives got, so a second run does not send
        /// the same records again.
        #[arg(long, default_value = herald_common::dlq::DEFAULT_PROGRESS_GROUP)]
        group: String,
    },
}

pub(crate) fn run(args: DlqArgs) -> anyhow::Result<()> {
    let cluster = &args.cluster;
    match args.command {
        DlqCommand::List { topic } => list(cluster, &dlq_topic(&topic)),
        DlqCommand::Redrive { topic, dry_run, rate, key, max_redrives, group } => {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
            let options =
                RedriveOptions { dry_run, rate, key: key.map(String::into_bytes), max_redrives, records: None };
            runtime.block_on(redrive(cluster, &dlq_topic(&topic), options, &group))
        }
    }
}

/// Reads every record of `topic` present now, from each partition's start (the beginning,
/// or where `group` committed), calling `each` as records arrive.
fn read_all(
    cluster: &ClusterArgs,
    consumer: &BaseConsumer,
    topic: &str,
    from_group: bool,
    mut each: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let metadata = cluster.metadata(consumer, Some(topic))?;
    let partitions = match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) if t.error().is_none() && !t.partitions().is_empty() => t.partitions().len() as i32,
        _ => bail!("topic {topic} does not exist (no dead letters yet?)"),
    };
    let mut committed = BTreeMap::new();
    if from_group {
        let mut all = TopicPartitionList::new();
        for partition in 0..partitions {
            all.add_partition(topic, partition);
        }
        let offsets = consumer.committed_offsets(all, cluster.timeout()).context("reading the redrive's progress")?;
        for element in offsets.elements() {
            if let Offset::Offset(at) = element.offset() {
                committed.insert(element.partition(), at);
            }
        }
    }
    let mut left = BTreeMap::new(); // partition -> end, for partitions with records to read
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        let (low, end) = consumer
            .fetch_watermarks(topic, partition, cluster.timeout())
            .with_context(|| format!("reading the offsets of {topic}/{partition}"))?;
        let start = committed.get(&partition).copied().unwrap_or(low).max(low);
        if start < end {
            left.insert(partition, end);
            assignment.add_partition_offset(topic, partition, Offset::Offset(start)).context("assigning partitions")?;
        }
    }
    if left.is_empty() {
        return Ok(());
    }
    consumer.assign(&assignment).context("assigning partitions")?;
    // A partition is done at its end offset, or when librdkafka reports its end (a tail
    // of transaction markers or aborted records never yields a record at end - 1).
    let patience = cluster.timeout().max(Duration::from_secs(30));
    let mut deadline = Instant::now() + patience;
    while !left.is_empty() {
        let Some(received) = consumer.poll(Duration::from_millis(100)) else {
            if Instant::now() > deadline {
                bail!("reading {topic}: partitions {:?} stopped short of their end", left.keys().collect::<Vec<_>>());
            }
            continue;
        };
        let message = match received {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                left.remove(&partition);
                continue;
            }
            Err(error) => return Err(error).with_context(|| format!("reading {topic}")),
        };
        let Some(&end) = left.get(&message.partition()) else { continue };
        deadline = Instant::now() + patience; // progress on a partition still being read
        if message.offset() >= end {
            left.remove(&message.partition());
            continue;
        }
        each(&message)?;
        if message.offset() + 1 >= end {
            left.remove(&message.partition());
        }
    }
    Ok(())
}

fn list(cluster: &ClusterArgs, topic: &str) -> anyhow::Result<()> {
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", "herald-cli")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create()
        .with_context(|| format!("connecting to {}", cluster.brokers))?;
    let mut rows = Vec::new();
    read_all(cluster, &consumer, topic, false, |m| {
        let letter = DeadLetter::from_headers(raw_headers(m));
        let h = |field: Option<String>| field.unwrap_or_default();
        rows.push(json!({
            "partition": m.partition(),
            "offset": m.offset(),
            "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "original_topic": h(letter.original_topic),
            "original_partition": h(letter.original_partition),
            "original_offset": h(letter.original_offset),
            "error_class": h(letter.error_class),
            "error_message": h(letter.error_message),
            "attempts": h(letter.attempts),
            "failed_at": h(letter.failed_at),
            "group": h(letter.group),
            "redrives": letter.redrives.to_string(),
        }));
        Ok(())
    })?;
    if cluster.json {
        println!("{}", serde_json::Value::Array(rows));
        return Ok(());
    }
    let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut message = text(&r["error_message"]);
            if message.chars().count() > 60 {
                message = message.chars().take(57).collect::<String>() + "...";
            }
            vec![
                format!("{}/{}", r["partition"], r["offset"]),
                r["key"].as_str().unwrap_or("-").to_string(),
                format!(
                    "{}/{}/{}",
                    text(&r["original_topic"]),
                    text(&r["original_partition"]),
                    text(&r["original_offset"])
                ),
                text(&r["error_class"]),
                text(&r["attempts"]),
                text(&r["redrives"]),
                text(&r["group"]),
                text(&r["failed_at"]),
                message,
            ]
        })
        .collect();
    println!("{topic}: {} dead letter(s)", table.len());
    print_table(&["AT", "KEY", "FROM", "CLASS", "ATTEMPTS", "REDRIVES", "GROUP", "FAILED AT", "ERROR"], &table);
    Ok(())
}

async fn redrive(cluster: &ClusterArgs, topic: &str, options: RedriveOptions, group: &str) -> anyhow::Result<()> {
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .create()
        .with_context(|| format!("connecting to {}", cluster.brokers))?;
    let producer: FutureProducer = cluster
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .create()
        .context("creating a producer")?;
    let mut decisions = herald_common::dlq::Redrive::new(options, Instant::now());
    let mut plan = Vec::new();
    let mut pending = Vec::new();
    // From where the group got to (or the beginning), so a second run sends nothing twice.
    let read = read_all(cluster, &consumer, topic, true, |m| {
        let headers: Vec<_> = raw_headers(m).collect();
        let resend = match decisions.offer(m.partition(), m.offset(), m.key(), &headers) {
            Step::Send(resend) => resend,
            Step::WouldSend { to, redrive } => {
                let key = m.key().map_or_else(|| "-".into(), |k| String::from_utf8_lossy(k).into_owned());
                plan.push(vec![format!("{}/{}", m.partition(), m.offset()), key, to, redrive.to_string()]);
                return Ok(());
            }
            Step::Refused | Step::Filtered | Step::NotDeadLetter => return Ok(()),
        };
        std::thread::sleep(resend.at.saturating_duration_since(Instant::now()));
        let mut headers = OwnedHeaders::new();
        // Names that are not UTF-8 go out with U+FFFD (rdkafka takes `&str`), values intact.
        for (name, value) in &resend.headers {
            headers = headers.insert(Header { key: &String::from_utf8_lossy(name), value: value.as_deref() });
        }
        let mut record = FutureRecord::to(&resend.to).headers(headers);
        if let Some(payload) = m.payload() {
            record = record.payload(payload);
        }
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        let delivery =
            producer.send_result(record).map_err(|(error, _)| anyhow::anyhow!("sending to {}: {error}", resend.to))?;
        pending.push((resend.to, delivery));
        Ok(())
    });
    // Whatever was handed over is waited for, even if reading stopped early; progress is
    // recorded only when every send was acknowledged (a failure repeats, never skips).
    for (original, delivery) in pending {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => bail!("sending to {original} failed: {error}; progress not recorded, nothing lost"),
            Err(_) => bail!("sending to {original}: the producer went away; progress not recorded"),
        }
    }
    let recorded = decisions.progress().is_some();
    if let Some(progress) = decisions.progress() {
        let mut list = TopicPartitionList::new();
        for (partition, next) in progress {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next)).context("recording progress")?;
        }
        consumer.commit(&list, CommitMode::Sync).context("recording the redrive's progress")?;
    }
    read?;
    let (tally, options) = (decisions.tally(), decisions.options());
    if cluster.json {
        println!(
            "{}",
            json!({"topic": topic, "dry_run": options.dry_run, "redriven": tally.redriven, "refused_loop_guard": tally.refused,
                   "filtered": tally.filtered, "not_dead_letters": tally.not_dead_letters, "progress_recorded": recorded})
        );
        return Ok(());
    }
    if options.dry_run {
        print_table(&["AT", "KEY", "TO", "REDRIVE"], &plan);
    }
    eprintln!(
        "{}{} redriven, {} refused at the loop guard ({} redrives), {} filtered out, {} without dlq-original-topic{}",
        if options.dry_run { "dry run: would be " } else { "" },
        tally.redriven,
        tally.refused,
        options.max_redrives,
        tally.filtered,
        tally.not_dead_letters,
        if recorded { format!("; progress recorded for group {group}") } else { String::new() },
    );
    Ok(())
}
