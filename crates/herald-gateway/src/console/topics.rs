//! `/topics`: the list with a create form; `/topics/{t}`: partitions, settings (edited
//! in place), the groups reading it, and delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, encode, page};
use super::{Answer, Operator, Reader};
use crate::problem::{Path, Problem};
use crate::server::{App, blocking};
use crate::topics::partitions;

pub(crate) async fn list(_: Reader, State(app): State<Arc<App>>) -> Answer {
    let history = app.history.lock().map_err(|_| Problem::internal("the history lock"))?;
    let rows: Vec<_> = app
        .broker
        .topics()
        .into_iter()
        .map(|(name, meta)| {
            let parts = partitions(&app.broker, &name, meta.partitions);
            let messages: i64 = parts.iter().map(|p| p.high_watermark - p.log_start_offset).sum();
            let size: u64 = parts.iter().map(|p| p.size_bytes).sum();
            let rate = history.topic_rate(&name);
            (name, meta.partitions, messages, size, rate)
        })
        .collect();
    drop(history);
    let body = html! {
        h1 { "Topics" }
        table #topics {
            thead { tr { th { "Topic" } th.n { "Partitions" } th.n { "Messages" } th.n { "Size" } th.n { "Rate" } } }
            tbody { @for (name, partitions, messages, size, rate) in &rows {
                tr {
                    td { a href={ "/topics/" (encode(name)) } { (name) } }
                    td.n { (partitions) } td.n { (messages) } td.n { (layout::bytes(*size)) } td.n { (layout::rate(*rate)) }
                }
            } }
        }
        h2 { "Create a topic" }
        form.box #create-topic method="post" action="/topics" {
            label { "Name " input name="name" required pattern="[A-Za-z0-9._\\-]+" maxlength="249"; }
            label { "Partitions " input name="partitions" type="number" min="1" value="1"; }
            label { "Settings (one " code { "name=value" } " per line) " br; textarea name="configs" rows="3" cols="40" {} }
            button type="submit" { "Create" }
        }
    };
    Ok(page("Topics", "/topics", body).into_response())
}

/// The create form.
#[derive(Debug, Deserialize)]
pub(crate) struct NewTopic {
    name: String,
    partitions: Option<String>,
    #[serde(default)]
    configs: String,
}

/// `name=value` lines (blank lines skipped).
fn settings_of(text: &str) -> Result<BTreeMap<String, String>, Problem> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .ok_or_else(|| Problem::bad_request(format!("{line:?}: settings are name=value lines")))?;
            Ok((name.trim().to_string(), value.trim().to_string()))
        })
        .collect()
}

pub(crate) async fn create(_: Operator, State(app): State<Arc<App>>, axum::Form(new): axum::Form<NewTopic>) -> Answer {
    let partitions = match new.partitions.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) => Some(n.parse().map_err(|_| Problem::bad_request(format!("partitions {n:?}: a positive number")))?),
    };
    let configs = settings_of(&new.configs)?;
    let (broker, name) = (Arc::clone(&app.broker), new.name.trim().to_string());
    let created = name.clone();
    blocking(move || broker.create_topic(&name, partitions, configs, false).map_err(Problem::from)).await?;
    Ok(Redirect::to(&format!("/topics/{}", encode(&created))).into_response())
}

pub(crate) async fn detail(_: Reader, State(app): State<Arc<App>>, Path(topic): Path<String>) -> Answer {
    let meta = app.broker.topic(&topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
    let parts = partitions(&app.broker, &topic, meta.partitions);
    let readers = readers(&app, &topic);
    let settings: String = meta.configs.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let t = encode(&topic);
    let body = html! {
        h1 { "Topic " (topic) }
        p { a href={ "/topics/" (t) "/messages" } { "Browse messages" } " · " a href={ "/topics/" (t) "/tail" } { "Live tail" } }
        h2 { "Partitions" }
        table #partitions {
            thead { tr { th.n { "Partition" } th.n { "Start offset" } th.n { "End offset" } th.n { "Messages" } th.n { "Size" } } }
            tbody { @for p in &parts {
                tr {
                    td.n { a href={ "/topics/" (t) "/messages?partition=" (p.partition) } { (p.partition) } }
                    td.n { (p.log_start_offset) } td.n { (p.high_watermark) }
                    td.n { (p.high_watermark - p.log_start_offset) } td.n { (layout::bytes(p.size_bytes)) }
                }
            } }
        }
        h2 { "Consumer groups" }
        (readers_table(&readers))
        h2 { "Settings" }
        p.muted { "Overrides of the broker's defaults; saving replaces them all." }
        form.box #settings method="post" action={ "/topics/" (t) "/settings" } {
            textarea name="configs" rows="4" cols="50" aria-label="Settings, one name=value per line" { (settings) }
            br;
            button type="submit" { "Save settings" }
        }
        h2 { "Delete" }
        form.box method="post" action={ "/topics/" (t) "/delete" } data-confirm={ "Delete topic " (topic) " and all its records?" } {
            label { "Type the topic's name to confirm " input name="confirm" required; }
            button.danger type="submit" { "Delete topic" }
        }
    };
    Ok(page(&topic, "/topics", body).into_response())
}

/// Each group with committed offsets on `topic`: (group, records behind).
fn readers(app: &App, topic: &str) -> Vec<(String, i64)> {
    app.broker
        .groups()
        .offsets()
        .groups()
        .into_iter()
        .filter_map(|group| {
            let lags: Vec<i64> =
                app.broker.group_lag(&group).iter().filter(|l| l.topic == topic).map(|l| l.lag).collect();
            (!lags.is_empty()).then(|| (group, lags.iter().sum()))
        })
        .collect()
}

fn readers_table(readers: &[(String, i64)]) -> Markup {
    html! {
        @if readers.is_empty() {
            p.muted { "No group has committed offsets on this topic." }
        } @else {
            table { thead { tr { th { "Group" } th.n { "Lag (records)" } } }
                tbody { @for (group, lag) in readers {
                    tr { td { a href={ "/groups/" (encode(group)) } { (group) } } td.n { (lag) } }
                } }
            }
        }
    }
}

/// The settings form.
#[derive(Debug, Deserialize)]
pub(crate) struct Settings {
    #[serde(default)]
    configs: String,
}

pub(crate) async fn settings(
    _: Operator,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    axum::Form(form): axum::Form<Settings>,
) -> Answer {
    let configs = settings_of(&form.configs)?;
    let (broker, name) = (Arc::clone(&app.broker), topic.clone());
    blocking(move || broker.set_topic_configs(&name, configs, false).map_err(Problem::from)).await?;
    Ok(Redirect::to(&format!("/topics/{}", encode(&topic))).into_response())
}

/// The delete form.
#[derive(Debug, Deserialize)]
pub(crate) struct Delete {
    confirm: String,
}

pub(crate) async fn delete(
    _: Operator,
    State(app): State<Arc<App>>,
    Path(topic): Path<String>,
    axum::Form(form): axum::Form<Delete>,
) -> Answer {
    if form.confirm.trim() != topic {
        return Err(Problem::bad_request("the name typed does not match the topic; nothing was deleted").into());
    }
    let broker = Arc::clone(&app.broker);
    blocking(move || broker.delete_topic(&topic).map_err(Problem::from)).await?;
    Ok(Redirect::to("/topics").into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_name_value_lines() {
        let parsed = settings_of("retention.ms = 1000\n\ncleanup.policy=delete\n").expect("parsed");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed["retention.ms"], "1000");
        assert!(settings_of("retention.ms").is_err());
    }
}
