//! `/topics/{t}/messages`: pages of one partition from an offset or a time, filtered by
//! key, event type, a header and a field filter over the value; each record shown as its
//! envelope's fields and headers. `/flows/{id}`: every event of one correlation id across
//! topics. `/topics/{t}/tail`: the live tail (the script reads the topic's SSE stream).

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use maud::{Markup, html};
use serde::Deserialize;

use super::field_filter::FieldFilter;
use super::layout::{self, encode, page};
use super::{Answer, Reader};
use crate::cursor::{From, parse_time};
use crate::messages::{Scanned, Wanted, scan};
use crate::problem::{Path, Problem, Query};
use crate::records::Message;
use crate::server::{App, blocking};

/// Records read at most to fill one page (a filter that matches rarely stops here and
/// offers to go on).
const SCAN_BUDGET: usize = 100_000;
/// Records per page unless asked.
const PAGE_DEFAULT: usize = 50;
/// The newest records of each partition a flow search reads.
const FLOW_WINDOW: i64 = 10_000;
/// Records a flow search reads at most, over all topics.
const FLOW_READ_MAX: i64 = 200_000;
/// Events a flow lists at most.
const FLOW_MAX: usize = 1_000;

/// The browse form.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Browse {
    partition: Option<i32>,
    offset: Option<String>,
    time: Option<String>,
    key: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// `name=value`.
    header: Option<String>,
    /// A [`FieldFilter`].
    #[serde(rename = "where")]
    field: Option<String>,
    limit: Option<usize>,
}

/// What a record must match.
#[derive(Debug, Default)]
struct Matching {
    key: Option<String>,
    event_type: Option<String>,
    header: Option<(String, String)>,
    field: FieldFilter,
}

impl Matching {
    fn of(browse: &Browse) -> Result<Self, Problem> {
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(String::from);
        let header = match given(&browse.header) {
            None => None,
            Some(text) => {
                let (name, value) =
                    text.split_once('=').ok_or_else(|| Problem::bad_request("header: write name=value"))?;
                Some((name.trim().to_string(), value.trim().to_string()))
            }
        };
        let field = FieldFilter::parse(browse.field.as_deref().unwrap_or_default()).map_err(Problem::bad_request)?;
        Ok(Self { key: given(&browse.key), event_type: given(&browse.event_type), header, field })
    }

    fn admits(&self, message: &Message) -> bool {
        let header =
            |(name, value): &(String, String)| message.headers.get(name).and_then(|v| v.as_str()) == Some(value);
        self.key.as_ref().is_none_or(|k| message.key.as_ref() == Some(k))
            && self.event_type.as_deref().is_none_or(|t| message.event_type() == Some(t))
            && self.header.as_ref().is_none_or(header)
            && (self.field.is_empty() || self.field.admits(&message.value))
    }
}

pub(crate) async fn browse(
    _: Reader,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    Query(form): Query<Browse>,
) -> Answer {
    let meta = app.broker.topic(&topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
    let partition = form.partition.unwrap_or(0);
    let from = match (form.offset.as_deref().map(str::trim), form.time.as_deref().map(str::trim)) {
        (Some(offset), _) if !offset.is_empty() => {
            let offset: i64 =
                offset.parse().map_err(|_| Problem::bad_request(format!("offset {offset:?}: a number")))?;
            From::Token(format!("{partition}:{}", offset.max(0)))
        }
        (_, Some(time)) if !time.is_empty() => From::Time(parse_time(time)?),
        _ => From::Earliest,
    };
    let matching = Matching::of(&form)?;
    let wanted = Wanted {
        limit: form.limit.unwrap_or(PAGE_DEFAULT).clamp(1, app.config.read_limit_max),
        budget: SCAN_BUDGET,
        max_bytes: app.config.read_bytes_max,
    };
    let (broker, name) = (Arc::clone(&app.broker), topic.clone());
    let found = blocking(move || scan(&broker, &name, partition, &from, wanted, |m| matching.admits(m))).await?;
    let body = html! {
        h1 { "Messages of " a href={ "/topics/" (encode(&topic)) } { (topic) } }
        (browse_form(&topic, meta.partitions, partition, &form))
        (results(&topic, partition, &form, &found))
    };
    Ok(page(&format!("Messages of {topic}"), "/topics", body).into_response())
}

fn browse_form(topic: &str, partitions: u32, partition: i32, form: &Browse) -> Markup {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    html! {
        form.box #browse method="get" action={ "/topics/" (encode(topic)) "/messages" } {
            label { "Partition " select name="partition" {
                @for p in 0..partitions as i32 { option value=(p) selected[p == partition] { (p) } }
            } }
            label { "From offset " input name="offset" inputmode="numeric" size="10" value=(text(&form.offset)); }
            label { "or time " input name="time" size="24" placeholder="2026-11-30T10:00:00Z" value=(text(&form.time)); }
            label { "Key " input name="key" size="12" value=(text(&form.key)); }
            label { "Event type " input name="type" size="14" value=(text(&form.event_type)); }
            label { "Header " input name="header" size="18" placeholder="name=value" value=(text(&form.header)); }
            label { "Where " input name="where" size="28" placeholder="data.total > 100 and source = web" value=(text(&form.field)); }
            button type="submit" { "Show" }
        }
    }
}

fn results(topic: &str, partition: i32, form: &Browse, found: &Scanned) -> Markup {
    let mut next = format!("/topics/{}/messages?partition={partition}&offset={}", encode(topic), found.next);
    for (name, value) in
        [("key", &form.key), ("type", &form.event_type), ("header", &form.header), ("where", &form.field)]
    {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            next.push_str(&format!("&{name}={}", encode(value)));
        }
    }
    html! {
        @if found.messages.is_empty() {
            p.muted #no-messages { "No records match here." }
        } @else {
            (message_table(&found.messages, None))
        }
        @if found.out_of_budget {
            p.muted { "Stopped after reading " (SCAN_BUDGET) " records; the next page goes on from offset " (found.next) "." }
        }
        p { a #next-page href=(next) { "Next page (from offset " (found.next) ")" } }
    }
}

/// Records as rows, each with its envelope and headers behind a disclosure; with
/// `topics`, a first column names each record's topic.
fn message_table(messages: &[Message], topics: Option<&[String]>) -> Markup {
    html! {
        table.messages {
            thead { tr {
                @if topics.is_some() { th { "Topic" } }
                th.n { "Partition" } th.n { "Offset" } th { "Time" } th { "Key" } th { "Event type" } th { "Record" }
            } }
            tbody { @for (i, m) in messages.iter().enumerate() {
                tr data-offset=(m.offset) {
                    @if let Some(topics) = topics { td { a href={ "/topics/" (encode(&topics[i])) } { (topics[i]) } } }
                    td.n { (m.partition) } td.n { (m.offset) } td { (layout::time(m.timestamp)) }
                    td { (m.key.as_deref().unwrap_or("")) } td { (m.event_type().unwrap_or("")) }
                    td { (record(m)) }
                }
            } }
        }
    }
}

/// A record's correlation id: its header, or the envelope's field.
fn correlation(m: &Message) -> Option<&str> {
    m.headers.get("correlation-id").and_then(|v| v.as_str()).or_else(|| m.value.get("correlationId")?.as_str())
}

/// The envelope's fields (when the value is one), its headers, and the value.
fn record(m: &Message) -> Markup {
    let fields = ["eventId", "eventType", "eventVersion", "timestamp", "source", "causationId"];
    let envelope = m.value.is_object() && m.value.get("eventType").is_some();
    html! {
        details {
            summary { @if envelope { "Envelope" } @else { (m.value_encoding) " value" } }
            table {
                @if envelope {
                    @for name in fields { @if let Some(v) = m.value.get(name) {
                        tr { th { (name) } td { (v.as_str().map_or_else(|| v.to_string(), String::from)) } }
                    } }
                }
                @if let Some(id) = correlation(m) {
                    tr { th { "correlationId" } td { a.flow href={ "/flows/" (encode(id)) } { (id) } } }
                }
                @for (name, value) in &m.headers {
                    tr { th { "header " (name) } td { (value.as_str().map_or_else(|| value.to_string(), String::from)) } }
                }
            }
            pre { (layout::pretty(if envelope { m.value.get("data").unwrap_or(&m.value) } else { &m.value })) }
        }
    }
}

pub(crate) async fn flow(_: Reader, State(app): State<Arc<App>>, Path(id): Path<String>) -> Answer {
    let broker = Arc::clone(&app.broker);
    let (wanted_id, max_bytes) = (id.clone(), app.config.read_bytes_max);
    let found = blocking(move || {
        let (mut found, mut left): (Vec<(String, Message)>, i64) = (Vec::new(), FLOW_READ_MAX);
        for (topic, meta) in broker.topics() {
            for partition in 0..meta.partitions as i32 {
                let Some(log) = broker.partition(&topic, partition) else { continue };
                let window = FLOW_WINDOW.min(left);
                let start = (log.log().high_watermark() as i64 - window).max(log.log().log_start_offset() as i64);
                let limit = FLOW_MAX - found.len();
                if limit == 0 || window == 0 {
                    return Ok((found, true));
                }
                let wanted = Wanted { limit, budget: window as usize, max_bytes };
                let from = From::Token(format!("{partition}:{start}"));
                let scanned = scan(&broker, &topic, partition, &from, wanted, |m| correlation(m) == Some(&wanted_id))?;
                left -= (scanned.next - start).max(0);
                found.extend(scanned.messages.into_iter().map(|m| (topic.clone(), m)));
            }
        }
        Ok((found, false))
    })
    .await?;
    let (mut found, cut) = found;
    found.sort_by_key(|(topic, m)| (m.timestamp, topic.clone(), m.partition, m.offset));
    let (topics, messages): (Vec<String>, Vec<Message>) = found.into_iter().unzip();
    let body = html! {
        h1 { "Flow " (id) }
        p.muted { "Every event with this correlation id among the newest " (FLOW_WINDOW) " records of each partition, oldest first." }
        @if cut { p.muted { "The search stopped after " (FLOW_READ_MAX) " records or " (FLOW_MAX) " events: some topics were not read." } }
        @if messages.is_empty() { p.muted { "None found." } } @else { (message_table(&messages, Some(&topics))) }
    };
    Ok(page(&format!("Flow {id}"), "/topics", body).into_response())
}

pub(crate) async fn tail(_: Reader, State(app): State<Arc<App>>, Path(topic): Path<String>) -> Answer {
    app.broker.topic(&topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
    let body = html! {
        h1 { "Live tail of " a href={ "/topics/" (encode(&topic)) } { (topic) } }
        p { "Stream: " span #tail-status role="status" { "connecting…" } }
        table #tail data-topic=(topic) data-max="200" {
            thead { tr { th { "Partition" } th { "Offset" } th { "Time" } th { "Key" } th { "Event type" } th { "Value" } } }
            tbody {}
        }
    };
    Ok(page(&format!("Tail of {topic}"), "/topics", body).into_response())
}
