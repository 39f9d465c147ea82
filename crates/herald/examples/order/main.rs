//! The seeds' order, event-sourced: each order is a stream (`order-<id>`) in a SQLite event
//! store, commands are checked against the state folded from its events, and the relay
//! publishes the appended events to the `order.events` topic on Herald, Kafka or Redpanda
//! (`KAFKA_BROKERS`, default 127.0.0.1:9092).
//!
//! `cargo run -p herald --example order` (with `herald serve` running).

mod aggregate;

use std::collections::HashSet;
use std::time::Duration;

use aggregate::{Order, OrderCommand};
use herald::outbox::{Relay, RelayConfig, sqlite_options};
use herald::store::{Repository, RepositoryError, SqliteEventStore};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Ok(filter) = std::env::var("HERALD_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let dir = tempfile::tempdir()?;
    let pool = sqlx::SqlitePool::connect_with(sqlite_options(dir.path().join("orders.db"))).await?;
    let store = SqliteEventStore::new(pool).await?;
    let orders: Repository<_, Order> = Repository::new(store.clone()).source("order-service").snapshot_every(3);
    let run = uuid::Uuid::now_v7().simple().to_string()[..8].to_string();
    let id = |n: u32| format!("{n}x{run}");

    let script = [
        (1, OrderCommand::Place { order_id: id(1), customer: "ada".into(), total_cents: 4_200 }),
        (1, OrderCommand::Pay { amount_cents: 4_200 }),
        (1, OrderCommand::Ship),
        (2, OrderCommand::Place { order_id: id(2), customer: "bob".into(), total_cents: 1_000 }),
        (2, OrderCommand::Pay { amount_cents: 900 }),
        (2, OrderCommand::Cancel { reason: "customer asked".into() }),
        (2, OrderCommand::Ship),
        (3, OrderCommand::Pay { amount_cents: 100 }),
    ];
    let (mut orders_changed, mut events) = (HashSet::new(), 0);
    for (n, command) in &script {
        match orders.execute(&id(*n), command).await {
            Ok(done) => {
                let types: Vec<&str> = done.events.iter().map(herald::store::EventSet::event_type).collect();
                println!("order {}: {command:?} -> {types:?}, now {:?}", id(*n), done.state.status);
                if !done.events.is_empty() {
                    orders_changed.insert(id(*n));
                    events += done.events.len();
                }
            }
            Err(RepositoryError::Rejected(reason)) => println!("order {}: {command:?} refused: {reason}", id(*n)),
            Err(other) => return Err(other.into()),
        }
    }
    let then = orders.load_at_version(&id(1), 1).await?;
    println!("order {} as of version 1: {:?}, paid {} cents", id(1), then.state.status, then.state.paid_cents);

    // Publish what was appended: the events table is the outbox.
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let publisher = herald::PublisherConfig::default()
        .brokers(&brokers)
        .client_id("order-service")
        .linger(Duration::from_millis(1));
    let (acked_tx, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(Relay::new(store, publisher, RelayConfig::default()).observe(acked_tx).run(async {
        let _ = stopped.await;
    }));
    let mut published = 0;
    while published < events {
        let batch = tokio::time::timeout(Duration::from_secs(30), acked.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("relay stopped"))?;
        published += batch.events.len();
    }
    let _ = stop.send(());
    relay.await??;
    println!("published {published} events to order.events for {} orders", orders_changed.len());
    Ok(())
}
