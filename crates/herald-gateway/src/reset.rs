//! `POST /api/v1/groups/{group}/offsets`: moves a stopped group's committed offsets on a
//! topic to its start, its end, an offset or a time — a dry run unless `"dryRun": false`,
//! refused while the group has members (they would commit over it).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald_broker::internals::{Broker, Committed, now_ms};
use serde::{Deserialize, Serialize};

use crate::auth::Admin;
use crate::problem::{Json, Path, Problem};
use crate::server::{App, blocking};

/// Where to move the offsets.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) enum To {
    Earliest,
    Latest,
    Offset(i64),
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
}

/// A reset request.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Reset {
    pub(crate) topic: String,
    /// Partitions to move (all when absent).
    pub(crate) partitions: Option<Vec<i32>>,
    pub(crate) to: To,
    #[serde(default = "yes")]
    pub(crate) dry_run: bool,
}

fn yes() -> bool {
    true
}

/// One partition's move.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Move {
    pub(crate) partition: i32,
    pub(crate) current: Option<i64>,
    pub(crate) new: i64,
}

pub(crate) async fn reset(
    _: Admin,
    State(app): State<Arc<App>>,
    Path(group): Path<String>,
    Json(reset): Json<Reset>,
) -> Result<Response, Problem> {
    let dry_run = reset.dry_run;
    let moves = run(&app, group, reset).await?;
    Ok(axum::Json(serde_json::json!({ "dryRun": dry_run, "offsets": moves })).into_response())
}

/// Refuses a reset while `group` has members (they would commit over it).
fn stopped(app: &App, group: &str) -> Result<(), Problem> {
    if app.broker.groups().describe(group).is_some_and(|g| !g.members().is_empty()) {
        return Err(Problem::new(StatusCode::CONFLICT, format!("group {group:?} has members: stop them first")));
    }
    Ok(())
}

/// Plans `reset` of `group` and, unless it is a dry run, applies it; refused while the
/// group has members.
pub(crate) async fn run(app: &App, group: String, reset: Reset) -> Result<Vec<Move>, Problem> {
    stopped(app, &group)?;
    let broker = Arc::clone(&app.broker);
    blocking(move || {
        let moves = plan(&broker, &group, &reset)?;
        if !reset.dry_run {
            apply(&broker, &group, &reset.topic, &moves)?;
        }
        Ok(moves)
    })
    .await
}

/// Commits exactly `offsets` (partition, next offset) of `group` on `topic`, as a
/// preview showed them; refused while the group has members. Returns the moves made.
pub(crate) async fn commit_exactly(
    app: &App,
    group: String,
    topic: String,
    offsets: Vec<(i32, i64)>,
) -> Result<Vec<Move>, Problem> {
    stopped(app, &group)?;
    let meta = app.broker.topic(&topic).ok_or_else(|| Problem::not_found(format!("no topic {topic:?}")))?;
    if offsets.is_empty() || offsets.iter().any(|(p, o)| *p < 0 || *p as u32 >= meta.partitions || *o < 0) {
        return Err(Problem::bad_request(format!(
            "offsets for partitions 0 to {} of {topic:?}, none negative",
            meta.partitions
        )));
    }
    let broker = Arc::clone(&app.broker);
    blocking(move || {
        let moves: Vec<Move> = offsets
            .iter()
            .map(|(partition, new)| {
                let current = broker.groups().offsets().get(&group, &topic, *partition).map(|c| c.offset);
                Move { partition: *partition, current, new: *new }
            })
            .collect();
        apply(&broker, &group, &topic, &moves)?;
        Ok(moves)
    })
    .await
}

/// Where each partition would go (blocking: reads time indexes).
fn plan(broker: &Broker, group: &str, reset: &Reset) -> Result<Vec<Move>, Problem> {
    let meta = broker.topic(&reset.topic).ok_or_else(|| Problem::not_found(format!("no topic {:?}", reset.topic)))?;
    let all: Vec<i32> = (0..meta.partitions as i32).collect();
    let partitions = reset.partitions.clone().unwrap_or(all);
    let mut moves = Vec::new();
    for partition in partitions {
        let log = broker
            .partition(&reset.topic, partition)
            .ok_or_else(|| Problem::not_found(format!("topic {:?} has no partition {partition}", reset.topic)))?;
        let log = log.log();
        let (start, end) = (log.log_start_offset() as i64, log.high_watermark() as i64);
        let new = match reset.to {
            To::Earliest => start,
            To::Latest => end,
            To::Offset(offset) => offset.clamp(start, end),
            To::Time(ms) => match log.offset_for_timestamp(ms) {
                Ok(Some(found)) => found.offset as i64,
                Ok(None) => end,
                Err(error) => return Err(Problem::internal(format!("reading the time index: {error}"))),
            },
        };
        let current = broker.groups().offsets().get(group, &reset.topic, partition).map(|c| c.offset);
        moves.push(Move { partition, current, new });
    }
    Ok(moves)
}

/// Commits the moves and waits until they are durable.
fn apply(broker: &Broker, group: &str, topic: &str, moves: &[Move]) -> Result<(), Problem> {
    commit(broker, group, topic, moves.iter().map(|m| (m.partition, m.new)))
}

/// Commits `group`'s `offsets` (partition, next offset) on `topic` and waits until they
/// are durable.
pub(crate) fn commit(
    broker: &Broker,
    group: &str,
    topic: &str,
    offsets: impl IntoIterator<Item = (i32, i64)>,
) -> Result<(), Problem> {
    let now = now_ms();
    let entries = offsets
        .into_iter()
        .map(|(partition, offset)| {
            let committed = Committed { offset, leader_epoch: -1, metadata: String::new(), commit_ms: now };
            (topic.to_string(), partition, committed)
        })
        .collect();
    let offsets = broker.groups().offsets();
    let durable_at = offsets.commit(group, entries, now).map_err(|e| Problem::internal(format!("committing: {e}")))?;
    offsets.log().sync_through(durable_at).map_err(|e| Problem::internal(format!("fsync: {e}")))
}
