//! `herald projections list | status | rebuild | reset | retry | skip --database-url ...`:
//! where each projection version of a service stands (checkpoint, last event time, live,
//! building or retired, parked event), how far a building version is, and the commands its
//! runner carries out.

use anyhow::{Context, bail};
use herald::projection::{PostgresProjections, ProjectionControl, ProjectionState, RebuildProgress, SqliteProjections};
use herald::store::{PostgresEventStore, SqliteEventStore};
use serde_json::json;

use crate::cluster::print_table;
use crate::database::Pool;

/// `herald projections ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct ProjectionsArgs {
    /// The read models' database: `postgres://user:password@host/db` or `sqlite://path`.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: ProjectionsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ProjectionsCommand {
    /// Every projection version: checkpoint, last event time, live, building or retired,
    /// parked or running.
    List,
    /// One projection version, with its parked event and error if any.
    Status(Target),
    /// How far the building version of a projection is, with its rate and an ETA. A
    /// rebuild starts when a runner of a higher `version()` starts; it goes live by itself
    /// once caught up.
    Rebuild(Target),
    /// Have a version's runner empty its tables and fold every event again, in place (its
    /// readers see it rebuild; bump the version to rebuild without downtime).
    Reset(Target),
    /// Have a parked projection try its event again (after a fix).
    Retry(Target),
    /// Have a parked projection skip its event (recorded in herald_projection_skips).
    Skip(Target),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The projection's name.
    name: String,
    /// Its version (default: the live one; for `rebuild`, the newest).
    #[arg(long)]
    version: Option<u32>,
}

enum Control {
    Postgres(ProjectionControl<PostgresProjections>, sqlx::PgPool),
    Sqlite(ProjectionControl<SqliteProjections>, sqlx::SqlitePool),
}

macro_rules! with_control {
    ($control:expr, |$c:ident| $body:expr) => {
        match $control {
            Control::Postgres($c, _) => $body,
            Control::Sqlite($c, _) => $body,
        }
    };
}

/// The version `target` names: as given, else the live one (or, `newest`, the highest).
async fn version_of(control: &Control, target: &Target, newest: bool) -> anyhow::Result<u32> {
    if let Some(version) = target.version {
        return Ok(version);
    }
    let all = with_control!(control, |c| c.list().await)?;
    let versions = all.iter().filter(|(name, _, _)| *name == target.name);
    let live = versions.clone().find_map(|(_, _, state)| state.live_version);
    let highest = versions.map(|(_, version, _)| *version).max();
    match if newest { highest } else { live.or(highest) } {
        Some(version) => Ok(version),
        None => bail!("no projection {:?} has a checkpoint here", target.name),
    }
}

/// How far `version` is through the store's events in the same database.
async fn progress(control: &Control, name: &str, version: u32) -> anyhow::Result<RebuildProgress> {
    Ok(match control {
        Control::Postgres(c, pool) => {
            let store = PostgresEventStore::new(pool.clone()).await?;
            c.progress(&store, name, version).await?
        }
        Control::Sqlite(c, pool) => {
            let store = SqliteEventStore::new(pool.clone()).await?;
            c.progress(&store, name, version).await?
        }
    })
}

async fn rebuild(control: &Control, target: &Target) -> anyhow::Result<()> {
    let version = version_of(control, target, true).await?;
    let state = with_control!(control, |c| c.state(&target.name, version).await)?;
    let progress = progress(control, &target.name, version).await?;
    let eta = match progress.eta {
        _ if state.live_version == Some(version) => "live".to_string(),
        Some(eta) => format!("about {} s left", eta.as_secs()),
        None => "no progress yet".to_string(),
    };
    let live = state.live_version.map_or("none".to_string(), |live| format!("v{live}"));
    println!(
        "{} v{version}: {} of {} events ({:.1} %), {:.0} events/s, {eta}; live: {live}",
        target.name,
        progress.done,
        progress.total,
        progress.percent(),
        progress.per_second
    );
    Ok(())
}

pub(crate) fn run(args: ProjectionsArgs) -> anyhow::Result<()> {
    let Some(url) = args.database_url.clone() else { bail!("--database-url (or DATABASE_URL) is required") };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let control = open(&url).await?;
        match args.command {
            ProjectionsCommand::List => {
                let all = with_control!(&control, |c| c.list().await)?;
                let rows: Vec<Vec<String>> =
                    all.iter().map(|(name, version, state)| row(name, *version, state)).collect();
                print(args.json, &rows);
            }
            ProjectionsCommand::Status(target) => {
                let version = version_of(&control, &target, false).await?;
                let state = with_control!(&control, |c| c.state(&target.name, version).await)?;
                print(args.json, &[row(&target.name, version, &state)]);
            }
            ProjectionsCommand::Rebuild(target) => rebuild(&control, &target).await?,
            ProjectionsCommand::Reset(target) => {
                let version = version_of(&control, &target, false).await?;
                with_control!(&control, |c| c.reset(&target.name, version).await)?;
                println!("{} v{version}: reset requested", target.name);
            }
            ProjectionsCommand::Retry(target) => {
                let version = version_of(&control, &target, false).await?;
                with_control!(&control, |c| c.retry(&target.name, version).await)?;
                println!("{} v{version}: retry requested", target.name);
            }
            ProjectionsCommand::Skip(target) => {
                let version = version_of(&control, &target, false).await?;
                with_control!(&control, |c| c.skip(&target.name, version).await)?;
                println!("{} v{version}: skip requested", target.name);
            }
        }
        Ok(())
    })
}

async fn open(url: &str) -> anyhow::Result<Control> {
    Ok(match crate::database::connect(url).await? {
        Pool::Postgres(pool) => {
            Control::Postgres(ProjectionControl::new(PostgresProjections::new(pool.clone()).await?), pool)
        }
        Pool::Sqlite(pool) => {
            Control::Sqlite(ProjectionControl::new(SqliteProjections::new(pool.clone()).await?), pool)
        }
    })
}

const HEADER: [&str; 7] = ["projection", "version", "serving", "checkpoint", "last event", "state", "parked error"];

fn row(name: &str, version: u32, state: &ProjectionState) -> Vec<String> {
    let last = state.last_event_ms.map(herald::time::rfc3339_from_millis).unwrap_or_default();
    let (status, error) = match &state.parked {
        Some(parked) => (format!("parked at event {}", parked.event_id), parked.error.clone()),
        None => ("running".to_string(), String::new()),
    };
    let status = match state.command {
        Some(command) => format!("{status} ({command:?} requested)"),
        None => status,
    };
    let serving = match (state.retired_ms, state.live_version) {
        (Some(_), _) => "retired",
        (None, Some(live)) if live == version => "live",
        (None, Some(live)) if live > version => "superseded",
        (None, Some(_)) => "building",
        (None, None) => "-",
    };
    let position = format!("{}:{}", state.position.txid, state.position.id);
    vec![name.to_string(), version.to_string(), serving.to_string(), position, last, status, error]
}

fn print(as_json: bool, rows: &[Vec<String>]) {
    if !as_json {
        print_table(&HEADER, rows);
        return;
    }
    for row in rows {
        let object: serde_json::Map<String, serde_json::Value> =
            HEADER.iter().zip(row).map(|(h, v)| (h.to_string(), json!(v))).collect();
        println!("{}", serde_json::Value::Object(object));
    }
}
