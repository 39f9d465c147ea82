//! `/api/v1/topics/{topic}/partitions/{partition}/messages` (a page of records from an
//! offset or a time) and `/api/v1/topics/{topic}/messages` (produce one or a batch,
//! answered under the same durability as a Kafka produce).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use herald_broker::Durability;
use herald_broker::internals::now_ms;
use herald_common::envelope::Wrap;
use serde::Deserialize;

use crate::auth::{Read, Write};
use crate::cursor::{Cursor, Filter, From, parse_time};
use crate::problem::{Json, Path, Problem, Query};
use crate::records::{self, Message, Outgoing};
use crate::server::{App, blocking};

/// Where a page starts and how long it is.
#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    offset: Option<i64>,
    /// ms since the epoch or RFC 3339.
    time: Option<String>,
    limit: Option<usize>,
}

pub(crate) async fn page(
    _: Read,
    State(app): State<Arc<App>>,
    Path((topic, partition)): Path<(String, i32)>,
    Query(query): Query<PageQuery>,
) -> Result<Response, Problem> {
    let limit = query.limit.unwrap_or(100).clamp(1, app.config.read_limit_max);
    let broker = Arc::clone(&app.broker);
    let max_bytes = app.config.read_bytes_max;
    let from = match (query.offset, query.time) {
        (Some(offset), _) => From::Token(format!("{partition}:{}", offset.max(0))),
        (None, Some(time)) => From::Time(parse_time(&time)?),
        (None, None) => From::Earliest,
    };
    let Scanned { messages, next, .. } = blocking(move || {
        let wanted = Wanted { limit, budget: usize::MAX, max_bytes };
        scan(&broker, &topic, partition, &from, wanted, |_| true)
    })
    .await?;
    Ok(axum::Json(serde_json::json!({ "messages": messages, "nextOffset": next })).into_response())
}

/// How much a [`scan`] returns and reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wanted {
    /// Records kept at most.
    pub(crate) limit: usize,
    /// Records read at most (kept or not).
    pub(crate) budget: usize,
    /// Bytes per log read.
    pub(crate) max_bytes: u32,
}

/// What a [`scan`] found.
#[derive(Debug)]
pub(crate) struct Scanned {
    pub(crate) messages: Vec<Message>,
    /// Where the next scan goes on from.
    pub(crate) next: i64,
    /// The budget ran out before `limit` records were kept or the end was reached.
    pub(crate) out_of_budget: bool,
}

/// The first read of a scan; later reads double up to the configured most. A small page
/// then decodes about one batch, not a megabyte of records it will not show.
const FIRST_READ_BYTES: u32 = 64 * 1024;

/// Reads one partition from `from`, keeping the records `keep` admits, until `limit` are
/// kept, the end is reached or `budget` records were read (blocking: log reads). Records
/// are turned into [`Message`]s only as they are looked at.
pub(crate) fn scan(
    broker: &Arc<herald_broker::internals::Broker>,
    topic: &str,
    partition: i32,
    from: &From,
    wanted: Wanted,
    keep: impl Fn(&Message) -> bool,
) -> Result<Scanned, Problem> {
    let meta = broker.topic(topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
    if partition < 0 || partition as u32 >= meta.partitions {
        return Err(Problem::not_found(format!("topic {topic:?} has no partition {partition}")));
    }
    let filter = Filter { partitions: vec![partition], ..Filter::default() };
    let mut at = Cursor::open(broker, topic, from, filter)?.position(partition).unwrap_or(0);
    let log = broker.partition(topic, partition).ok_or_else(|| Problem::not_found("partition gone"))?;
    let log = log.log();
    let (mut messages, mut read, mut bytes) = (Vec::new(), 0usize, FIRST_READ_BYTES.min(wanted.max_bytes));
    while messages.len() < wanted.limit && read < wanted.budget && at < log.high_watermark() as i64 {
        let batches = match log.read(at as u64, bytes) {
            Ok(batches) => batches,
            Err(herald_log::LogError::OffsetOutOfRange { log_start_offset, .. }) if (log_start_offset as i64) > at => {
                at = log_start_offset as i64;
                continue;
            }
            Err(error) => return Err(Problem::internal(format!("reading the log: {error}"))),
        };
        let (records, next) = records::decode_raw(batches.bytes, at).map_err(Problem::internal)?;
        if next <= at {
            break; // nothing readable before the end: stop rather than spin
        }
        at = next;
        for record in records {
            read += 1;
            let message = records::message(partition, record);
            if keep(&message) {
                messages.push(message);
                if messages.len() == wanted.limit {
                    // Records read past the last one kept are read again by the next page.
                    at = messages[messages.len() - 1].offset + 1;
                    break;
                }
            }
        }
        bytes = bytes.saturating_mul(2).min(wanted.max_bytes);
    }
    let out_of_budget = messages.len() < wanted.limit && read >= wanted.budget && at < log.high_watermark() as i64;
    Ok(Scanned { messages, next: at, out_of_budget })
}

/// A record to produce: `value` is sent as JSON text unless `valueEncoding` says
/// `text` (a string sent as is) or `base64`; with `envelope`, the JSON value is sent as
/// the `data` of a standard envelope, with the event headers herald's publisher sets.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ProduceRecord {
    key: Option<String>,
    #[serde(default)]
    value: serde_json::Value,
    value_encoding: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    partition: Option<i32>,
    envelope: Option<EnvelopeOptions>,
}

/// How to wrap a record's value in the standard envelope.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct EnvelopeOptions {
    /// `eventType`, e.g. `order.placed`.
    #[serde(rename = "type")]
    event_type: String,
    /// The major version (`eventVersion` `<n>.0.0`); 1 when absent.
    version: Option<u32>,
    /// `source`; `herald-gateway` when absent.
    source: Option<String>,
    correlation_id: Option<String>,
}

/// One record or a batch.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ProduceBody {
    Batch { records: Vec<ProduceRecord> },
    One(ProduceRecord),
}

pub(crate) async fn produce(
    _: Write,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    Json(body): Json<ProduceBody>,
) -> Result<Response, Problem> {
    let records = match body {
        ProduceBody::Batch { records } => records,
        ProduceBody::One(record) => vec![record],
    };
    let offsets = publish(&app, topic, records).await?;
    let offsets: Vec<_> =
        offsets.into_iter().map(|(p, o)| serde_json::json!({ "partition": p, "offset": o })).collect();
    Ok(axum::Json(serde_json::json!({ "offsets": offsets })).into_response())
}

/// Appends `records` to `topic` (a key picks the partition as Kafka clients do; without
/// one, round robin), answered once durable under the broker's policy: each record's
/// (partition, offset), in order.
pub(crate) async fn publish(app: &App, topic: String, records: Vec<ProduceRecord>) -> Result<Vec<(i32, i64)>, Problem> {
    if records.is_empty() {
        return Err(Problem::bad_request("no records"));
    }
    let meta = app.broker.topic(&topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
    let mut by_partition: BTreeMap<i32, Vec<(usize, Outgoing)>> = BTreeMap::new();
    for (i, record) in records.into_iter().enumerate() {
        let partition = match (record.partition, &record.key) {
            (Some(p), _) if p < 0 || p as u32 >= meta.partitions => {
                return Err(Problem::bad_request(format!("record {i}: topic {topic:?} has no partition {p}")));
            }
            (Some(p), _) => p,
            (None, key) => partition_of(app, key.as_deref().map(str::as_bytes), meta.partitions),
        };
        by_partition.entry(partition).or_default().push((i, outgoing(i, record)?));
    }
    let broker = Arc::clone(&app.broker);
    let offsets = blocking(move || append_all(&broker, &topic, by_partition)).await?;
    app.broker.notify_data();
    Ok(offsets)
}

/// Where a record without a partition goes: its key's partition as Kafka clients pick it,
/// or round robin without a key.
pub(crate) fn partition_of(app: &App, key: Option<&[u8]>, partitions: u32) -> i32 {
    match key {
        Some(key) => records::partition_for_key(key, partitions),
        None => (app.round_robin.fetch_add(1, Ordering::Relaxed) % u64::from(partitions.max(1))) as i32,
    }
}

fn outgoing(i: usize, mut record: ProduceRecord) -> Result<Outgoing, Problem> {
    if let Some(how) = record.envelope.take() {
        return wrapped(i, record, &how);
    }
    let value = match (record.value_encoding.as_deref(), record.value) {
        (_, serde_json::Value::Null) => None,
        (None | Some("json"), value) => Some(Bytes::from(value.to_string())),
        (Some("text"), serde_json::Value::String(text)) => Some(Bytes::from(text)),
        (Some("base64"), serde_json::Value::String(text)) => Some(Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| Problem::bad_request(format!("record {i}: value is not base64: {e}")))?,
        )),
        (Some(encoding), _) => {
            return Err(Problem::bad_request(format!(
                "record {i}: valueEncoding {encoding:?} needs a string value (json, text or base64)"
            )));
        }
    };
    let headers = record.headers.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect();
    Ok(Outgoing { key: record.key.map(Bytes::from), value, headers })
}

/// `record`'s JSON value as the data of a fresh envelope; the envelope's headers are added
/// to the record's own (and win over them).
fn wrapped(i: usize, record: ProduceRecord, how: &EnvelopeOptions) -> Result<Outgoing, Problem> {
    if record.value_encoding.as_deref().is_some_and(|e| e != "json") {
        return Err(Problem::bad_request(format!(
            "record {i}: an envelope wraps JSON data, not valueEncoding {:?}",
            record.value_encoding
        )));
    }
    if how.event_type.is_empty() {
        return Err(Problem::bad_request(format!("record {i}: envelope.type is empty")));
    }
    let wrap = Wrap {
        event_type: &how.event_type,
        version: how.version.unwrap_or(1),
        source: how.source.as_deref().unwrap_or("herald-gateway"),
        correlation_id: how.correlation_id.as_deref(),
    };
    let (value, envelope_headers) = herald_common::envelope::wrap(record.value, &wrap);
    let mut headers = record.headers;
    headers.extend(envelope_headers.into_iter().map(|(name, value)| (name.to_string(), value)));
    let headers = headers.into_iter().map(|(k, v)| (k, Bytes::from(v))).collect();
    Ok(Outgoing { key: record.key.map(Bytes::from), value: Some(Bytes::from(value)), headers })
}

/// Appends each partition's records as one batch, then waits for the fsync that covers
/// them when the broker acknowledges after fsyncs. Returns each record's (partition,
/// offset) in request order.
pub(crate) fn append_all(
    broker: &herald_broker::internals::Broker,
    topic: &str,
    by_partition: BTreeMap<i32, Vec<(usize, Outgoing)>>,
) -> Result<Vec<(i32, i64)>, Problem> {
    let now = now_ms();
    let total = by_partition.values().map(Vec::len).sum();
    let mut placed = vec![(0, 0); total];
    let mut syncs = Vec::new();
    for (partition, records) in by_partition {
        let (log, max_bytes) = broker.partition_for_produce(topic, partition)?;
        let outgoing: Vec<Outgoing> = records.iter().map(|(_, r)| r.clone()).collect();
        let mut batch = records::encode(&outgoing, now).map_err(Problem::internal)?;
        let appended = log.append(&mut batch, max_bytes, now)?;
        for (n, (i, _)) in records.iter().enumerate() {
            placed[*i] = (partition, appended.base_offset as i64 + n as i64);
        }
        syncs.push((log, appended.durable_at));
    }
    if broker.config().durability == Durability::Fsync {
        for (log, durable_at) in syncs {
            log.log().sync_through(durable_at).map_err(|e| Problem::internal(format!("fsync: {e}")))?;
        }
    }
    Ok(placed)
}
