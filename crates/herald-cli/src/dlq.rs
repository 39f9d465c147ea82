//! `herald dlq list|redrive`: dead letters written by the consumer runtime
//! (`<topic>.dlq`, with `dlq-*` headers saying where each came from and why), shown, and sent
//! back to their original topic. A redrive counts itself in the `herald-redrive-count`
//! header (which the runtime keeps when a record fails again) and refuses a record that has
//! been redriven `--max-redrives` times, so a poison record cannot loop forever.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald::consumer::raw_headers;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::json;

use crate::cluster::{ClusterArgs, print_table};

/// The header a redrive adds (not `dlq-*`: the runtime strips those when it dead-letters).
const REDRIVE_COUNT: &str = "herald-redrive-count";

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
        #[arg(long, default_value_t = 3)]
        max_redrives: u32,
        /// The group that records how far redrives got, so a second run does not send
        /// the same records again.
        #[arg(long, default_value = "herald-dlq-redrive")]
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
            let options = Redrive { dry_run, rate, key, max_redrives, group };
            runtime.block_on(redrive(cluster, &dlq_topic(&topic), &options))
        }
    }
}

fn dlq_topic(topic: &str) -> String {
    if topic.ends_with(".dlq") { topic.to_string() } else { format!("{topic}.dlq") }
}

fn header<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    raw_headers(message)
        .find(|(n, _)| *n == name.as_bytes())
        .and_then(|(_, v)| v)
        .and_then(|v| std::str::from_utf8(v).ok())
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
        let h = |name| header(m, name).unwrap_or("").to_string();
        rows.push(json!({
            "partition": m.partition(),
            "offset": m.offset(),
            "key": m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            "original_topic": h("dlq-original-topic"),
            "original_partition": h("dlq-original-partition"),
            "original_offset": h("dlq-original-offset"),
            "error_class": h("dlq-error-class"),
            "error_message": h("dlq-error-message"),
            "attempts": h("dlq-attempts"),
            "failed_at": h("dlq-failed-at"),
            "group": h("dlq-consumer-group"),
            "redrives": header(m, REDRIVE_COUNT).unwrap_or("0"),
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

struct Redrive {
    dry_run: bool,
    rate: u64,
    key: Option<String>,
    max_redrives: u32,
    group: String,
}

#[derive(Default)]
struct Tally {
    sent: u64,
    refused: u64,
    filtered: u64,
    not_dead_letters: u64,
}

async fn redrive(cluster: &ClusterArgs, topic: &str, options: &Redrive) -> anyhow::Result<()> {
    let consumer: BaseConsumer = cluster
        .client_config()
        .set("group.id", &options.group)
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
    let mut tally = Tally::default();
    let mut plan = Vec::new();
    let mut progress: BTreeMap<i32, i64> = BTreeMap::new(); // partition -> next offset
    let started = Instant::now();
    let mut pending = Vec::new();
    // From where the group got to (or the beginning), so a second run sends nothing twice.
    let read = read_all(cluster, &consumer, topic, true, |m| {
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        if options.key.as_ref().is_some_and(|wanted| key.as_ref() != Some(wanted)) {
            tally.filtered += 1;
            return Ok(());
        }
        let Some(original) = header(m, "dlq-original-topic").map(str::to_string) else {
            tally.not_dead_letters += 1;
            return Ok(());
        };
        let redrives: u32 = header(m, REDRIVE_COUNT).and_then(|v| v.parse().ok()).unwrap_or(0);
        if redrives >= options.max_redrives {
            tally.refused += 1;
            return Ok(());
        }
        plan.push(vec![
            format!("{}/{}", m.partition(), m.offset()),
            key.clone().unwrap_or_else(|| "-".into()),
            original.clone(),
            (redrives + 1).to_string(),
        ]);
        if options.dry_run {
            tally.sent += 1;
            return Ok(());
        }
        if options.rate > 0 {
            let due = started + Duration::from_secs_f64(tally.sent as f64 / options.rate as f64);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
        }
        let mut headers = OwnedHeaders::new();
        // Names that are not UTF-8 go out with U+FFFD (rdkafka takes `&str`), values intact.
        for (name, value) in raw_headers(m) {
            let name = String::from_utf8_lossy(name);
            if !name.starts_with("dlq-") && name != REDRIVE_COUNT {
                headers = headers.insert(Header { key: &name, value });
            }
        }
        let count = (redrives + 1).to_string();
        headers = headers.insert(Header { key: REDRIVE_COUNT, value: Some(count.as_str()) });
        let mut record = FutureRecord::to(&original).headers(headers);
        if let Some(payload) = m.payload() {
            record = record.payload(payload);
        }
        if let Some(k) = m.key() {
            record = record.key(k);
        }
        let delivery =
            producer.send_result(record).map_err(|(error, _)| anyhow::anyhow!("sending to {original}: {error}"))?;
        pending.push((original, delivery));
        tally.sent += 1;
        progress.insert(m.partition(), m.offset() + 1);
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
    let recorded = !options.dry_run && options.key.is_none() && !progress.is_empty();
    if recorded {
        let mut list = TopicPartitionList::new();
        for (partition, next) in &progress {
            list.add_partition_offset(topic, *partition, Offset::Offset(*next)).context("recording progress")?;
        }
        consumer.commit(&list, CommitMode::Sync).context("recording the redrive's progress")?;
    }
    read?;
    if cluster.json {
        println!(
            "{}",
            json!({"topic": topic, "dry_run": options.dry_run, "redriven": tally.sent, "refused_loop_guard": tally.refused,
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
        tally.sent,
        tally.refused,
        options.max_redrives,
        tally.filtered,
        tally.not_dead_letters,
        if recorded { format!("; progress recorded for group {}", options.group) } else { String::new() },
    );
    Ok(())
}
