//! `herald projections list | status | retry | skip --database-url ...`: where each
//! projection of a service stands (checkpoint, last event time, parked event) and the
//! commands a parked one waits for.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use herald::projection::{PostgresProjections, ProjectionControl, ProjectionState, SqliteProjections};
use serde_json::json;

use crate::cluster::print_table;

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
    /// Every projection: version, checkpoint, last event time, parked or running.
    List,
    /// One projection, with its parked event and error if any.
    Status(Target),
    /// Have a parked projection try its event again (after a fix).
    Retry(Target),
    /// Have a parked projection skip its event (recorded in herald_projection_skips).
    Skip(Target),
}

#[derive(Debug, clap::Args)]
struct Target {
    /// The projection's name.
    name: String,
    /// Its version.
    #[arg(long, default_value_t = 1)]
    version: u32,
}

enum Control {
    Postgres(ProjectionControl<PostgresProjections>),
    Sqlite(ProjectionControl<SqliteProjections>),
}

macro_rules! with_control {
    ($control:expr, |$c:ident| $body:expr) => {
        match $control {
            Control::Postgres($c) => $body,
            Control::Sqlite($c) => $body,
        }
    };
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
                let state = with_control!(&control, |c| c.state(&target.name, target.version).await)?;
                print(args.json, &[row(&target.name, target.version, &state)]);
            }
            ProjectionsCommand::Retry(target) => {
                with_control!(&control, |c| c.retry(&target.name, target.version).await)?;
                println!("{} v{}: retry requested", target.name, target.version);
            }
            ProjectionsCommand::Skip(target) => {
                with_control!(&control, |c| c.skip(&target.name, target.version).await)?;
                println!("{} v{}: skip requested", target.name, target.version);
            }
        }
        Ok(())
    })
}

async fn open(url: &str) -> anyhow::Result<Control> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let pool = sqlx::PgPool::connect(url)
            .await
            .with_context(|| format!("connecting to {}", crate::outbox::redact(url)))?;
        return Ok(Control::Postgres(ProjectionControl::new(PostgresProjections::new(pool).await?)));
    }
    if url.starts_with("sqlite:") {
        let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .with_context(|| format!("reading {url}"))?
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::SqlitePool::connect_with(options).await.with_context(|| format!("opening {url}"))?;
        return Ok(Control::Sqlite(ProjectionControl::new(SqliteProjections::new(pool).await?)));
    }
    bail!("--database-url {}: expected postgres://... or sqlite://...", crate::outbox::redact(url))
}

const HEADER: [&str; 6] = ["projection", "version", "checkpoint", "last event", "state", "parked error"];

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
    let position = format!("{}:{}", state.position.txid, state.position.id);
    vec![name.to_string(), version.to_string(), position, last, status, error]
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
