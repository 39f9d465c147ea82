//! Dead letters over HTTP: `/api/v1/dead-letters` (the dead-letter topics and their
//! depth), `/api/v1/topics/{topic}/dead-letters` (a page of one topic's dead letters with
//! where each came from and why) and `.../dead-letters/redrive` (send them back). What a
//! redrive sends, the loop guard and the rate are `herald_common::dlq::Redrive`'s decisions, the
//! same `herald dlq redrive` makes; progress is kept in the same consumer group, so the
//! CLI and HTTP redrives never send a record twice between them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use herald_broker::internals::Broker;
use herald_common::dlq::{DeadLetter, RawHeader, RedriveOptions, Step, Tally, dlq_topic, is_dlq_topic};
use herald_log::LogError;
use kafka_protocol::records::Record;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::auth::{Admin, Read};
use crate::cursor::{Cursor, Filter, From, Item};
use crate::messages::{append_all, partition_of};
use crate::problem::{Json, Path, Problem, Query};
use crate::records::{self, Message, Outgoing};
use crate::reset::commit;
use crate::server::{App, blocking};

/// Records sent back per append when no rate spaces them.
const FLUSH_RECORDS: usize = 500;

/// Longest progress group name accepted.
const GROUP_CHARS_MAX: usize = 255;

/// `GET /api/v1/dead-letters`: each dead-letter topic with its origin and depth.
pub(crate) async fn topics(_: Read, State(app): State<Arc<App>>) -> Response {
    let broker = &app.broker;
    let rows: Vec<_> = broker
        .topics()
        .into_iter()
        .filter(|(name, _)| is_dlq_topic(name))
        .map(|(name, meta)| {
            let depth: i64 = crate::topics::partitions(broker, &name, meta.partitions)
                .iter()
                .map(|p| p.high_watermark - p.log_start_offset)
                .sum();
            let origin = name.strip_suffix(herald_common::dlq::DLQ_SUFFIX).unwrap_or(&name).to_string();
            json!({ "topic": name, "originTopic": origin, "partitions": meta.partitions, "depth": depth })
        })
        .collect();
    axum::Json(json!({ "deadLetterTopics": rows })).into_response()
}

/// Where a page of dead letters starts and how long it is.
#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    /// `earliest` (default) or a resume token.
    from: Option<String>,
    limit: Option<usize>,
    key: Option<String>,
}

/// `GET /api/v1/topics/{topic}/dead-letters`: a page of dead letters (`topic` may name
/// the origin or its `.dlq`), each with its story, and the token of the next page.
pub(crate) async fn page(
    _: Read,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Response, Problem> {
    let topic = dlq_topic(&topic);
    let limit = query.limit.unwrap_or(100).clamp(1, app.config.read_limit_max);
    let from = From::parse(query.from.as_deref().unwrap_or("earliest"))?;
    let filter = Filter { keys: query.key.into_iter().collect(), ..Filter::default() };
    let (broker, max_bytes) = (Arc::clone(&app.broker), app.config.read_bytes_max);
    let (letters, next) = blocking(move || {
        let mut cursor = Cursor::open(&broker, &topic, &from, filter)?;
        let mut letters = Vec::new();
        loop {
            let items = cursor.read(&broker, max_bytes)?;
            if items.is_empty() {
                return Ok((letters, cursor.token()));
            }
            for item in items {
                if let Item::Event(message, token) = item {
                    letters.push(shown(*message));
                    if letters.len() == limit {
                        // Resume after the last one shown, not after everything read.
                        return Ok((letters, token));
                    }
                }
            }
        }
    })
    .await?;
    Ok(axum::Json(json!({ "deadLetters": letters, "next": next })).into_response())
}

/// What a dead letter's `dlq-*` headers say.
pub(crate) fn story(message: &Message) -> DeadLetter {
    DeadLetter::from_headers(
        message.headers.iter().map(|(name, value)| (name.as_bytes(), value.as_str().map(str::as_bytes))),
    )
}

/// A dead letter as shown: the record, plus what its `dlq-*` headers say.
pub(crate) fn shown(message: Message) -> serde_json::Value {
    let letter = story(&message);
    let mut value = serde_json::to_value(&message).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        let story = json!({
            "originalTopic": letter.original_topic,
            "originalPartition": letter.original_partition,
            "originalOffset": letter.original_offset,
            "errorClass": letter.error_class,
            "errorMessage": letter.error_message,
            "attempts": letter.attempts,
            "failedAt": letter.failed_at,
            "group": letter.group,
            "redrives": letter.redrives,
        });
        fields.insert("deadLetter".into(), story);
    }
    value
}

/// A redrive request: a dry run unless `"dryRun": false`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RedriveRequest {
    #[serde(default = "yes")]
    dry_run: bool,
    /// Records per second at most (0: no limit).
    #[serde(default)]
    rate: u64,
    /// Only records with this key.
    key: Option<String>,
    max_redrives: Option<u32>,
    /// The group that records how far redrives got.
    group: Option<String>,
}

fn yes() -> bool {
    true
}

/// What a redrive did.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) tally: Tally,
    pub(crate) progress_recorded: bool,
    /// The gateway began stopping: the rest is left for a later redrive.
    pub(crate) stopped: bool,
    /// A dry run's first decisions.
    pub(crate) plan: Vec<serde_json::Value>,
}

/// `POST /api/v1/topics/{topic}/dead-letters/redrive`: sends the dead letters after the
/// group's progress back to their original topics, answered when they are durable.
pub(crate) async fn redrive(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    Json(request): Json<RedriveRequest>,
) -> Result<Response, Problem> {
    let topic = dlq_topic(&topic);
    let group = request.group.unwrap_or_else(|| herald_common::dlq::DEFAULT_PROGRESS_GROUP.to_string());
    if group.is_empty() || group.len() > GROUP_CHARS_MAX {
        return Err(Problem::bad_request(format!("group: 1 to {GROUP_CHARS_MAX} characters")));
    }
    let options = RedriveOptions {
        dry_run: request.dry_run,
        rate: request.rate,
        key: request.key.map(String::into_bytes),
        max_redrives: request.max_redrives.unwrap_or(herald_common::dlq::DEFAULT_MAX_REDRIVES),
        records: None,
    };
    let dry_run = options.dry_run;
    let app2 = Arc::clone(&app);
    let (topic2, group2) = (topic.clone(), group.clone());
    let outcome = blocking(move || run(&app2, &topic2, &group2, options)).await?;
    let tally = outcome.tally;
    Ok(axum::Json(json!({
        "topic": topic, "group": group, "dryRun": dry_run,
        "redriven": tally.redriven, "refusedLoopGuard": tally.refused, "filtered": tally.filtered,
        "notDeadLetters": tally.not_dead_letters, "progressRecorded": outcome.progress_recorded,
        "stopped": outcome.stopped, "plan": outcome.plan,
    }))
    .into_response())
}

/// Reads `topic` from `group`'s progress (or from the first chosen record to the last)
/// to the ends it has now, acting on each decision (blocking: log reads, appends, waits
/// for the rate). It stops early, with what it sent recorded, when the gateway stops or
/// after `redrive_time_max` (a slow rate then takes several requests).
pub(crate) fn run(app: &Arc<App>, topic: &str, group: &str, options: RedriveOptions) -> Result<Outcome, Problem> {
    let broker = &app.broker;
    let meta = broker.topic(topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
    let started = Instant::now();
    let deadline = started + app.config.redrive_time_max;
    let mut decisions = herald_common::dlq::Redrive::new(options, started);
    let mut outcome = Outcome::default();
    let mut sending = Sending::default();
    let stopping: watch::Receiver<bool> = app.stopping.clone();
    'partitions: for partition in 0..meta.partitions as i32 {
        // Chosen records are read where they are, whatever the progress says.
        let (from, until) = match &decisions.options().records {
            Some(chosen) => {
                let mine: Vec<i64> = chosen.iter().filter(|(p, _)| *p == partition).map(|(_, o)| *o).collect();
                match (mine.iter().min(), mine.iter().max()) {
                    (Some(first), Some(last)) => (Some(*first), Some(last + 1)),
                    _ => continue,
                }
            }
            None => (broker.groups().offsets().get(group, topic, partition).map(|c| c.offset), None),
        };
        let mut records = Records::open(broker, topic, partition, from, until)?;
        while let Some(record) = records.next(broker, app.config.read_bytes_max)? {
            if *stopping.borrow() || Instant::now() >= deadline {
                outcome.stopped = true;
                break 'partitions;
            }
            let headers: Vec<RawHeader<'_>> =
                record.headers.iter().map(|(name, value)| (name.as_bytes(), value.as_deref())).collect();
            match decisions.offer(partition, record.offset, record.key.as_deref(), &headers) {
                Step::Send(resend) => {
                    let wait = resend.at.saturating_duration_since(Instant::now());
                    if !wait.is_zero() {
                        sending.flush(app)?;
                        std::thread::sleep(wait);
                    }
                    let headers = resend
                        .headers
                        .into_iter()
                        .map(|(n, v)| (String::from_utf8_lossy(&n).into_owned(), v.unwrap_or_default().into()))
                        .collect();
                    let out = Outgoing { key: record.key.clone(), value: record.value.clone(), headers };
                    sending.push(app, resend.to, out)?;
                    // Past the deadline by one rate interval at most: this record was sent.
                    if Instant::now() >= deadline {
                        outcome.stopped = true;
                        break 'partitions;
                    }
                }
                Step::WouldSend { to, redrive } if outcome.plan.len() < app.config.read_limit_max => {
                    let key = record.key.as_deref().map(String::from_utf8_lossy);
                    let at = json!({ "partition": partition, "offset": record.offset, "key": key, "to": to, "redrive": redrive });
                    outcome.plan.push(at);
                }
                _ => {}
            }
        }
    }
    sending.flush(app)?;
    if let Some(progress) = decisions.progress() {
        commit(broker, group, topic, progress.iter().map(|(p, o)| (*p, *o)))?;
        outcome.progress_recorded = true;
    }
    outcome.tally = decisions.tally();
    Ok(outcome)
}

/// Records on their way back, grouped by topic and partition.
#[derive(Debug, Default)]
struct Sending {
    by_topic: BTreeMap<String, BTreeMap<i32, Vec<(usize, Outgoing)>>>,
    count: usize,
}

impl Sending {
    fn push(&mut self, app: &App, topic: String, record: Outgoing) -> Result<(), Problem> {
        let meta = app.broker.topic(&topic).ok_or_else(|| {
            Problem::not_found(format!("the original topic {topic:?} does not exist; progress not recorded"))
        })?;
        let partition = partition_of(app, record.key.as_deref(), meta.partitions);
        self.by_topic.entry(topic).or_default().entry(partition).or_default().push((self.count, record));
        self.count += 1;
        if self.count >= FLUSH_RECORDS { self.flush(app) } else { Ok(()) }
    }

    /// Appends what is waiting and returns once it is durable.
    fn flush(&mut self, app: &App) -> Result<(), Problem> {
        for (topic, by_partition) in std::mem::take(&mut self.by_topic) {
            append_all(&app.broker, &topic, by_partition)?;
        }
        self.count = 0;
        app.broker.notify_data();
        Ok(())
    }
}

/// One partition's records from a place to the end it had when opened, as stored.
#[derive(Debug)]
struct Records {
    topic: String,
    partition: i32,
    at: i64,
    end: i64,
    read: std::vec::IntoIter<Record>,
}

impl Records {
    /// From `from` (or the log start, when absent or removed by retention) to `until`
    /// (or the end it has now).
    fn open(
        broker: &Broker,
        topic: &str,
        partition: i32,
        from: Option<i64>,
        until: Option<i64>,
    ) -> Result<Self, Problem> {
        let log = broker.partition(topic, partition).ok_or_else(|| Problem::not_found("partition gone"))?;
        let log = log.log();
        let at = from.unwrap_or(0).max(log.log_start_offset() as i64);
        let end = until.map_or(log.high_watermark() as i64, |until| until.min(log.high_watermark() as i64));
        Ok(Self { topic: topic.to_string(), partition, at, end, read: Vec::new().into_iter() })
    }

    fn next(&mut self, broker: &Broker, max_bytes: u32) -> Result<Option<Record>, Problem> {
        loop {
            if let Some(record) = self.read.next() {
                if record.offset >= self.end {
                    return Ok(None);
                }
                return Ok(Some(record));
            }
            if self.at >= self.end {
                return Ok(None);
            }
            let Some(log) = broker.partition(&self.topic, self.partition) else { return Ok(None) };
            let read = match log.log().read(self.at as u64, max_bytes) {
                Ok(read) => read,
                Err(LogError::OffsetOutOfRange { log_start_offset, .. }) if (log_start_offset as i64) > self.at => {
                    self.at = log_start_offset as i64;
                    continue;
                }
                Err(error) => return Err(Problem::internal(format!("reading {}: {error}", self.topic))),
            };
            let (records, next) = records::decode_raw(read.bytes, self.at).map_err(Problem::internal)?;
            if next <= self.at {
                return Ok(None); // nothing readable before the end: stop rather than spin
            }
            self.at = next;
            self.read = records.into_iter();
        }
    }
}
