//! `herald sagas list [--saga S] [--state S] | show <id> --database-url ...`: where each
//! saga instance of a service stands — state, step, remaining steps, history (events in,
//! messages out, compensations, deadlines fired, times) and pending deadlines.

use anyhow::{Context, bail};
use herald::saga::{PostgresSagas, SagaControl, SagaView, SqliteSagas};
use serde_json::json;

use crate::cluster::print_table;
use crate::database::Pool;

/// `herald sagas ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct SagasArgs {
    /// The sagas' database: `postgres://user:password@host/db` or `sqlite://path`.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Only this saga (default: all).
    #[arg(long, global = true, default_value = "")]
    saga: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: SagasCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SagasCommand {
    /// Instances, newest first: saga, id, state, step, started, updated.
    List {
        /// Only instances in this state: running, completed or compensated.
        #[arg(long, default_value = "")]
        state: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One instance: its state, remaining steps, history and pending deadlines.
    Show {
        /// The instance id.
        id: String,
    },
}

enum Control {
    Postgres(SagaControl<PostgresSagas>),
    Sqlite(SagaControl<SqliteSagas>),
}

macro_rules! with_control {
    ($control:expr, |$c:ident| $body:expr) => {
        match $control {
            Control::Postgres($c) => $body,
            Control::Sqlite($c) => $body,
        }
    };
}

pub(crate) fn run(args: SagasArgs) -> anyhow::Result<()> {
    let Some(url) = args.database_url.clone() else { bail!("--database-url (or DATABASE_URL) is required") };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let control = open(&url).await?;
        match &args.command {
            SagasCommand::List { state, limit } => {
                let all = with_control!(&control, |c| c.list(&args.saga, state, *limit).await)?;
                list(&all, args.json);
            }
            SagasCommand::Show { id } => {
                let Some(found) = with_control!(&control, |c| c.show(&args.saga, id).await)? else {
                    bail!("no saga instance {id:?}");
                };
                let steps = with_control!(&control, |c| c.steps(&found.saga).await)?;
                show(&found, &found.remaining(&steps), args.json);
            }
        }
        Ok(())
    })
}

async fn open(url: &str) -> anyhow::Result<Control> {
    Ok(match crate::database::connect(url).await? {
        Pool::Postgres(pool) => Control::Postgres(SagaControl::new(PostgresSagas::new(pool).await?)),
        Pool::Sqlite(pool) => Control::Sqlite(SagaControl::new(SqliteSagas::new(pool).await?)),
    })
}

fn time(ms: i64) -> String {
    herald::time::rfc3339_from_millis(ms)
}

fn list(all: &[SagaView], as_json: bool) {
    if as_json {
        for s in all {
            let ended = s.ended_ms.map(time);
            println!(
                "{}",
                json!({"saga": s.saga, "id": s.id, "state": s.status, "step": s.step, "started": time(s.started_ms),
                       "updated": time(s.updated_ms), "ended": ended})
            );
        }
        return;
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|s| {
            let step = s.step.clone().unwrap_or_default();
            vec![s.saga.clone(), s.id.clone(), s.status.clone(), step, time(s.started_ms), time(s.updated_ms)]
        })
        .collect();
    print_table(&["saga", "id", "state", "step", "started", "updated"], &rows);
}

fn show(s: &SagaView, remaining: &[&str], as_json: bool) {
    let history: Vec<serde_json::Value> = s
        .history
        .iter()
        .map(|h| json!({"at": time(h.at_ms), "kind": h.kind, "what": h.what, "eventId": h.event_id}))
        .collect();
    let deadlines: Vec<serde_json::Value> =
        s.deadlines.iter().map(|d| json!({"name": d.name, "due": time(d.due_ms), "leasedTo": d.leased_to})).collect();
    let state: serde_json::Value = serde_json::from_str(&s.state).unwrap_or(serde_json::Value::Null);
    if as_json {
        let view = json!({"saga": s.saga, "id": s.id, "state": s.status, "step": s.step, "remainingSteps": remaining,
            "data": state, "history": history, "deadlines": deadlines, "started": time(s.started_ms),
            "ended": s.ended_ms.map(time)});
        println!("{view}");
        return;
    }
    println!("saga {} instance {}: {} at step {}", s.saga, s.id, s.status, s.step.as_deref().unwrap_or("-"));
    println!("remaining steps: {}", if remaining.is_empty() { "none".to_string() } else { remaining.join(", ") });
    println!("state: {state}");
    let rows: Vec<Vec<String>> = s
        .history
        .iter()
        .map(|h| vec![time(h.at_ms), h.kind.clone(), h.what.clone(), h.event_id.clone().unwrap_or_default()])
        .collect();
    print_table(&["at", "kind", "what", "event id"], &rows);
    let rows: Vec<Vec<String>> = s
        .deadlines
        .iter()
        .map(|d| vec![d.name.clone(), time(d.due_ms), d.leased_to.clone().unwrap_or_default()])
        .collect();
    if !rows.is_empty() {
        print_table(&["deadline", "due", "leased to"], &rows);
    }
}
