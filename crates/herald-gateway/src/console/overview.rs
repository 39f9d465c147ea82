//! `/`: health, topics, write and commit rates, the groups furthest behind, dead letters.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use herald_common::dlq::is_dlq_topic;
use maud::html;

use super::layout::{self, encode, page};
use super::{Answer, Reader};
use crate::server::{App, blocking};
use crate::topics::partitions;

/// Groups listed as furthest behind.
const LAGGING_SHOWN: usize = 5;

pub(crate) async fn show(_: Reader, State(app): State<Arc<App>>) -> Answer {
    let broker = Arc::clone(&app.broker);
    let mut topics = 0;
    let (mut messages, mut size, mut dead_letters) = (0i64, 0u64, Vec::new());
    for (name, meta) in broker.topics() {
        let parts = partitions(&broker, &name, meta.partitions);
        let held: i64 = parts.iter().map(|p| p.high_watermark - p.log_start_offset).sum();
        size += parts.iter().map(|p| p.size_bytes).sum::<u64>();
        if is_dlq_topic(&name) {
            dead_letters.push((name, held));
        } else {
            topics += 1;
            messages += held;
        }
    }
    let (written, committed) = app.history.lock().map(|h| h.rates()).unwrap_or((None, None));
    let lagging = blocking(move || {
        let mut totals: Vec<(String, i64)> = broker
            .groups()
            .offsets()
            .groups()
            .into_iter()
            .map(|g| {
                let lag = broker.group_lag(&g).iter().map(|l| l.lag).sum();
                (g, lag)
            })
            .collect();
        totals.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        totals.truncate(LAGGING_SHOWN);
        Ok(totals
            .into_iter()
            .map(|(g, lag)| {
                let seconds = crate::groups::lag_of(&broker, &g).iter().map(|l| l.lag_seconds).fold(0.0, f64::max);
                (g, lag, seconds)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let stopping = app.broker.is_stopping() || *app.stopping.borrow();
    let depth: i64 = dead_letters.iter().map(|(_, d)| d).sum();
    let body = html! {
        h1 { "Overview" }
        div.cards {
            div.card { div.k { "Health" } div.v { @if stopping { span.problem { "stopping" } } @else { span.ok { "ready" } } } }
            div.card { div.k { "Topics" } div.v { (topics) } }
            div.card { div.k { "Messages held" } div.v { (messages) } }
            div.card { div.k { "On disk" } div.v { (layout::bytes(size)) } }
            div.card { div.k { "Produced" } div.v #produce-rate { (layout::rate(written)) } }
            div.card { div.k { "Consumed (committed)" } div.v #consume-rate { (layout::rate(committed)) } }
            div.card { div.k { "Dead letters" } div.v { (depth) } }
        }
        p.muted { "Rates are records per second between the last two samples." }
        h2 { "Groups furthest behind" }
        @if lagging.is_empty() {
            p.muted { "No consumer group has committed offsets yet." }
        } @else {
            table {
                thead { tr { th { "Group" } th.n { "Lag (records)" } th.n { "Lag (seconds)" } } }
                tbody { @for (group, lag, seconds) in &lagging {
                    tr { td { a href={ "/groups/" (encode(group)) } { (group) } } td.n { (lag) } td.n { (layout::seconds(*seconds)) } }
                } }
            }
        }
        h2 { "Dead-letter topics" }
        @if dead_letters.is_empty() {
            p.muted { "No dead-letter topics." }
        } @else {
            table {
                thead { tr { th { "Topic" } th.n { "Depth" } } }
                tbody { @for (topic, held) in &dead_letters {
                    tr { td { a href={ "/dead-letters/" (encode(topic)) } { (topic) } } td.n { (held) } }
                } }
            }
        }
    };
    Ok(page("Overview", "/", body).into_response())
}
