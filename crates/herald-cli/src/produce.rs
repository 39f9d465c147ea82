//! `herald produce <topic>`: one record per line of standard input, optionally keyed
//! (`--key`, or `key:value` lines with `--parse-key`) and optionally wrapped in the standard
//! envelope (`--envelope --type user.created`). The whole input is checked before anything
//! is sent, so a malformed line sends nothing.

use std::time::Duration;

use anyhow::{Context, bail};
use herald_common::envelope::{Wrap, wrap};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use crate::cluster::ClusterArgs;

/// Largest record sent: librdkafka's default `message.max.bytes` (1,000,000) less room for
/// its framing, so a record that passes here is not refused after others were sent.
const RECORD_BYTES_MAX: usize = 1_000_000 - 1024;

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
    for (n, line) in bounded_lines(input, RECORD_BYTES_MAX).enumerate() {
        let number = n + 1;
        let line = line.map_err(|error| anyhow::anyhow!("line {number}: {error}"))?;
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
        let size = value.len()
            + key.as_ref().map_or(0, String::len)
            + headers.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>();
        if size > RECORD_BYTES_MAX {
            bail!(
                "line {number}: the record would be {size} bytes, more than the {RECORD_BYTES_MAX} a broker takes by default"
            );
        }
        lines.push(Line { key, value, headers });
    }
    Ok(lines)
}

/// Lines without their `\n` (and `\r\n`), each refused once it passes `max` bytes, before
/// more of it is buffered.
fn bounded_lines(mut input: impl std::io::BufRead, max: usize) -> impl Iterator<Item = Result<Vec<u8>, String>> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut line = Vec::new();
        loop {
            let buffer = match input.fill_buf() {
                Ok(buffer) => buffer,
                Err(error) => {
                    done = true;
                    return Some(Err(format!("reading standard input: {error}")));
                }
            };
            if buffer.is_empty() {
                done = true;
                return (!line.is_empty()).then_some(Ok(line));
            }
            let (chunk, newline) = match buffer.iter().position(|&b| b == b'\n') {
                Some(at) => (&buffer[..at], true),
                None => (buffer, false),
            };
            if line.len() + chunk.len() > max + 1 {
                done = true;
                return Some(Err(format!("longer than the {max} bytes a record may have")));
            }
            line.extend_from_slice(chunk);
            let used = chunk.len() + usize::from(newline);
            input.consume(used);
            if newline {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Some(Ok(line));
            }
        }
    })
}

/// The standard envelope around `data` (JSON), and the headers herald's publisher sends.
fn envelope(data: &[u8], event_type: &str, version: u32, source: &str) -> Result<(Vec<u8>, RecordHeaders), String> {
    let data: serde_json::Value =
        serde_json::from_slice(data).map_err(|error| format!("--envelope needs JSON data: {error}"))?;
    Ok(wrap(data, &Wrap { event_type, version, source, correlation_id: None }))
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
    fn a_line_longer_than_a_record_may_be_is_refused_before_it_is_all_read() {
        let long = vec![b'x'; RECORD_BYTES_MAX + 10];
        let error = read_input(&args(false, false), &long[..]).err().expect("refused");
        assert!(error.to_string().starts_with("line 1: longer than"), "{error}");
        let lines: Vec<_> = bounded_lines(&b"a\r\nb\n\nc"[..], 10).collect();
        assert_eq!(lines, vec![Ok(b"a".to_vec()), Ok(b"b".to_vec()), Ok(Vec::new()), Ok(b"c".to_vec())]);
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
