//! The seeds' CQRS read side: an `order_summary` read model (orders and totals by customer
//! and status) folded from the order events in a SQLite event store, then queried.
//!
//! Commands go to the order aggregate (`examples/order`); a [`ProjectionRunner`] folds the
//! events it appended into `order_summary` (a view over the live version's table) with its
//! checkpoint in the same transaction, until it has caught up; the example then queries
//! the view and checks it against the orders' own states.
//!
//! `cargo run -p herald --example order_summary` (no broker needed).

#[path = "../order/aggregate.rs"]
mod aggregate;
mod summary;

use std::collections::BTreeMap;

use aggregate::{Order, OrderCommand};
use herald::outbox::sqlite_options;
use herald::projection::{ProjectionRunner, RunnerConfig, SqliteProjections};
use herald::store::{Repository, RepositoryError, SqliteEventStore};
use summary::OrderSummary;

const CUSTOMERS: [&str; 3] = ["ada", "bob", "cy"];

/// Twelve orders: every fourth is cancelled, the rest paid, and every other one shipped.
fn script(id: impl Fn(u32) -> String) -> Vec<(String, OrderCommand)> {
    let mut commands = Vec::new();
    for n in 0..12u32 {
        let (order_id, total_cents) = (id(n), 1_000 + 250 * u64::from(n));
        let customer = CUSTOMERS[n as usize % 3].to_string();
        commands.push((order_id.clone(), OrderCommand::Place { order_id: order_id.clone(), customer, total_cents }));
        if n % 4 == 3 {
            commands.push((order_id, OrderCommand::Cancel { reason: "changed their mind".into() }));
            continue;
        }
        commands.push((order_id.clone(), OrderCommand::Pay { amount_cents: total_cents }));
        if n % 2 == 0 {
            commands.push((order_id, OrderCommand::Ship));
        }
    }
    commands
}

/// (customer, status) -> (orders, total cents).
type Summary = BTreeMap<(String, String), (i64, i64)>;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Ok(filter) = std::env::var("HERALD_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let dir = tempfile::tempdir()?;
    let pool = sqlx::SqlitePool::connect_with(sqlite_options(dir.path().join("orders.db"))).await?;
    let store = SqliteEventStore::new(pool.clone()).await?;
    let orders: Repository<_, Order> = Repository::new(store.clone()).source("order-service");
    let run = uuid::Uuid::now_v7().simple().to_string()[..8].to_string();
    let id = |n: u32| format!("{n}x{run}");

    let mut events = 0;
    for (order_id, command) in script(id) {
        match orders.execute(&order_id, &command).await {
            Ok(done) => events += done.events.len(),
            Err(RepositoryError::Rejected(reason)) => anyhow::bail!("{order_id}: {command:?} refused: {reason}"),
            Err(other) => return Err(other.into()),
        }
    }
    println!("12 orders, {events} events appended");

    // The read side: fold the events into order_summary, then query it.
    let projections = SqliteProjections::new(pool.clone()).await?;
    let runner = ProjectionRunner::new(store.clone(), projections, OrderSummary, RunnerConfig::default());
    let state = runner.catch_up().await?;
    anyhow::ensure!(state.parked.is_none(), "the projection parked: {:?}", state.parked);
    println!("order_summary v1 caught up (live version: {:?})", state.live_version);

    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT customer, status, orders, total_cents FROM order_summary WHERE orders > 0 ORDER BY customer, status",
    )
    .fetch_all(&pool)
    .await?;
    println!("{:<9}{:<11}{:>7}{:>13}", "customer", "status", "orders", "total cents");
    for (customer, status, count, total) in &rows {
        println!("{customer:<9}{status:<11}{count:>7}{total:>13}");
    }

    // The orders' own states, loaded from their streams, must say the same.
    let mut expected = Summary::new();
    for n in 0..12 {
        let order = orders.load(&id(n)).await?.state;
        let entry = expected.entry((order.customer, summary::status(order.status).to_string())).or_default();
        *entry = (entry.0 + 1, entry.1 + order.total_cents as i64);
    }
    let seen: Summary = rows.into_iter().map(|(c, s, n, t)| ((c, s), (n, t))).collect();
    anyhow::ensure!(seen == expected, "the read model {seen:?} differs from the orders {expected:?}");
    println!("order_summary agrees with the {} orders' own states", expected.values().map(|v| v.0).sum::<i64>());
    Ok(())
}
