//! Shared by the projection tests: appending numbered order events, waiting for a
//! condition, and a store with its projections database on each backend.

#![allow(dead_code, unreachable_pub)] // each test file uses part of it

use std::time::Duration;

use herald::projection::{PostgresProjections, SqliteProjections};
use herald::store::{EventStore, ExpectedVersion, NewEvent, PostgresEventStore, SqliteEventStore};

use crate::outbox_common;
use crate::store_common::OrderPlaced;

/// Appends events `from..from + count`, round-robin over five streams (`n` in the data).
pub async fn append<S: EventStore>(store: &S, from: u64, count: u64) {
    for n in from..from + count {
        let stream = format!("order-{}", n % 5);
        let event =
            NewEvent::new(&herald::Envelope::new("shop", OrderPlaced { order_id: stream.clone(), n })).expect("encode");
        store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
    }
}

/// Waits up to 30 s for `done`.
pub async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A SQLite file (`service.db` in the returned dir) with `tables` created, its event store
/// and its projections.
pub async fn sqlite(tables: &[&str]) -> (tempfile::TempDir, SqliteEventStore, SqliteProjections) {
    let dir = tempfile::tempdir().expect("dir");
    let pool = outbox_common::sqlite_pool(dir.path()).await;
    for table in tables {
        sqlx::query(sqlx::AssertSqlSafe(*table)).execute(&pool).await.expect("table");
    }
    let store = SqliteEventStore::new(pool.clone()).await.expect("store");
    (dir, store, SqliteProjections::new(pool).await.expect("projections"))
}

/// The same on a fresh PostgreSQL schema, or None when no database is configured.
pub async fn postgres(test: &str, tables: &[&str]) -> Option<(PostgresEventStore, PostgresProjections)> {
    let pool = outbox_common::postgres_pool(test, 8).await?;
    for table in tables {
        sqlx::query(sqlx::AssertSqlSafe(*table)).execute(&pool).await.expect("table");
    }
    let store = PostgresEventStore::new(pool.clone()).await.expect("store");
    Some((store, PostgresProjections::new(pool).await.expect("projections")))
}
