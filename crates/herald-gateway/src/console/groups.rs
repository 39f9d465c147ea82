//! `/groups`: every group with its state and lag; `/groups/{g}`: members and what each
//! was assigned, lag per partition in records and seconds with a chart over time, and
//! an offset reset that is always previewed before it is applied.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use bytes::Buf;
use kafka_protocol::messages::ConsumerProtocolAssignment;
use kafka_protocol::protocol::Decodable;
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, encode, page};
use super::{Answer, Operator, Reader};
use crate::cursor::parse_time;
use crate::groups::{Lag, group_states, lag_of};
use crate::problem::{Path, Problem};
use crate::reset::{Move, Reset, To};
use crate::server::{App, blocking};

pub(crate) async fn list(_: Reader, State(app): State<Arc<App>>) -> Answer {
    let broker = Arc::clone(&app.broker);
    let rows = blocking(move || {
        Ok(group_states(&broker)
            .into_iter()
            .map(|(group, state)| {
                let lags = lag_of(&broker, &group);
                let members = broker.groups().describe(&group).map_or(0, |g| g.members().len());
                let seconds = lags.iter().map(|l| l.lag_seconds).fold(0.0, f64::max);
                (group, state, members, lags.iter().map(|l| l.lag).sum::<i64>(), seconds)
            })
            .collect::<Vec<_>>())
    })
    .await?;
    let body = html! {
        h1 { "Consumer groups" }
        @if rows.is_empty() { p.muted { "No groups yet." } }
        @else { table #groups {
            thead { tr { th { "Group" } th { "State" } th.n { "Members" } th.n { "Lag (records)" } th.n { "Lag (seconds)" } } }
            tbody { @for (group, state, members, lag, seconds) in &rows {
                tr {
                    td { a href={ "/groups/" (encode(group)) } { (group) } } td { span.state { (state) } }
                    td.n { (members) } td.n { (lag) } td.n { (layout::seconds(*seconds)) }
                }
            } }
        } }
    };
    Ok(page("Consumer groups", "/groups", body).into_response())
}

/// A member as shown: id, client id, host, and its assignment as `topic: partitions`.
type MemberRow = (String, String, String, Vec<String>);

/// What the consumer protocol assignment of a member says (empty when it is not one).
fn assignment(bytes: &[u8]) -> Vec<String> {
    let mut buf = bytes::Bytes::copy_from_slice(bytes);
    if buf.remaining() < 2 {
        return Vec::new();
    }
    let version = buf.get_i16();
    if !(0..=3).contains(&version) {
        return Vec::new();
    }
    match ConsumerProtocolAssignment::decode(&mut buf, version) {
        Ok(decoded) => decoded
            .assigned_partitions
            .iter()
            .map(|tp| format!("{}: {:?}", tp.topic.0.as_str(), tp.partitions))
            .collect(),
        Err(_) => Vec::new(),
    }
}

pub(crate) async fn detail(_: Reader, State(app): State<Arc<App>>, Path(group): Path<String>) -> Answer {
    let states = group_states(&app.broker);
    let state = states.get(&group).ok_or_else(|| Problem::not_found(format!("no group {group:?}")))?.clone();
    let members: Vec<MemberRow> = app
        .broker
        .groups()
        .describe(&group)
        .map(|g| {
            g.members()
                .values()
                .map(|m| (m.id.clone(), m.client_id.clone(), m.client_host.clone(), assignment(&m.assignment)))
                .collect()
        })
        .unwrap_or_default();
    let (broker, name) = (Arc::clone(&app.broker), group.clone());
    let lags = blocking(move || Ok(lag_of(&broker, &name))).await?;
    let rows = with_uncommitted(&app, &lags);
    let series = app.history.lock().map(|h| h.lag_of(&group)).unwrap_or_default();
    let mut topics: Vec<String> = lags.iter().map(|l| l.topic.clone()).collect();
    topics.dedup();
    let body = html! {
        h1 { "Group " (group) " " span.state { (state) } }
        h2 { "Members" }
        (members_table(&members))
        h2 { "Lag" }
        (lag_table(&rows))
        h2 { "Total lag over time" }
        (chart(&series))
        h2 { "Reset offsets" }
        p.muted { "The group must have no members. Preview shows every partition's move; nothing changes until you apply it." }
        (reset_form(&group, &topics, None))
    };
    Ok(page(&format!("Group {group}"), "/groups", body).into_response())
}

fn members_table(members: &[MemberRow]) -> Markup {
    html! {
        @if members.is_empty() { p.muted { "No members: the group only holds committed offsets." } }
        @else { table #members {
            thead { tr { th { "Member" } th { "Client" } th { "Host" } th { "Assigned" } } }
            tbody { @for (id, client, host, assigned) in members {
                tr { td { (id) } td { (client) } td { (host) } td { @for a in assigned { div { (a) } } } }
            } }
        } }
    }
}

/// A partition of a topic the group reads: its end, and its lag if the group committed
/// there (a partition without a commit has no lag until a consumer picks a start).
type LagRow<'a> = (&'a str, i32, i64, Option<&'a Lag>);

/// Every partition of the topics in `lags`, as `herald groups describe` lists them.
fn with_uncommitted<'a>(app: &App, lags: &'a [Lag]) -> Vec<LagRow<'a>> {
    let mut topics: Vec<&str> = lags.iter().map(|l| l.topic.as_str()).collect();
    topics.dedup();
    let mut rows = Vec::new();
    for topic in topics {
        let partitions = app.broker.topic(topic).map_or(0, |m| m.partitions as i32);
        for partition in 0..partitions {
            let lag = lags.iter().find(|l| l.topic == topic && l.partition == partition);
            let end = app.broker.partition(topic, partition).map_or(0, |p| p.log().high_watermark() as i64);
            rows.push((topic, partition, end, lag));
        }
    }
    rows
}

fn lag_table(rows: &[LagRow<'_>]) -> Markup {
    let dash = || "–".to_string();
    html! {
        @if rows.is_empty() { p.muted { "No committed offsets." } }
        @else { table #lag {
            thead { tr { th { "Topic" } th.n { "Partition" } th.n { "Committed" } th.n { "End" } th.n { "Lag (records)" } th.n { "Lag (seconds)" } } }
            tbody { @for (topic, partition, end, lag) in rows {
                tr data-topic=(topic) data-partition=(partition) data-lag=(lag.map_or_else(String::new, |l| l.lag.to_string())) {
                    td { a href={ "/topics/" (encode(topic)) } { (topic) } } td.n { (partition) }
                    td.n { (lag.and_then(|l| l.committed).map_or_else(dash, |c| c.to_string())) }
                    td.n { (end) } td.n { (lag.map_or_else(dash, |l| l.lag.to_string())) }
                    td.n { (lag.map_or_else(dash, |l| layout::seconds(l.lag_seconds))) }
                }
            } }
        } }
    }
}

/// A line chart of (ms, lag) samples as inline SVG.
fn chart(series: &[(i64, i64)]) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 100.0;
    if series.len() < 2 {
        return html! { p.muted { "Samples are taken every few seconds; the chart appears after two." } };
    }
    let (t0, t1) = (series[0].0, series[series.len() - 1].0);
    let top = series.iter().map(|s| s.1).max().unwrap_or(0).max(1);
    let points: Vec<String> = series
        .iter()
        .map(|(t, lag)| {
            let x = (t - t0) as f64 / (t1 - t0).max(1) as f64 * W;
            let y = H - *lag as f64 / top as f64 * (H - 10.0);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    html! {
        svg.chart #lag-chart viewBox="0 0 600 100" preserveAspectRatio="none" role="img"
            aria-label={ "Total lag from " (series[0].1) " to " (series[series.len() - 1].1) " records" } {
            polyline points=(points.join(" ")) {}
            text x="4" y="12" { "max " (top) }
        }
        p.muted { (layout::time(t0)) " to " (layout::time(t1)) }
    }
}

/// The reset form; with a `previewed` plan, a form that applies exactly its offsets.
fn reset_form(group: &str, topics: &[String], previewed: Option<(&str, &[Move])>) -> Markup {
    let action = format!("/groups/{}/reset", encode(group));
    html! {
        @if let Some((topic, moves)) = previewed {
            form.box #apply-reset method="post" action={ (action) "/apply" } {
                input type="hidden" name="topic" value=(topic);
                @for m in moves { input type="hidden" name="set" value={ (m.partition) ":" (m.new) }; }
                button.danger type="submit" { "Apply this reset" }
            }
        } @else {
            form.box #reset method="post" action=(action) {
                label { "Topic " input name="topic" list="group-topics" required value=(topics.first().map_or("", String::as_str)); }
                datalist #group-topics { @for t in topics { option value=(t) {} } }
                label { "To " select name="to" {
                    option value="earliest" { "earliest" } option value="latest" { "latest" }
                    option value="offset" { "offset" } option value="time" { "time" }
                } }
                label { "Offset or time " input name="value" size="24" placeholder="42 or 2026-11-30T10:00:00Z"; }
                label { "Partitions " input name="partitions" size="10" placeholder="all, or 0,2"; }
                button type="submit" value="preview" { "Preview" }
            }
        }
    }
}

/// The reset form's fields.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ResetForm {
    topic: String,
    to: String,
    value: Option<String>,
    partitions: Option<String>,
}

impl ResetForm {
    /// The reset this form asks for, as a dry run.
    fn preview(&self) -> Result<Reset, Problem> {
        let value = self.value.as_deref().map(str::trim).unwrap_or_default();
        let to = match self.to.as_str() {
            "earliest" => To::Earliest,
            "latest" => To::Latest,
            "offset" => {
                To::Offset(value.parse().map_err(|_| Problem::bad_request(format!("offset {value:?}: a number")))?)
            }
            "time" => To::Time(parse_time(value)?),
            other => return Err(Problem::bad_request(format!("to {other:?}: earliest, latest, offset or time"))),
        };
        let partitions = match self.partitions.as_deref().map(str::trim) {
            None | Some("") | Some("all") => None,
            Some(list) => Some(
                list.split(',')
                    .map(|p| p.trim().parse().map_err(|_| Problem::bad_request(format!("partition {p:?}: a number"))))
                    .collect::<Result<Vec<i32>, _>>()?,
            ),
        };
        Ok(Reset { topic: self.topic.trim().to_string(), partitions, to, dry_run: true })
    }
}

pub(crate) async fn reset(
    _: Operator,
    State(app): State<Arc<App>>,
    Path(group): Path<String>,
    axum::Form(form): axum::Form<ResetForm>,
) -> Answer {
    let moves = crate::reset::run(&app, group.clone(), form.preview()?).await?;
    let body = html! {
        h1 { "Reset of " a href={ "/groups/" (encode(&group)) } { (group) } " on " (form.topic) }
        p #reset-preview role="status" { "Preview (dry run): nothing has changed yet." }
        (moves_table(&moves))
        (reset_form(&group, &[], Some((&form.topic, &moves))))
    };
    Ok(page(&format!("Reset {group}"), "/groups", body).into_response())
}

/// Commits the offsets a preview showed (`topic`, then `set=<partition>:<offset>` each).
pub(crate) async fn apply(
    _: Operator,
    State(app): State<Arc<App>>,
    Path(group): Path<String>,
    axum::Form(pairs): axum::Form<Vec<(String, String)>>,
) -> Answer {
    let mut topic = String::new();
    let mut offsets = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "topic" => topic = value,
            "set" => {
                let parsed = value.split_once(':').and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)));
                offsets
                    .push(parsed.ok_or_else(|| Problem::bad_request(format!("set {value:?}: <partition>:<offset>")))?);
            }
            _ => {}
        }
    }
    let moves = crate::reset::commit_exactly(&app, group.clone(), topic.clone(), offsets).await?;
    let body = html! {
        h1 { "Reset of " a href={ "/groups/" (encode(&group)) } { (group) } " on " (topic) }
        p.ok #reset-applied role="status" { "Applied: the group's offsets moved as below." }
        (moves_table(&moves))
    };
    Ok(page(&format!("Reset {group}"), "/groups", body).into_response())
}

fn moves_table(moves: &[Move]) -> Markup {
    html! {
        table #moves {
            thead { tr { th.n { "Partition" } th.n { "Committed now" } th.n { "After" } } }
            tbody { @for m in moves {
                tr { td.n { (m.partition) } td.n { (m.current.map_or_else(|| "–".to_string(), |c| c.to_string())) } td.n { (m.new) } }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_assignment_decodes_or_shows_nothing() {
        use kafka_protocol::messages::TopicName;
        use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let assigned = ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
            TopicPartition::default()
                .with_topic(TopicName(StrBytes::from_static_str("orders")))
                .with_partitions(vec![0, 2]),
        ]);
        let mut bytes = bytes::BytesMut::new();
        bytes.extend_from_slice(&1i16.to_be_bytes());
        assigned.encode(&mut bytes, 1).expect("encode");
        assert_eq!(assignment(&bytes), ["orders: [0, 2]"]);
        assert!(assignment(&bytes[..5]).is_empty());
        assert!(assignment(&[0xff, 0xff, 1, 2]).is_empty());
        assert!(assignment(&[]).is_empty());
    }
}
