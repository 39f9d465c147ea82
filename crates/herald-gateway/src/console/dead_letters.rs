//! `/dead-letters`: dead letters grouped by origin topic and error class, and the log of
//! redrives; `/dead-letters/{t}`: a page of letters to choose from and the redrive form;
//! one letter in detail. A redrive is previewed (a dry run) before it sends anything, and
//! runs through the same decisions and progress group as `herald dlq redrive`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use herald_common::dlq::{DEFAULT_MAX_REDRIVES, DEFAULT_PROGRESS_GROUP, DLQ_SUFFIX, RedriveOptions};
use herald_common::dlq::{dlq_topic, is_dlq_topic};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, encode, page};
use super::{Answer, Operator, Reader};
use crate::cursor::From;
use crate::dead_letters::story;
use crate::messages::{Wanted, scan};
use crate::problem::{Path, Problem, Query};
use crate::server::{App, blocking};

/// Letters read, over all dead-letter topics, to count them by error class.
const CLASS_SCAN: usize = 100_000;
/// Letters per page.
const PAGE: usize = 50;
/// Redrives the log keeps (since the gateway started).
pub(crate) const LOG_KEPT: usize = 100;

/// One redrive, for the log.
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub(crate) at_ms: i64,
    pub(crate) topic: String,
    pub(crate) dry_run: bool,
    pub(crate) chosen: usize,
    pub(crate) redriven: u64,
    pub(crate) refused: u64,
}

/// The redrive log, newest first.
pub(crate) type RedriveLog = std::sync::Mutex<VecDeque<Logged>>;

/// `topic`'s letters counted by error class, reading at most `budget` of them; returns
/// the counts and what is left of the budget (blocking). Nothing is kept but the counts.
fn classes_of(app: &App, topic: &str, mut budget: usize) -> Result<(BTreeMap<String, usize>, usize), Problem> {
    let meta = app.broker.topic(topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
    let counts = std::cell::RefCell::new(BTreeMap::<String, usize>::new());
    for partition in 0..meta.partitions as i32 {
        let wanted = Wanted { limit: 1, budget, max_bytes: app.config.read_bytes_max };
        let before: usize = counts.borrow().values().sum();
        scan(&app.broker, topic, partition, &From::Earliest, wanted, |letter| {
            let class = story(letter).error_class.unwrap_or_else(|| "unknown".into());
            *counts.borrow_mut().entry(class).or_default() += 1;
            false
        })?;
        budget = budget.saturating_sub(counts.borrow().values().sum::<usize>() - before);
    }
    Ok((counts.into_inner(), budget))
}

pub(crate) async fn overview(_: Reader, State(app): State<Arc<App>>) -> Answer {
    let app2 = Arc::clone(&app);
    let classes = blocking(move || {
        let (mut rows, mut budget) = (Vec::new(), CLASS_SCAN);
        for (topic, _) in app2.broker.topics().into_iter().filter(|(t, _)| is_dlq_topic(t)) {
            let (by_class, left) = classes_of(&app2, &topic, budget)?;
            budget = left;
            rows.push((topic, by_class));
        }
        Ok(rows)
    })
    .await?;
    let log: Vec<Logged> = app.redrives.lock().map(|l| l.iter().cloned().collect()).unwrap_or_default();
    let body = html! {
        h1 { "Dead letters" }
        @if classes.is_empty() { p.muted { "No dead-letter topics." } }
        @else { table #dead-letter-topics {
            thead { tr { th { "Origin topic" } th { "Dead-letter topic" } th { "Error class" } th.n { "Letters" } } }
            tbody { @for (topic, by_class) in &classes {
                @let origin = topic.strip_suffix(DLQ_SUFFIX).unwrap_or(topic);
                @if by_class.is_empty() {
                    tr { td { (origin) } td { a href={ "/dead-letters/" (encode(topic)) } { (topic) } } td.muted { "empty" } td.n { "0" } }
                }
                @for (class, count) in by_class {
                    tr { td { (origin) } td { a href={ "/dead-letters/" (encode(topic)) } { (topic) } } td { (class) } td.n { (count) } }
                }
            } }
        } }
        p.muted { "Counted over the first " (CLASS_SCAN) " letters, topic by topic." }
        h2 { "Redrives" }
        @if log.is_empty() { p.muted { "None since the gateway started." } }
        @else { table #redrive-log {
            thead { tr { th { "When" } th { "Topic" } th { "Kind" } th.n { "Chosen" } th.n { "Sent" } th.n { "Refused (loop guard)" } } }
            tbody { @for entry in &log {
                tr {
                    td { (layout::time(entry.at_ms)) } td { (entry.topic) }
                    td { @if entry.dry_run { "dry run" } @else { "sent" } }
                    td.n { @if entry.chosen == 0 { "all" } @else { (entry.chosen) } }
                    td.n { (entry.redriven) } td.n { (entry.refused) }
                }
            } }
        } }
    };
    Ok(page("Dead letters", "/dead-letters", body).into_response())
}

/// Where a page of letters starts.
#[derive(Debug, Deserialize)]
pub(crate) struct Start {
    partition: Option<i32>,
    offset: Option<i64>,
}

pub(crate) async fn letters(
    _: Reader,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    Query(start): Query<Start>,
) -> Answer {
    let topic = dlq_topic(&topic);
    let partition = start.partition.unwrap_or(0);
    let from = From::Token(format!("{partition}:{}", start.offset.unwrap_or(0).max(0)));
    let (app2, name) = (Arc::clone(&app), topic.clone());
    let found = blocking(move || {
        let wanted = Wanted { limit: PAGE, budget: usize::MAX, max_bytes: app2.config.read_bytes_max };
        scan(&app2.broker, &name, partition, &from, wanted, |_| true)
    })
    .await?;
    let t = encode(&topic);
    let body = html! {
        h1 { "Dead letters in " (topic) }
        p.muted { "Partition " (partition) ". Choose letters to send back, or leave none chosen to send all after the last redrive. "
            "Sending chosen letters does not move that progress: a later redrive of all sends them again." }
        form #redrive method="post" action={ "/dead-letters/" (t) "/redrive" } {
            table #letters {
                thead { tr {
                    th { input type="checkbox" aria-label="Choose all on this page" data-select-all="pick"; }
                    th.n { "Offset" } th { "Key" } th { "Original" } th { "Error class" } th { "Error" } th.n { "Redrives" }
                } }
                tbody { @for m in &found.messages {
                    @let letter = story(m);
                    tr {
                        td { input type="checkbox" name="pick" value={ (m.partition) ":" (m.offset) } aria-label={ "Choose offset " (m.offset) }; }
                        td.n { a href={ "/dead-letters/" (t) "/" (m.partition) "/" (m.offset) } { (m.offset) } }
                        td { (m.key.as_deref().unwrap_or("")) }
                        td { (letter.original_topic.as_deref().unwrap_or("?")) " " (letter.original_partition.as_deref().unwrap_or("")) ":" (letter.original_offset.as_deref().unwrap_or("")) }
                        td { (letter.error_class.as_deref().unwrap_or("")) } td { (letter.error_message.as_deref().unwrap_or("")) }
                        td.n { (letter.redrives) }
                    }
                } }
            }
            (redrive_fields(None))
            button type="submit" name="action" value="preview" { "Preview redrive (dry run)" }
        }
        p { a href={ "/dead-letters/" (t) "?partition=" (partition) "&offset=" (found.next) } { "Next page" } }
    };
    Ok(page(&format!("Dead letters in {topic}"), "/dead-letters", body).into_response())
}

fn redrive_fields(given: Option<&RedriveForm>) -> Markup {
    let rate = given.map_or(0, |g| g.rate);
    let key = given.map(|g| g.key.clone()).unwrap_or_default();
    html! {
        div.box {
            label { "Rate (records per second, 0: no limit) " input name="rate" type="number" min="0" value=(rate); }
            label { "Only key " input name="key" size="14" value=(key); }
        }
    }
}

pub(crate) async fn letter(
    _: Reader,
    State(app): State<Arc<App>>,
    Path((topic, partition, offset)): Path<(String, i32, i64)>,
) -> Answer {
    let (broker, name, max_bytes) = (Arc::clone(&app.broker), topic.clone(), app.config.read_bytes_max);
    let found = blocking(move || {
        let wanted = Wanted { limit: 1, budget: 1, max_bytes };
        scan(&broker, &name, partition, &From::Token(format!("{partition}:{offset}")), wanted, |_| true)
    })
    .await?;
    let m = found
        .messages
        .into_iter()
        .find(|m| m.offset == offset)
        .ok_or_else(|| Problem::not_found(format!("no record at {topic} {partition}:{offset}")))?;
    let shown = crate::dead_letters::shown(m);
    let body = html! {
        h1 { "Dead letter " (topic) " " (partition) ":" (offset) }
        h2 { "Why" }
        table { @if let Some(fields) = shown["deadLetter"].as_object() { @for (name, value) in fields {
            tr { th { (name) } td { (value.as_str().map_or_else(|| value.to_string(), String::from)) } }
        } } }
        h2 { "Record" }
        pre { (layout::pretty(&shown)) }
    };
    Ok(page("Dead letter", "/dead-letters", body).into_response())
}

/// The redrive form's fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct RedriveForm {
    picks: BTreeSet<(i32, i64)>,
    rate: u64,
    key: String,
    send: bool,
}

impl RedriveForm {
    /// From the posted pairs (`pick` repeats, one per chosen letter).
    fn parse(pairs: Vec<(String, String)>) -> Result<Self, Problem> {
        let mut form = Self::default();
        for (name, value) in pairs {
            match name.as_str() {
                "pick" => {
                    let parsed = value.split_once(':').and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)));
                    form.picks.insert(parsed.ok_or_else(|| Problem::bad_request(format!("pick {value:?}")))?);
                }
                "rate" if !value.trim().is_empty() => {
                    form.rate = value.trim().parse().map_err(|_| Problem::bad_request(format!("rate {value:?}")))?;
                }
                "key" => form.key = value.trim().to_string(),
                "action" => form.send = value == "send",
                _ => {}
            }
        }
        Ok(form)
    }

    fn options(&self) -> RedriveOptions {
        RedriveOptions {
            dry_run: !self.send,
            rate: self.rate,
            key: (!self.key.is_empty()).then(|| self.key.clone().into_bytes()),
            max_redrives: DEFAULT_MAX_REDRIVES,
            records: (!self.picks.is_empty()).then(|| self.picks.clone()),
        }
    }
}

pub(crate) async fn redrive(
    _: Operator,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> Answer {
    let topic = dlq_topic(&topic);
    let form = RedriveForm::parse(pairs)?;
    let (app2, name, options) = (Arc::clone(&app), topic.clone(), form.options());
    let outcome = blocking(move || crate::dead_letters::run(&app2, &name, DEFAULT_PROGRESS_GROUP, options)).await?;
    if let Ok(mut log) = app.redrives.lock() {
        log.push_front(Logged {
            at_ms: herald_common::time::now_ms(),
            topic: topic.clone(),
            dry_run: !form.send,
            chosen: form.picks.len(),
            redriven: outcome.tally.redriven,
            refused: outcome.tally.refused,
        });
        log.truncate(LOG_KEPT);
    }
    let tally = outcome.tally;
    let body = html! {
        h1 { "Redrive of " a href={ "/dead-letters/" (encode(&topic)) } { (topic) } }
        @if form.send {
            p.ok #redrive-done role="status" { "Sent back: " (tally.redriven) "." }
        } @else {
            p #redrive-preview role="status" { "Dry run: " (tally.redriven) " would be sent back; nothing was sent." }
        }
        table {
            tr { th { "Refused by the loop guard" } td { (tally.refused) } }
            tr { th { "Not chosen" } td { (tally.filtered) } }
            tr { th { "Not dead letters" } td { (tally.not_dead_letters) } }
            @if outcome.stopped { tr { th { "Stopped early" } td { "the time limit or a shutdown came first; what was sent is recorded, run it again for the rest" } } }
        }
        @if !outcome.plan.is_empty() {
            h2 { "Would send" }
            table { thead { tr { th.n { "Partition" } th.n { "Offset" } th { "Key" } th { "To" } th.n { "Redrive" } } }
                tbody { @for p in &outcome.plan {
                    tr { td.n { (p["partition"]) } td.n { (p["offset"]) } td { (p["key"].as_str().unwrap_or("")) } td { (p["to"].as_str().unwrap_or("")) } td.n { (p["redrive"]) } }
                } }
            }
        }
        @if !form.send && tally.redriven > 0 {
            form.box #redrive-send method="post" action={ "/dead-letters/" (encode(&topic)) "/redrive" } {
                @for (p, o) in &form.picks { input type="hidden" name="pick" value={ (p) ":" (o) }; }
                input type="hidden" name="rate" value=(form.rate);
                input type="hidden" name="key" value=(form.key);
                button.danger type="submit" name="action" value="send" { "Send them back" }
            }
        }
    };
    Ok(page("Redrive", "/dead-letters", body).into_response())
}
