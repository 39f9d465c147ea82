//! `herald store streams | read | stats --database-url ...`: look into a service's event
//! store (PostgreSQL or SQLite) through `herald::store`, as tables or `--json`.

use anyhow::{Context, bail};
use herald::store::{Direction, EventStore, PostgresEventStore, SqliteEventStore, StoredEvent};
use serde_json::json;

use crate::cluster::print_table;
use crate::database::Pool;

/// `herald store ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreArgs {
    /// The service's database: `postgres://user:password@host/db` or `sqlite://path`.
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Print JSON lines instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Streams, with their last version.
    Streams {
        /// Only streams whose id starts with this (`order-`).
        #[arg(long, default_value = "")]
        prefix: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// A stream's events.
    Read {
        /// The stream id (`order-42`).
        stream: String,
        /// From this version (forward: up from it; backward: down from it).
        #[arg(long)]
        from: Option<u64>,
        /// Newest first.
        #[arg(long)]
        backward: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Counts: streams, events, events per type, first and last append.
    Stats,
}

/// One of the two backends.
enum Store {
    Postgres(PostgresEventStore),
    Sqlite(SqliteEventStore),
}

/// Runs `$body` with `$store` bound to whichever backend `$db` is.
macro_rules! with_store {
    ($db:expr, |$store:ident| $body:expr) => {
        match $db {
            Store::Postgres($store) => $body,
            Store::Sqlite($store) => $body,
        }
    };
}

pub(crate) fn run(args: StoreArgs) -> anyhow::Result<()> {
    let Some(url) = args.database_url.clone() else { bail!("--database-url (or DATABASE_URL) is required") };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let store = open(&url).await?;
        match args.command {
            StoreCommand::Streams { prefix, limit } => {
                let streams = with_store!(&store, |s| s.streams(&prefix, "", limit).await)?;
                let rows: Vec<Vec<String>> = streams
                    .iter()
                    .map(|s| {
                        let events = s.version.map_or(0, |v| v + 1).to_string();
                        let state = ["live", "soft-deleted", "hard-deleted"].get(usize::from(s.deleted)).copied();
                        vec![s.stream_id.clone(), events, state.unwrap_or("?").to_string()]
                    })
                    .collect();
                print(args.json, &["stream", "events", "state"], &rows);
            }
            StoreCommand::Read { stream, from, backward, limit } => {
                let (direction, start) = match (backward, from) {
                    (false, from) => (Direction::Forward, from.unwrap_or(0)),
                    (true, from) => (Direction::Backward, from.unwrap_or(u64::MAX >> 1)),
                };
                let events = with_store!(&store, |s| s.read_stream(&stream, start, direction, limit).await)?;
                if args.json {
                    for event in &events {
                        println!("{}", event_json(event));
                    }
                } else {
                    let rows: Vec<Vec<String>> = events.iter().map(event_row).collect();
                    print_table(&["version", "type", "event id", "appended", "data"], &rows);
                }
            }
            StoreCommand::Stats => {
                let stats = with_store!(&store, |s| s.stats().await)?;
                let time = |ms: Option<i64>| ms.map(herald::time::rfc3339_from_millis).unwrap_or_default();
                let mut rows = vec![
                    vec!["streams".to_string(), stats.streams.to_string()],
                    vec!["events".to_string(), stats.events.to_string()],
                    vec!["first append".to_string(), time(stats.first_ms)],
                    vec!["last append".to_string(), time(stats.last_ms)],
                ];
                rows.extend(stats.by_type.iter().map(|(t, n)| vec![format!("events of {t}"), n.to_string()]));
                print(args.json, &["what", "value"], &rows);
            }
        }
        Ok(())
    })
}

async fn open(url: &str) -> anyhow::Result<Store> {
    Ok(match crate::database::connect(url).await? {
        Pool::Postgres(pool) => {
            Store::Postgres(PostgresEventStore::new(pool).await.context("preparing the event store tables")?)
        }
        Pool::Sqlite(pool) => {
            Store::Sqlite(SqliteEventStore::new(pool).await.context("preparing the event store tables")?)
        }
    })
}

/// The envelope's `data`, or the raw payload if it is not an envelope.
fn data(event: &StoredEvent) -> String {
    serde_json::from_slice::<serde_json::Value>(&event.payload)
        .ok()
        .and_then(|envelope| envelope.get("data").map(ToString::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&event.payload).into_owned())
}

fn event_row(event: &StoredEvent) -> Vec<String> {
    vec![
        event.stream_version.to_string(),
        format!("{} v{}", event.event_type, event.event_version),
        event.event_id.to_string(),
        herald::time::rfc3339_from_millis(event.created_ms),
        data(event),
    ]
}

fn event_json(event: &StoredEvent) -> serde_json::Value {
    let envelope: serde_json::Value = serde_json::from_slice(&event.payload).unwrap_or(serde_json::Value::Null);
    json!({
        "stream": event.stream_id,
        "version": event.stream_version,
        "eventType": event.event_type,
        "eventVersion": event.event_version,
        "eventId": event.event_id,
        "appendedMs": event.created_ms,
        "envelope": envelope,
    })
}

/// A table, or one JSON object per row keyed by the header.
fn print(as_json: bool, header: &[&str], rows: &[Vec<String>]) {
    if !as_json {
        print_table(header, rows);
        return;
    }
    for row in rows {
        let object: serde_json::Map<String, serde_json::Value> =
            header.iter().zip(row).map(|(h, v)| (h.to_string(), json!(v))).collect();
        println!("{}", serde_json::Value::Object(object));
    }
}
