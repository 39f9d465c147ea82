//! `/sagas` and `/projections`: a service's sagas (counts by state, instances, one saga's
//! timeline) and projections (lag, a rebuild action), read from the service's database
//! through [`Workflows`]. `herald serve --database-url` provides one; the gateway itself
//! links no database driver.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, encode, page};
use super::{Answer, Operator, Reader};
use crate::problem::{Path, Problem, Query};
use crate::server::App;

/// A boxed future, for the object-safe [`Workflows`].
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// How many instances of one saga are in one state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaCount {
    /// The saga's name.
    pub saga: String,
    /// `running`, `completed` or `compensated`.
    pub status: String,
    /// How many.
    pub count: i64,
}

/// One saga instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaInstance {
    /// The saga's name.
    pub saga: String,
    /// The instance's id.
    pub id: String,
    /// Its state.
    pub status: String,
    /// The step it is at, if running.
    pub step: Option<String>,
    /// When it started (ms since the epoch).
    pub started_ms: i64,
    /// When it last changed.
    pub updated_ms: i64,
}

/// What happened to one instance, oldest first: (ms since the epoch, kind, what).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SagaTimeline {
    /// The instance.
    pub instance: SagaInstance,
    /// Its state as JSON.
    pub state: String,
    /// Its history.
    pub history: Vec<(i64, String, String)>,
}

/// One projection version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionRow {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// Whether this version serves reads.
    pub live: bool,
    /// Events not yet applied, when known.
    pub lag: Option<i64>,
    /// When the last applied event was written (ms since the epoch).
    pub last_event_ms: Option<i64>,
    /// Why it is parked, if it is.
    pub parked: Option<String>,
    /// A command waiting for its runner (`reset`, `retry`, `skip`).
    pub command: Option<String>,
}

/// A service's sagas and projections.
pub trait Workflows: Send + Sync + std::fmt::Debug {
    /// Instances per saga and state.
    fn saga_counts(&self) -> Pending<'_, Vec<SagaCount>>;
    /// Instances of `saga` in `status` (any when empty), newest first.
    fn sagas<'a>(&'a self, saga: &'a str, status: &'a str, limit: i64) -> Pending<'a, Vec<SagaInstance>>;
    /// One instance and its history.
    fn saga<'a>(&'a self, saga: &'a str, id: &'a str) -> Pending<'a, Option<SagaTimeline>>;
    /// Every projection version.
    fn projections(&self) -> Pending<'_, Vec<ProjectionRow>>;
    /// Asks the projection's runner to rebuild it from the first event.
    fn rebuild<'a>(&'a self, name: &'a str, version: u32) -> Pending<'a, ()>;
}

/// Instances listed per page.
const INSTANCES_SHOWN: i64 = 100;

fn absent(title: &str) -> Markup {
    html! {
        h1 { (title) }
        p.muted { "No service database is connected. Start the server with "
            code { "herald serve --database-url postgres://…" } " or " code { "sqlite:path" }
            " to see the sagas and projections stored there." }
    }
}

/// How long a page waits for the service database.
const DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// `pending`'s answer, or a problem when it fails or takes longer than [`DATABASE_WAIT`].
async fn bounded<T>(pending: Pending<'_, T>) -> Result<T, Problem> {
    match tokio::time::timeout(DATABASE_WAIT, pending).await {
        Ok(answer) => answer.map_err(|e| Problem::internal(format!("the service database: {e}"))),
        Err(_) => Err(Problem::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            format!("the service database did not answer within {} s", DATABASE_WAIT.as_secs()),
        )),
    }
}

/// Which instances to list.
#[derive(Debug, Deserialize)]
pub(crate) struct Filter {
    saga: Option<String>,
    status: Option<String>,
}

pub(crate) async fn sagas(_: Reader, State(app): State<Arc<App>>, Query(filter): Query<Filter>) -> Answer {
    let Some(source) = app.workflows.clone() else {
        return Ok(page("Sagas", "/sagas", absent("Sagas")).into_response());
    };
    let counts = bounded(source.saga_counts()).await?;
    let status = filter.status.clone().unwrap_or_default();
    let instances = match filter.saga.as_deref() {
        Some(saga) => bounded(source.sagas(saga, &status, INSTANCES_SHOWN)).await?,
        None => Vec::new(),
    };
    let body = html! {
        h1 { "Sagas" }
        @if counts.is_empty() { p.muted { "No saga instances." } }
        @else { table #saga-counts {
            thead { tr { th { "Saga" } th { "State" } th.n { "Instances" } } }
            tbody { @for c in &counts {
                tr { td { a href={ "/sagas?saga=" (encode(&c.saga)) } { (c.saga) } }
                     td { a href={ "/sagas?saga=" (encode(&c.saga)) "&status=" (encode(&c.status)) } { (c.status) } }
                     td.n { (c.count) } }
            } }
        } }
        @if let Some(saga) = &filter.saga {
            h2 { (saga) @if !status.is_empty() { " (" (status) ")" } }
            table #saga-instances {
                thead { tr { th { "Id" } th { "State" } th { "Step" } th { "Started" } th { "Updated" } } }
                tbody { @for i in &instances {
                    tr { td { a href={ "/sagas/" (encode(&i.saga)) "/" (encode(&i.id)) } { (i.id) } } td { span.state { (i.status) } }
                         td { (i.step.as_deref().unwrap_or("")) } td { (layout::time(i.started_ms)) } td { (layout::time(i.updated_ms)) } }
                } }
            }
        }
    };
    Ok(page("Sagas", "/sagas", body).into_response())
}

pub(crate) async fn saga(_: Reader, State(app): State<Arc<App>>, Path((saga, id)): Path<(String, String)>) -> Answer {
    let Some(source) = app.workflows.clone() else {
        return Ok(page("Sagas", "/sagas", absent("Sagas")).into_response());
    };
    let found = bounded(source.saga(&saga, &id)).await?;
    let timeline = found.ok_or_else(|| Problem::not_found(format!("no instance {id:?} of saga {saga:?}")))?;
    let i = &timeline.instance;
    let state = serde_json::from_str(&timeline.state).map_or_else(|_| timeline.state.clone(), |v| layout::pretty(&v));
    let body = html! {
        h1 { "Saga " (saga) " · " (id) " " span.state { (i.status) } }
        p { "Started " (layout::time(i.started_ms)) ", updated " (layout::time(i.updated_ms))
            @if let Some(step) = &i.step { ", at step " strong { (step) } } }
        h2 { "Timeline" }
        table #saga-timeline {
            thead { tr { th { "When" } th { "Kind" } th { "What" } } }
            tbody { @for (at, kind, what) in &timeline.history { tr { td { (layout::time(*at)) } td { (kind) } td { (what) } } } }
        }
        h2 { "State" }
        pre { (state) }
    };
    Ok(page(&format!("Saga {saga}"), "/sagas", body).into_response())
}

pub(crate) async fn projections(_: Reader, State(app): State<Arc<App>>) -> Answer {
    let Some(source) = app.workflows.clone() else {
        return Ok(page("Projections", "/projections", absent("Projections")).into_response());
    };
    let rows = bounded(source.projections()).await?;
    let body = html! {
        h1 { "Projections" }
        @if rows.is_empty() { p.muted { "No projections." } }
        @else { table #projections {
            thead { tr { th { "Name" } th.n { "Version" } th { "Serving" } th.n { "Lag (events)" } th { "Last event" } th { "Parked" } th { "Pending" } th {} } }
            tbody { @for p in &rows {
                tr {
                    td { (p.name) } td.n { (p.version) } td { @if p.live { "yes" } @else { "no" } }
                    td.n { (p.lag.map_or_else(|| "–".to_string(), |l| l.to_string())) }
                    td { (p.last_event_ms.map(layout::time).unwrap_or_default()) }
                    td { (p.parked.as_deref().unwrap_or("")) } td { (p.command.as_deref().unwrap_or("")) }
                    td { form.inline method="post" action={ "/projections/" (encode(&p.name)) "/" (p.version) "/rebuild" }
                        data-confirm={ "Rebuild " (p.name) " v" (p.version) " from the first event?" } {
                        button.plain type="submit" { "Rebuild" } } }
                }
            } }
        } }
        p.muted { "A rebuild empties the projection's tables and replays every event; its runner does it when it next looks." }
    };
    Ok(page("Projections", "/projections", body).into_response())
}

pub(crate) async fn rebuild(
    _: Operator,
    State(app): State<Arc<App>>,
    Path((name, version)): Path<(String, u32)>,
) -> Answer {
    let source = app.workflows.clone().ok_or_else(|| Problem::not_found("no service database is connected"))?;
    bounded(source.rebuild(&name, version)).await?;
    Ok(Redirect::to("/projections").into_response())
}
