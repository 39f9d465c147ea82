//! `/api/v1/groups`: list, describe with lag per partition in offsets and in seconds
//! (the age of the oldest unconsumed record), delete.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_broker::internals::{Broker, GroupError, now_ms};
use serde::Serialize;

use crate::auth::{Admin, Read};
use crate::problem::{Path, Problem};
use crate::records;
use crate::server::{App, blocking};

/// A group's lag on one partition.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Lag {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) committed: Option<i64>,
    pub(crate) log_end: i64,
    pub(crate) lag: i64,
    /// Age of the oldest record not yet consumed; 0 when caught up.
    pub(crate) lag_seconds: f64,
}

/// Every group: live ones and those that only hold committed offsets.
pub(crate) fn group_ids(broker: &Broker) -> BTreeSet<String> {
    group_states(broker).into_keys().collect()
}

/// Every group with its state (a group that only holds offsets is `Empty`).
pub(crate) fn group_states(broker: &Broker) -> std::collections::BTreeMap<String, String> {
    let mut groups: std::collections::BTreeMap<String, String> =
        broker.groups().list().into_iter().map(|g| (g.group_id, format!("{:?}", g.state))).collect();
    for id in broker.groups().offsets().groups() {
        groups.entry(id).or_insert_with(|| "Empty".to_string());
    }
    groups
}

/// `group`'s lag on each partition it committed (blocking: reads a record per lagging
/// partition for its age).
pub(crate) fn lag_of(broker: &Broker, group: &str) -> Vec<Lag> {
    let now = now_ms();
    broker
        .group_lag(group)
        .into_iter()
        .map(|l| {
            let from = l.log_end - l.lag;
            let lag_seconds =
                if l.lag > 0 { oldest_age_seconds(broker, &l.topic, l.partition, from, now) } else { 0.0 };
            Lag {
                topic: l.topic,
                partition: l.partition,
                committed: l.committed,
                log_end: l.log_end,
                lag: l.lag,
                lag_seconds,
            }
        })
        .collect()
}

/// Seconds since the record at `offset` was written.
fn oldest_age_seconds(broker: &Broker, topic: &str, partition: i32, offset: i64, now: i64) -> f64 {
    let Some(log) = broker.partition(topic, partition) else { return 0.0 };
    let Ok(read) = log.log().read(offset.max(0) as u64, 64 * 1024) else { return 0.0 };
    let Ok((messages, _)) = records::decode(partition, read.bytes, offset) else { return 0.0 };
    messages.first().map_or(0.0, |m| (now - m.timestamp).max(0) as f64 / 1000.0)
}

pub(crate) async fn list(_: Read, State(app): State<Arc<App>>) -> Response {
    let groups: Vec<_> = group_states(&app.broker)
        .into_iter()
        .map(|(id, state)| serde_json::json!({ "groupId": id, "state": state }))
        .collect();
    axum::Json(serde_json::json!({ "groups": groups })).into_response()
}

pub(crate) async fn describe(
    _: Read,
    State(app): State<Arc<App>>,
    Path(group): Path<String>,
) -> Result<Response, Problem> {
    if !group_ids(&app.broker).contains(&group) {
        return Err(Problem::not_found(format!("no group {group:?}")));
    }
    let live = app.broker.groups().describe(&group);
    let members: Vec<_> = live
        .as_ref()
        .map(|g| {
            g.members()
                .values()
                .map(|m| serde_json::json!({ "memberId": m.id, "clientId": m.client_id, "host": m.client_host, "instanceId": m.instance_id }))
                .collect()
        })
        .unwrap_or_default();
    let state = live.as_ref().map_or_else(|| "Empty".to_string(), |g| format!("{:?}", g.state()));
    let broker = Arc::clone(&app.broker);
    let name = group.clone();
    let lag = blocking(move || Ok(lag_of(&broker, &name))).await?;
    Ok(axum::Json(serde_json::json!({ "groupId": group, "state": state, "members": members, "lag": lag }))
        .into_response())
}

pub(crate) async fn delete(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(group): Path<String>,
) -> Result<Response, Problem> {
    let broker = Arc::clone(&app.broker);
    blocking(move || {
        let durable_at = match broker.groups().delete(&group, now_ms()) {
            Ok(written) => written.map_err(|e| Problem::internal(format!("deleting the offsets: {e}")))?,
            Err(GroupError::NonEmptyGroup) => {
                return Err(Problem::new(StatusCode::CONFLICT, format!("group {group:?} has members")));
            }
            Err(_) => return Err(Problem::not_found(format!("no group {group:?}"))),
        };
        let log = broker.groups().offsets().log();
        log.sync_through(durable_at).map_err(|e| Problem::internal(format!("fsync: {e}")))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
