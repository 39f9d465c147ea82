//! The seeds' order saga, orchestrated by `herald::saga` against Herald, Kafka or
//! Redpanda (`KAFKA_BROKERS`, default 127.0.0.1:9092): six orders go through inventory,
//! payment and shipping services; one payment is declined and one never answers, and
//! both are compensated (inventory released, order cancelled). Prints each saga's path.
//!
//! `cargo run -p herald --example order_saga` (with `herald serve` running).

#[path = "../common/mod.rs"]
mod common;
mod saga;
mod services;

use std::time::Duration;

use herald::consumer::ConsumerConfig;
use herald::outbox::{Relay, RelayConfig, SqliteOutbox, sqlite_options};
use herald::saga::{SagaConfig, SagaControl, SagaRunner, SqliteSagas};
use herald::{Envelope, Publisher, PublisherConfig};
use saga::*;
use services::services;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if let Ok(filter) = std::env::var("HERALD_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let topics: Vec<&str> = REPLIES.iter().chain(&COMMANDS).copied().collect();
    common::ensure_topics(&brokers, &topics).await?;
    let run = format!("-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    let dir = tempfile::tempdir()?;
    let pool = sqlx::SqlitePool::connect_with(sqlite_options(dir.path().join("sagas.db"))).await?;
    let sagas = SqliteSagas::new(pool.clone()).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut tasks = Vec::new();

    // The saga's relay: the commands its decisions committed, to the broker.
    let outbox = SqliteOutbox::new(pool.clone()).await?;
    let publisher =
        PublisherConfig::default().brokers(&brokers).client_id("order-saga").linger(Duration::from_millis(1));
    let relay = Relay::new(outbox, publisher, RelayConfig::default());
    tasks.push(tokio::spawn(as_anyhow(relay.run(until_stopped()))));

    // The saga itself.
    let runner = SagaRunner::new(sagas.clone(), OrderSaga { suffix: run.clone() }, SagaConfig::default());
    let consumer = ConsumerConfig::new(&brokers, "order-saga", &REPLIES);
    tasks.push(tokio::spawn(as_anyhow(runner.run(consumer, until_stopped()))));

    // The services it orchestrates, each replying through the broker.
    for service in services(&brokers, &run, None) {
        tasks.push(tokio::spawn(as_anyhow(service.run(until_stopped()))));
    }

    let orders = place_orders(&brokers, &run).await?;
    let control = SagaControl::new(sagas);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let ended = control.list("order", "", 100).await?.iter().filter(|s| s.ended_ms.is_some()).count();
        if ended == orders.len() {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "{ended} of {} sagas ended in 60 s", orders.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for order_id in &orders {
        let saga = control.show("order", order_id).await?.ok_or_else(|| anyhow::anyhow!("no saga {order_id}"))?;
        let path: Vec<String> = saga
            .history
            .iter()
            .filter(|h| h.kind != "note")
            .map(|h| match h.kind.as_str() {
                "in" => format!("<{}", h.what),
                "out" => format!(">{}", h.what),
                "undo" => format!("undo>{}", h.what),
                other => format!("{other}:{}", h.what),
            })
            .collect();
        println!("saga {order_id}: {} via {}", saga.status, path.join(" "));
    }
    let _ = stop.send(true);
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// Six orders: the fourth is over the payment limit, the fifth's payment never answers.
async fn place_orders(brokers: &str, run: &str) -> anyhow::Result<Vec<String>> {
    let publisher = Publisher::new(PublisherConfig::default().brokers(brokers).client_id("order-service"))?;
    let mut orders = Vec::new();
    for n in 1..=6u64 {
        let order_id = format!("o{n}{}{run}", if n == 5 { "-slow" } else { "" });
        let amount_cents = if n == 4 { 90_000 } else { 1_000 * n };
        let placed = OrderPlaced { order_id: order_id.clone(), customer: format!("c{n}"), amount_cents };
        publisher.publish_envelope(&Envelope::new("order-service", placed).with_correlation_id(&order_id)).await?;
        orders.push(order_id);
    }
    Ok(orders)
}

/// A task's result as `anyhow`.
async fn as_anyhow<E: Into<anyhow::Error>>(
    run: impl std::future::Future<Output = Result<(), E>>,
) -> anyhow::Result<()> {
    run.await.map_err(Into::into)
}
