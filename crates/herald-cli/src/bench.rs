//! `herald bench produce|consume|e2e`: a Rust load generator (librdkafka through rdkafka)
//! for any Kafka-compatible broker. Produce reports throughput and per-message ack latency
//! (send to delivery report); consume reads a topic from the beginning and reports
//! throughput; e2e produces and consumes at once and reports send-to-receive latency.
//! A progress bar on a terminal, a summary table at the end; `--json` prints one JSON
//! object for scripts instead.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use crate::cluster::print_table;

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(Debug, clap::Subcommand)]
enum Which {
    /// Produce messages as fast as the broker acknowledges them.
    Produce(ProduceArgs),
    /// Read a topic from the beginning as fast as possible.
    Consume(ConsumeArgs),
    /// Produce and consume at once: end-to-end latency from send to receive.
    E2e(E2eArgs),
}

#[derive(Debug, clap::Args)]
struct E2eArgs {
    #[command(flatten)]
    common: Common,
    /// Number of messages.
    #[arg(long, default_value_t = 100_000)]
    messages: u64,
    /// Value size in bytes (at least 8: the send time travels in the value).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Partitions when the topic is created.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Messages per second to offer (0: as fast as possible).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// `linger.ms`.
    #[arg(long, default_value_t = 1)]
    linger_ms: u32,
}

#[derive(Debug, clap::Args)]
struct Common {
    /// Bootstrap brokers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Topic to use (created if missing, with --partitions).
    #[arg(long, default_value = "herald-bench")]
    topic: String,
    /// Print one JSON object instead of a line of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    /// Number of messages.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Partitions when the topic is created.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// `acks`: all, 1 or 0.
    #[arg(long, default_value = "all")]
    acks: String,
    /// `linger.ms`.
    #[arg(long, default_value_t = 5)]
    linger_ms: u32,
    /// `compression.codec`: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// `batch.size` in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    batch_bytes: u32,
    /// Idempotent producer.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    idempotence: bool,
    /// Messages per second to offer (0: as fast as possible). Ack latency means queueing
    /// time when the offered rate exceeds what the broker sustains; set a rate to see it
    /// without the queue.
    #[arg(long, default_value_t = 0)]
    rate: u64,
}

#[derive(Debug, clap::Args)]
struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// Stop after this many messages.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// `fetch.max.bytes` / `max.partition.fetch.bytes`.
    #[arg(long, default_value_t = 1 << 20)]
    fetch_bytes: u32,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    match args.which {
        Which::Produce(a) => produce(&runtime, a),
        Which::Consume(a) => consume(&runtime, a),
        Which::E2e(a) => e2e(&runtime, a),
    }
}

/// A progress bar on stderr (hidden for --json, and by indicatif when stderr is not a
/// terminal).
fn progress(total: u64, what: &str, json: bool) -> ProgressBar {
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>8} [{bar:40}] {pos}/{len} {per_sec} eta {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(what.to_string());
    bar
}

/// Records each delivery's latency (opaque = send time in ns since `start`).
struct LatencyContext {
    start: Instant,
    latencies_us: Mutex<Vec<u32>>,
    errors: Mutex<Vec<String>>,
}

impl ClientContext for LatencyContext {}

impl ProducerContext for LatencyContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let now_ns = self.start.elapsed().as_nanos() as usize;
        match result {
            Ok(_) => {
                let us = (now_ns.saturating_sub(sent_ns) / 1000).min(u32::MAX as usize) as u32;
                self.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).push(us);
            }
            Err((error, _)) => {
                let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
                if errors.len() < 5 {
                    errors.push(error.to_string());
                }
            }
        }
    }
}

fn ensure_topic(runtime: &tokio::runtime::Runtime, brokers: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().context("creating the admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = runtime
        .block_on(admin.create_topics(&[new], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))))
        .with_context(|| format!("creating topic {topic} on {brokers}"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => bail!("creating topic {name}: {code}"),
        }
    }
    Ok(())
}

fn produce(runtime: &tokio::runtime::Runtime, args: ProduceArgs) -> anyhow::Result<()> {
    let c = &args.common;
    ensure_topic(runtime, &c.brokers, &c.topic, args.partitions)?;
    let context = LatencyContext {
        start: Instant::now(),
        latencies_us: Mutex::new(Vec::with_capacity(args.messages.min(10_000_000) as usize)),
        errors: Mutex::new(Vec::new()),
    };
    let producer: ThreadedProducer<LatencyContext> = ClientConfig::new()
        .set("bootstrap.servers", &c.brokers)
        .set("acks", &args.acks)
        .set("linger.ms", args.linger_ms.to_string())
        .set("compression.codec", &args.compression)
        .set("batch.size", args.batch_bytes.to_string())
        .set("enable.idempotence", args.idempotence.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(context)
        .context("creating the producer")?;
    let value = vec![b'x'; args.size];
    // Warm up: connect, fetch metadata and the producer id before the clock starts, so
    // the latencies measure produce acks, not the first connection.
    let warm = BaseRecord::<(), [u8], usize>::with_opaque_to(&c.topic, 0).payload(&value[..]);
    producer.send(warm).map_err(|(e, _)| e).context("warm-up send")?;
    producer.flush(Duration::from_secs(30)).context("warm-up flush")?;
    producer.context().latencies_us.lock().unwrap_or_else(|p| p.into_inner()).clear();
    let bar = progress(args.messages, "produce", c.json);
    let started = Instant::now();
    for i in 0..args.messages {
        if i.is_multiple_of(1024) {
            bar.set_position(i);
        }
        if args.rate > 0 {
            let due = Duration::from_secs_f64(i as f64 / args.rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let mut sent_ns = producer.context().start.elapsed().as_nanos() as usize;
        let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(&c.topic, sent_ns).payload(&value[..]);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    std::thread::sleep(Duration::from_micros(200));
                    sent_ns = producer.context().start.elapsed().as_nanos() as usize;
                    record = back;
                    record.delivery_opaque = sent_ns;
                }
                Err((error, _)) => bail!("send failed: {error}"),
            }
        }
    }
    producer.flush(Duration::from_secs(120)).context("flushing the producer")?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    let context = producer.context();
    let errors = context.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if !errors.is_empty() {
        bail!("deliveries failed, e.g. {}", errors.join("; "));
    }
    let mut latencies = context.latencies_us.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let report = Report {
        mode: "produce",
        messages: latencies.len() as u64,
        bytes: latencies.len() as u64 * args.size as u64,
        seconds: elapsed.as_secs_f64(),
        latency_us: Some(percentiles(&mut latencies)),
        latency_kind: "ack",
    };
    let rate = if args.rate == 0 { "max".to_string() } else { args.rate.to_string() };
    let settings =
        format!("acks={} linger.ms={} compression={} rate={rate}", args.acks, args.linger_ms, args.compression);
    report.print(c.json, &settings);
    Ok(())
}

fn consume(runtime: &tokio::runtime::Runtime, args: ConsumeArgs) -> anyhow::Result<()> {
    let c = &args.common;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.brokers)
        .set("group.id", "herald-bench")
        .set("enable.auto.commit", "false")
        .set("fetch.max.bytes", (u64::from(args.fetch_bytes.max(1 << 20)) * 50).min(i32::MAX as u64).to_string())
        .set("max.partition.fetch.bytes", args.fetch_bytes.to_string())
        .set("queued.max.messages.kbytes", "1048576")
        .create()
        .context("creating the consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&c.topic), Duration::from_secs(10))
        .with_context(|| format!("reading metadata of {}", c.topic))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        bail!("topic {} does not exist or has no partitions", c.topic);
    }
    let _ = runtime; // consume needs no async work; the runtime is shared with produce
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        assignment.add_partition_offset(&c.topic, p, Offset::Beginning).context("assignment")?;
    }
    consumer.assign(&assignment).context("assigning partitions")?;
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    let bar = progress(args.messages, "consume", c.json);
    while count < args.messages {
        if count.is_multiple_of(1024) {
            bar.set_position(count);
        }
        if Instant::now() > deadline {
            bail!("only {count} of {} messages arrived within 10 minutes", args.messages);
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                started.get_or_insert_with(Instant::now);
                count += 1;
                bytes += message.payload().map_or(0, <[u8]>::len) as u64;
            }
            Some(Err(error)) => bail!("consume failed: {error}"),
            None => {}
        }
    }
    let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    bar.finish_and_clear();
    let report = Report { mode: "consume", messages: count, bytes, seconds, latency_us: None, latency_kind: "" };
    report.print(c.json, &format!("fetch bytes={}", args.fetch_bytes));
    Ok(())
}

fn e2e(runtime: &tokio::runtime::Runtime, args: E2eArgs) -> anyhow::Result<()> {
    let c = &args.common;
    if args.size < 8 {
        bail!("--size {}: at least 8 bytes (the send time travels in the value)", args.size);
    }
    ensure_topic(runtime, &c.brokers, &c.topic, args.partitions)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &c.brokers)
        .set("group.id", "herald-bench-e2e")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .context("creating the consumer")?;
    let metadata = consumer
        .fetch_metadata(Some(&c.topic), Duration::from_secs(10))
        .with_context(|| format!("reading metadata of {}", c.topic))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len()) as i32;
    // Start at each partition's current end, read before anything is sent.
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        let (_, end) = consumer.fetch_watermarks(&c.topic, p, Duration::from_secs(10)).context("reading offsets")?;
        assignment.add_partition_offset(&c.topic, p, Offset::Offset(end)).context("assignment")?;
    }
    consumer.assign(&assignment).context("assigning partitions")?;
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &c.brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", args.linger_ms.to_string())
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .context("creating the producer")?;
    // Warm up: one message through both sides, so the consumer is fetching (and the
    // producer connected) before the clock starts.
    let warm = vec![0xffu8; args.size];
    producer
        .send(BaseRecord::<(), [u8]>::to(&c.topic).payload(&warm[..]))
        .map_err(|(e, _)| e)
        .context("warm-up send")?;
    producer.flush(Duration::from_secs(30)).context("warm-up flush")?;
    let warm_deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => break,
            Some(Err(error)) => bail!("consume failed: {error}"),
            None if Instant::now() > warm_deadline => bail!("the warm-up message never arrived"),
            None => {}
        }
    }
    let start = Instant::now();
    let (topic, count, size, rate) = (c.topic.clone(), args.messages, args.size, args.rate);
    let sender = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut value = vec![b'x'; size];
        for i in 0..count {
            if rate > 0 {
                let due = Duration::from_secs_f64(i as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            loop {
                let sent_ns = start.elapsed().as_nanos() as u64;
                value[..8].copy_from_slice(&sent_ns.to_le_bytes());
                match producer.send(BaseRecord::<(), [u8]>::to(&topic).payload(&value[..])) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err((error, _)) => bail!("send failed: {error}"),
                }
            }
        }
        producer.flush(Duration::from_secs(120)).context("flushing the producer")?;
        Ok(())
    });
    let bar = progress(args.messages, "e2e", c.json);
    let mut latencies = Vec::with_capacity(args.messages.min(10_000_000) as usize);
    let mut last_arrival = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    while (latencies.len() as u64) < args.messages {
        if Instant::now() > deadline || (sender.is_finished() && last_arrival.elapsed() > Duration::from_secs(30)) {
            bail!("only {} of {} messages arrived", latencies.len(), args.messages);
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let now_ns = start.elapsed().as_nanos() as u64;
                let sent =
                    message.payload().and_then(|p| p.get(..8)).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
                if let Some(sent) = sent {
                    latencies.push((now_ns.saturating_sub(sent) / 1000).min(u64::from(u32::MAX)) as u32);
                }
                last_arrival = Instant::now();
                if latencies.len().is_multiple_of(1024) {
                    bar.set_position(latencies.len() as u64);
                }
            }
            Some(Err(error)) => bail!("consume failed: {error}"),
            None => {}
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    sender.join().map_err(|_| anyhow::anyhow!("the sending thread panicked"))??;
    let report = Report {
        mode: "e2e",
        messages: args.messages,
        bytes: args.messages * args.size as u64,
        seconds,
        latency_us: Some(percentiles(&mut latencies)),
        latency_kind: "send to receive",
    };
    let rate = if args.rate == 0 { "max".to_string() } else { args.rate.to_string() };
    report.print(c.json, &format!("acks=all linger.ms={} rate={rate} partitions={partitions}", args.linger_ms));
    Ok(())
}

/// p50, p99 and p99.9 of `latencies` (sorted here; zeros when empty).
fn percentiles(latencies: &mut [u32]) -> [u32; 3] {
    latencies.sort_unstable();
    let at = |p: f64| {
        let index = ((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1));
        latencies.get(index).copied().unwrap_or(0)
    };
    [at(0.5), at(0.99), at(0.999)]
}

struct Report {
    mode: &'static str,
    messages: u64,
    bytes: u64,
    seconds: f64,
    /// p50, p99, p99.9 in microseconds.
    latency_us: Option<[u32; 3]>,
    /// What the latency measures.
    latency_kind: &'static str,
}

impl Report {
    fn print(&self, json: bool, settings: &str) {
        let rate = self.messages as f64 / self.seconds.max(1e-9);
        let mb = self.bytes as f64 / self.seconds.max(1e-9) / 1e6;
        if json {
            let mut value = serde_json::json!({
                "mode": self.mode, "messages": self.messages, "bytes": self.bytes,
                "seconds": self.seconds, "msgs_per_sec": rate, "mb_per_sec": mb, "settings": settings,
            });
            if let Some([p50, p99, p999]) = self.latency_us {
                value["latency_us"] =
                    serde_json::json!({"p50": p50, "p99": p99, "p999": p999, "measures": self.latency_kind});
            }
            println!("{value}");
        } else {
            let [p50, p99, p999] = self.latency_us.map_or([String::new(), String::new(), String::new()], |l| {
                l.map(|us| format!("{:.2}", f64::from(us) / 1000.0))
            });
            print_table(
                &["MODE", "MESSAGES", "SECONDS", "MSG/S", "MB/S", "P50 MS", "P99 MS", "P99.9 MS"],
                &[vec![
                    self.mode.to_string(),
                    self.messages.to_string(),
                    format!("{:.2}", self.seconds),
                    format!("{rate:.0}"),
                    format!("{mb:.1}"),
                    p50,
                    p99,
                    p999,
                ]],
            );
            let latency =
                if self.latency_kind.is_empty() { String::new() } else { format!("latency: {}; ", self.latency_kind) };
            println!("{latency}{settings}");
        }
    }
}
