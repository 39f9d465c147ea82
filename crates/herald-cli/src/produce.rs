//! `herald produce <topic>`: one record per line of standard input, optionally keyed
//! (`--key`, or `key:value` lines with `--parse-key`) and optionally wrapped in the standard
//! envelope (`--envelope --type user.created`). The whole input is checked before anything
//! is sent, so a malformed line sends nothing.

use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use crate::cluster::ClusterArgs;

/// Largest line read (Kafka's default `message.max.bytes` is about 1 MB).
const LINE_BYTES_MAX: usize = 1 << 20;

/// `herald produce`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The topic.
    topic: String,
    /// The key of every record.
    #[arg(long, conflicts_with = "parse_key")]
    key: Option<String>,
    /// Read each line as `key:value` (split at the first `:`).
    #[arg(long)]
    parse_key: bool,
    /// Wrap each line (JSON) in the standard envelope, with the event headers.
    #[arg(long, requires = "event_type")]
    envelope: bool,
    /// The envelope's event type, e.g. `user.created`.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// The envelope's event version.
    #[arg(long, default_value_t = 1)]
    version: u32,
    /// The envelope's source.
    #[arg(long, default_value = "herald-cli")]
    source: String,
}

/// Header names and values, in order.
type RecordHeaders = Vec<(&'static str, String)>;

/// One record to send.
struct Line {
    key: Option<String>,
    value: Vec<u8>,
    headers: RecordHeaders,
}

pub(crate) fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let lines = read_input(&args, std::io::stdin().lock())?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting tokio")?;
    let consumer = args.cluster.consumer()?;
    args.cluster.metadata(&consumer, None)?; // one clear line if the brokers are unreachable
    let producer: FutureProducer = args
        .cluster
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("message.timeout.ms", args.cluster.timeout_ms.to_string())
        .create()
        .context("creating a producer")?;
    let sent = runtime.block_on(async {
        let mut deliveries = Vec::with_capacity(lines.len());
        for line in &lines {
            let mut headers = OwnedHeaders::new_with_capacity(line.headers.len());
            for (name, value) in &line.headers {
                headers = headers.insert(Header { key: name, value: Some(value.as_str()) });
            }
            let mut record = FutureRecord::to(&args.topic).payload(&line.value).headers(headers);
            if let Some(key) = &line.key {
                record = record.key(key);
            }
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => break deliveries.push(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back; // librdkafka's queue drains as the broker acknowledges
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((error, _)) => bail!("line {}: {error}", deliveries.len() + 1),
                }
            }
        }
        for (n, delivery) in deliveries.into_iter().enumerate() {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => bail!("line {}: not acknowledged by {}: {error}", n + 1, args.cluster.brokers),
                Err(_) => bail!("line {}: the producer went away", n + 1),
            }
        }
        Ok(lines.len())
    })?;
    if args.cluster.json {
        println!("{}", json!({"topic": args.topic, "produced": sent}));
    } else {
        eprintln!("produced {sent} record{} to {}", if sent == 1 { "" } else { "s" }, args.topic);
    }
    Ok(())
}

/// Reads and checks every line before anything is sent.
fn read_input(args: &ProduceArgs, input: impl std::io::BufRead) -> anyhow::Result<Vec<Line>> {
    let mut lines = Vec::new();
    for (n, line) in input.split(b'\n').enumerate() {
        let number = n + 1;
        let mut line = line.context("reading standard input")?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > LINE_BYTES_MAX {
            bail!("line {number}: {} bytes, more than the {LINE_BYTES_MAX} a record may have", line.len());
        }
        let (key, value) = if args.parse_key {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                bail!("line {number}: expected key:value, found no ':'");
            };
            let key = String::from_utf8(line[..colon].to_vec())
                .map_err(|_| anyhow::anyhow!("line {number}: the key is not UTF-8"))?;
            (Some(key), line[colon + 1..].to_vec())
        } else {
            (args.key.clone(), line)
        };
        let (value, headers) = match &args.event_type {
            Some(event_type) if args.envelope => envelope(&value, event_type, args.version, &args.source)
                .map_err(|problem| anyhow::anyhow!("line {number}: {problem}"))?,
            _ => (value, Vec::new()),
        };
        lines.push(Line { key, value, headers });
    }
    Ok(lines)
}

/// The standard envelope around `data` (JSON), and the headers herald's publisher sends.
fn envelope(data: &[u8], event_type: &str, version: u32, source: &str) -> Result<(Vec<u8>, RecordHeaders), String> {
    let data: serde_json::Value =
        serde_json::from_slice(data).map_err(|error| format!("--envelope needs JSON data: {error}"))?;
    let event_id = uuid::Uuid::now_v7();
    let envelope = json!({
        "eventId": event_id,
        "eventType": event_type,
        "eventVersion": format!("{version}.0.0"),
        "timestamp": herald::envelope::rfc3339_now(),
        "source": source,
        "data": data,
    });
    let headers = vec![
        ("event-type", event_type.to_string()),
        ("event-version", version.to_string()),
        ("content-type", "application/json".to_string()),
        ("event-id", event_id.to_string()),
    ];
    Ok((envelope.to_string().into_bytes(), headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(parse_key: bool, envelope: bool) -> ProduceArgs {
        ProduceArgs {
            cluster: ClusterArgs { brokers: String::new(), timeout_ms: 1, json: false },
            topic: "t".into(),
            key: None,
            parse_key,
            envelope,
            event_type: envelope.then(|| "user.created".to_string()),
            version: 1,
            source: "test".into(),
        }
    }

    #[test]
    fn keys_are_split_at_the_first_colon_and_a_line_without_one_is_refused() {
        let lines = read_input(&args(true, false), &b"u-1:{\"a\":1}\nu-2:x:y\n"[..]).expect("valid");
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].key.as_deref(), &lines[0].value[..]), (Some("u-1"), &b"{\"a\":1}"[..]));
        assert_eq!((lines[1].key.as_deref(), &lines[1].value[..]), (Some("u-2"), &b"x:y"[..]));
        let error = read_input(&args(true, false), &b"a:1\nno key here\n"[..]).err().expect("refused");
        assert_eq!(error.to_string(), "line 2: expected key:value, found no ':'");
    }

    #[test]
    fn envelopes_wrap_json_data_and_refuse_anything_else() {
        let lines = read_input(&args(false, true), &b"{\"user_id\":\"u-1\"}\n"[..]).expect("valid");
        let envelope: serde_json::Value = serde_json::from_slice(&lines[0].value).expect("json");
        assert_eq!(envelope["eventType"], "user.created");
        assert_eq!(envelope["eventVersion"], "1.0.0");
        assert_eq!(envelope["data"]["user_id"], "u-1");
        assert_eq!(lines[0].headers[0], ("event-type", "user.created".to_string()));
        let error = read_input(&args(false, true), &b"not json\n"[..]).err().expect("refused");
        assert!(error.to_string().starts_with("line 1: --envelope needs JSON data"), "{error}");
    }
}
