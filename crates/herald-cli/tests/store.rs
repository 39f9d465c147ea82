//! `herald store` against a real SQLite event store written by the library.

use std::process::Command;

use herald::store::{EventStore, ExpectedVersion, NewEvent, SqliteEventStore};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    total_cents: u64,
}
herald::event!(OrderPlaced, type = "order.placed", version = 1, key = order_id);

fn herald(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_herald")).args(args).output().expect("herald runs")
}

fn ok(output: &std::process::Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_events_and_stats_as_tables_and_json() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("service.db");
    let pool = sqlx::SqlitePool::connect_with(herald::outbox::sqlite_options(&path)).await.expect("pool");
    let store = SqliteEventStore::new(pool.clone()).await.expect("store");
    for (stream, totals) in [("order-1", vec![100, 200]), ("order-2", vec![300]), ("user-9", vec![1])] {
        let events = totals
            .iter()
            .map(|t| {
                NewEvent::new(&herald::Envelope::new("shop", OrderPlaced { order_id: stream.into(), total_cents: *t }))
            })
            .collect::<Result<Vec<_>, _>>()
            .expect("events");
        store.append(stream, ExpectedVersion::NoStream, events).await.expect("append");
    }
    pool.close().await;
    let url = format!("sqlite://{}", path.display());

    let streams = ok(&herald(&["store", "streams", "--prefix", "order-", "--database-url", &url]));
    assert!(streams.contains("order-1") && streams.contains("order-2") && !streams.contains("user-9"), "{streams}");
    let read = ok(&herald(&["store", "read", "order-1", "--database-url", &url, "--json"]));
    let lines: Vec<serde_json::Value> = read.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["version"], 1);
    assert_eq!(lines[1]["envelope"]["data"]["total_cents"], 200);
    let backward = ok(&herald(&["store", "read", "order-1", "--backward", "--limit", "1", "--database-url", &url]));
    assert!(backward.contains("200") && !backward.contains("\"total_cents\":100"), "{backward}");
    let stats = ok(&herald(&["store", "stats", "--database-url", &url, "--json"]));
    assert!(stats.contains(r#""value":"3""#) && stats.contains(r#""value":"4""#), "3 streams, 4 events: {stats}");
    assert!(stats.contains("events of order.placed"), "{stats}");

    let bad = herald(&["store", "stats", "--database-url", "mysql://nope"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("expected postgres://... or sqlite://..."), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_are_listed_and_a_parked_one_takes_commands() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("read.db");
    let pool = sqlx::SqlitePool::connect_with(herald::outbox::sqlite_options(&path)).await.expect("pool");
    herald::projection::SqliteProjections::new(pool.clone()).await.expect("projection tables");
    sqlx::query(
        "INSERT INTO herald_projection_checkpoints (name, version, txid, id, parked_txid, parked_id, parked_event_id, \
         parked_error) VALUES ('order_summary', 2, 0, 41, 0, 42, 'e-42', 'no such customer')",
    )
    .execute(&pool)
    .await
    .expect("a parked projection");
    let url = format!("sqlite://{}", path.display());
    let list = ok(&herald(&["projections", "list", "--database-url", &url]));
    assert!(list.contains("order_summary") && list.contains("parked at event e-42"), "{list}");
    let status =
        ok(&herald(&["projections", "status", "order_summary", "--version", "2", "--database-url", &url, "--json"]));
    assert!(status.contains("no such customer"), "{status}");
    ok(&herald(&["projections", "skip", "order_summary", "--version", "2", "--database-url", &url]));
    let (command,): (Option<String>,) =
        sqlx::query_as("SELECT command FROM herald_projection_checkpoints WHERE name = 'order_summary'")
            .fetch_one(&pool)
            .await
            .expect("command");
    assert_eq!(command.as_deref(), Some("skip"), "left for the runner");
    let rebuild = ok(&herald(&["projections", "rebuild", "order_summary", "--database-url", &url]));
    assert!(rebuild.starts_with("order_summary v2: 0 of 0 events (100.0 %)"), "{rebuild}");
    let reset = herald(&["projections", "reset", "order_summary", "--version", "2", "--database-url", &url]);
    let stderr = String::from_utf8_lossy(&reset.stderr);
    assert!(!reset.status.success() && stderr.contains("declares no tables"), "refused: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_are_listed_and_one_shows_its_history_deadlines_and_remaining_steps() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("sagas.db");
    let pool = sqlx::SqlitePool::connect_with(herald::outbox::sqlite_options(&path)).await.expect("pool");
    herald::saga::SqliteSagas::new(pool.clone()).await.expect("saga tables");
    for statement in [
        "INSERT INTO herald_sagas (saga, id, version, status, step, state, started_ms, updated_ms) \
         VALUES ('order', 'o1', 2, 'running', 'process-payment', '{\"amountCents\":100}', 1000, 2000)",
        "INSERT INTO herald_sagas (saga, id, version, status, step, state, started_ms, updated_ms, ended_ms) \
         VALUES ('order', 'o2', 3, 'compensated', 'process-payment', '{}', 500, 900, 900)",
        "INSERT INTO herald_saga_history VALUES ('order', 'o1', 1, 0, 1000, 'in', 'order.placed', 'e-1')",
        "INSERT INTO herald_saga_history VALUES ('order', 'o1', 1, 1, 1000, 'out', 'inventory.reserve', 'e-2')",
        "INSERT INTO herald_saga_deadlines (saga, id, name, due_ms, set_version) VALUES ('order', 'o1', 'payment', 3500, 2)",
        "INSERT INTO herald_saga_definitions VALUES ('order', 'reserve-inventory,process-payment,ship')",
    ] {
        sqlx::query(statement).execute(&pool).await.expect(statement);
    }
    let url = format!("sqlite://{}", path.display());
    let list = ok(&herald(&["sagas", "list", "--database-url", &url]));
    assert!(list.contains("o1") && list.contains("o2") && list.contains("compensated"), "{list}");
    let running = ok(&herald(&["sagas", "list", "--state", "running", "--database-url", &url, "--json"]));
    assert_eq!(running.lines().count(), 1, "{running}");
    let shown = ok(&herald(&["sagas", "show", "o1", "--database-url", &url]));
    assert!(shown.contains("running at step process-payment"), "{shown}");
    assert!(shown.contains("remaining steps: ship"), "{shown}");
    assert!(shown.contains("inventory.reserve") && shown.contains("payment"), "{shown}");
    let missing = herald(&["sagas", "show", "o9", "--database-url", &url]);
    assert!(!missing.status.success(), "an unknown instance is an error");
}
