//! `herald consume <topic>`: print records as they arrive (following by default), from
//! the end or `--from-beginning`, alone (every partition assigned, nothing committed) or
//! in a consumer group (`--group`, offsets committed as it reads).

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use herald::consumer::raw_headers;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::json;

use crate::cluster::ClusterArgs;

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One JSON object per record: topic, partition, offset, timestamp, key, headers, value.
    Json,
    /// Key, partition, offset and headers above the value, for people.
    Pretty,
    /// The value alone, one per line.
    Raw,
}

/// `herald consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic.
    topic: String,
    /// Start at the oldest record instead of the next new one.
    #[arg(long)]
    from_beginning: bool,
    /// Read as this consumer group (its committed offsets first) and commit as it goes.
    #[arg(long)]
    group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop when no record arrived for this many ms (default: follow until Ctrl-C).
    #[arg(long)]
    idle_exit_ms: Option<u64>,
    /// Output format (`--json` means `--format json`).
    #[arg(long, value_enum, default_value_t = Format::Pretty)]
    format: Format,
}

pub(crate) fn run(mut args: ConsumeArgs) -> anyhow::Result<()> {
    if args.cluster.json {
        args.format = Format::Json;
    }
    let cluster = &args.cluster;
    let mut config = cluster.client_config();
    config
        .set("group.id", args.group.as_deref().unwrap_or("herald-cli-consume"))
        .set("enable.auto.commit", if args.group.is_some() { "true" } else { "false" })
        // Only what was printed counts as consumed (stored below, committed at exit too).
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", if args.from_beginning { "earliest" } else { "latest" })
        .set("fetch.queue.backoff.ms", "10");
    let consumer: BaseConsumer = config.create().with_context(|| format!("connecting to {}", cluster.brokers))?;
    let metadata = cluster.metadata(&consumer, Some(&args.topic))?;
    let partitions = match metadata.topics().iter().find(|t| t.name() == args.topic) {
        Some(topic) if topic.error().is_none() && !topic.partitions().is_empty() => topic.partitions().len(),
        _ => bail!("topic {} does not exist", args.topic),
    };
    if args.group.is_some() {
        consumer.subscribe(&[&args.topic]).context("joining the group")?;
    } else {
        let mut assignment = TopicPartitionList::new();
        let start = if args.from_beginning { Offset::Beginning } else { Offset::End };
        for partition in 0..partitions as i32 {
            assignment.add_partition_offset(&args.topic, partition, start).context("assigning partitions")?;
        }
        consumer.assign(&assignment).context("assigning partitions")?;
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut last = Instant::now();
    while args.max.is_none_or(|max| printed < max) {
        if args.idle_exit_ms.is_some_and(|ms| last.elapsed() >= Duration::from_millis(ms)) {
            break;
        }
        let Some(received) = consumer.poll(Duration::from_millis(100)) else {
            out.flush().context("writing to standard output")?;
            continue;
        };
        let message = received.with_context(|| format!("reading {}", args.topic))?;
        print(&mut out, &message, args.format).context("writing to standard output")?;
        if args.group.is_some() {
            consumer.store_offset_from_message(&message).context("storing the offset")?;
        }
        printed += 1;
        last = Instant::now();
    }
    out.flush().context("writing to standard output")?;
    if let Some(group) = &args.group
        && printed > 0
    {
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .with_context(|| format!("committing the offsets of {group}"))?;
    }
    Ok(())
}

fn text(bytes: Option<&[u8]>) -> Option<String> {
    bytes.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn print(out: &mut impl std::io::Write, message: &BorrowedMessage<'_>, format: Format) -> std::io::Result<()> {
    // Header names are bytes on the wire; rdkafka's accessors panic on names that are not
    // UTF-8, so they are read through herald's byte-level reader and shown lossily.
    let headers: Vec<(String, Option<String>)> =
        raw_headers(message).map(|(name, value)| (String::from_utf8_lossy(name).into_owned(), text(value))).collect();
    let value = text(message.payload());
    match format {
        Format::Raw => writeln!(out, "{}", value.unwrap_or_default()),
        Format::Json => {
            let headers: Vec<_> = headers.iter().map(|(k, v)| json!([k, v])).collect();
            let line = json!({
                "topic": message.topic(),
                "partition": message.partition(),
                "offset": message.offset(),
                "timestamp": message.timestamp().to_millis(),
                "key": text(message.key()),
                "headers": headers,
                "value": value,
            });
            writeln!(out, "{line}")
        }
        Format::Pretty => {
            let key = text(message.key()).unwrap_or_else(|| "(none)".into());
            writeln!(out, "partition {}  offset {}  key {key}", message.partition(), message.offset())?;
            for (name, value) in &headers {
                writeln!(out, "  {name}: {}", value.as_deref().unwrap_or("(null)"))?;
            }
            writeln!(out, "{}\n", value.unwrap_or_else(|| "(null)".into()))
        }
    }
}
