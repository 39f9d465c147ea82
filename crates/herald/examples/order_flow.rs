//! The seeds' order flow as choreography: no service calls another, each reacts to events.
//!
//! - order service: writes the order row and `order.placed` in one SQLite transaction
//!   (transactional outbox, relay embedded); on `payment.failed` it cancels the order and
//!   writes `order.cancelled` the same way; on `inventory.reserved` it confirms the order;
//! - payment service: `order.placed` -> `payment.completed`, or `payment.failed` when the
//!   card is declined (here: amounts over 500.00);
//! - inventory service: `payment.completed` -> `inventory.reserved`;
//! - notification service: tells the customer on `inventory.reserved` and `order.cancelled`.
//!
//! Run `herald serve` (or point KAFKA_BROKERS at any Kafka cluster), then:
//!
//! ```sh
//! cargo run -p herald --example order_flow
//! ```
//!
//! It places three orders (the third is declined), waits until every order reached its end
//! state, prints each step and the final table, and exits 0 (1 after 60 s without).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::consumer::{Consumer, ConsumerConfig, Context};
use herald::outbox::{Relay, RelayConfig, SqliteOutbox, sqlite_options};
use herald::{Envelope, PublisherConfig};
use serde::{Deserialize, Serialize};

mod common;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    amount_cents: u64,
}
herald::event!(OrderPlaced, type = "order.placed", version = 1, key = order_id);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentCompleted {
    order_id: String,
}
herald::event!(PaymentCompleted, type = "payment.completed", version = 1, key = order_id);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PaymentFailed {
    order_id: String,
    reason: String,
}
herald::event!(PaymentFailed, type = "payment.failed", version = 1, key = order_id);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct InventoryReserved {
    order_id: String,
}
herald::event!(InventoryReserved, type = "inventory.reserved", version = 1, key = order_id);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderCancelled {
    order_id: String,
    reason: String,
}
herald::event!(OrderCancelled, type = "order.cancelled", version = 1, key = order_id);

/// Events of earlier runs on a long-lived broker are not this run's business.
fn ours(order_id: &str, run: &str) -> bool {
    order_id.ends_with(run)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    common::ensure_topics(
        &brokers,
        &["order.placed", "payment.completed", "payment.failed", "inventory.reserved", "order.cancelled"],
    )
    .await?;
    let run: String = uuid::Uuid::now_v7().simple().to_string()[26..].to_string();
    let dir = tempfile::tempdir()?;
    let pool = sqlx::SqlitePool::connect_with(sqlite_options(dir.path().join("orders.db"))).await?;
    sqlx::query("CREATE TABLE orders (id TEXT PRIMARY KEY, amount_cents INTEGER NOT NULL, status TEXT NOT NULL)")
        .execute(&pool)
        .await?;
    let outbox = SqliteOutbox::new(pool.clone()).await?.source("order-service");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut tasks = Vec::new();

    // The order service's relay: committed events to the broker.
    let relay = Relay::new(
        outbox.clone(),
        PublisherConfig::default().brokers(&brokers).client_id("order-service"),
        RelayConfig::default(),
    );
    let relay_stop = until_stopped();
    tasks.push(tokio::spawn(async move { relay.run(relay_stop).await.map_err(anyhow::Error::from) }));

    // The order service reacting to payments and inventory.
    let (p, o, r) = (pool.clone(), outbox.clone(), run.clone());
    let (p2, r2) = (pool.clone(), run.clone());
    let orders =
        Consumer::new(ConsumerConfig::new(&brokers, "order-service", &["payment.failed", "inventory.reserved"]))
            .on(move |event: Envelope<PaymentFailed>, ctx: Context| {
                let (pool, outbox, run) = (p.clone(), o.clone(), r.clone());
                async move {
                    let order_id = event.data.order_id;
                    if !ours(&order_id, &run) {
                        return Ok(());
                    }
                    let mut tx = pool.begin().await?;
                    sqlx::query("UPDATE orders SET status = 'cancelled' WHERE id = ? AND status = 'placed'")
                        .bind(&order_id)
                        .execute(&mut *tx)
                        .await?;
                    let cancelled = OrderCancelled { order_id: order_id.clone(), reason: event.data.reason };
                    outbox.enqueue_envelope(&mut tx, &ctx.follow_up(cancelled)).await?;
                    tx.commit().await?;
                    println!("order-service: order {order_id} cancelled, order.cancelled written with the update");
                    Ok(())
                }
            })
            .on(move |event: Envelope<InventoryReserved>, _ctx| {
                let (pool, run) = (p2.clone(), r2.clone());
                async move {
                    if !ours(&event.data.order_id, &run) {
                        return Ok(());
                    }
                    sqlx::query("UPDATE orders SET status = 'confirmed' WHERE id = ? AND status = 'placed'")
                        .bind(&event.data.order_id)
                        .execute(&pool)
                        .await?;
                    println!("order-service: order {} confirmed", event.data.order_id);
                    Ok(())
                }
            });
    tasks.push(tokio::spawn({
        let s = until_stopped();
        async move { orders.run(s).await.map_err(anyhow::Error::from) }
    }));

    // The payment service.
    let r = run.clone();
    let payments = Consumer::new(ConsumerConfig::new(&brokers, "payment-service", &["order.placed"])).on(
        move |event: Envelope<OrderPlaced>, ctx: Context| {
            let run = r.clone();
            async move {
                let order = event.data;
                if !ours(&order.order_id, &run) {
                    return Ok(());
                }
                if order.amount_cents > 50_000 {
                    println!("payment-service: card declined for {} ({} cents)", order.order_id, order.amount_cents);
                    let failed = PaymentFailed { order_id: order.order_id, reason: "card declined".into() };
                    ctx.publish(failed).await?;
                } else {
                    println!("payment-service: charged {} cents for {}", order.amount_cents, order.order_id);
                    ctx.publish(PaymentCompleted { order_id: order.order_id }).await?;
                }
                Ok(())
            }
        },
    );
    tasks.push(tokio::spawn({
        let s = until_stopped();
        async move { payments.run(s).await.map_err(anyhow::Error::from) }
    }));

    // The inventory service.
    let r = run.clone();
    let inventory = Consumer::new(ConsumerConfig::new(&brokers, "inventory-service", &["payment.completed"])).on(
        move |event: Envelope<PaymentCompleted>, ctx: Context| {
            let run = r.clone();
            async move {
                if !ours(&event.data.order_id, &run) {
                    return Ok(());
                }
                println!("inventory-service: stock reserved for {}", event.data.order_id);
                ctx.publish(InventoryReserved { order_id: event.data.order_id }).await?;
                Ok(())
            }
        },
    );
    tasks.push(tokio::spawn({
        let s = until_stopped();
        async move { inventory.run(s).await.map_err(anyhow::Error::from) }
    }));

    // The notification service.
    let told: Arc<Mutex<Vec<String>>> = Arc::default();
    let (t, r) = (Arc::clone(&told), run.clone());
    let (t2, r2) = (Arc::clone(&told), run.clone());
    let notifications = Consumer::new(ConsumerConfig::new(
        &brokers,
        "notification-service",
        &["inventory.reserved", "order.cancelled"],
    ))
    .on(move |event: Envelope<InventoryReserved>, _ctx| {
        if ours(&event.data.order_id, &r) {
            println!("notification-service: told the customer order {} is confirmed", event.data.order_id);
            t.lock().expect("told").push(event.data.order_id);
        }
        async { Ok(()) }
    })
    .on(move |event: Envelope<OrderCancelled>, _ctx| {
        if ours(&event.data.order_id, &r2) {
            println!(
                "notification-service: told the customer order {} is cancelled ({})",
                event.data.order_id, event.data.reason
            );
            t2.lock().expect("told").push(event.data.order_id);
        }
        async { Ok(()) }
    });
    tasks.push(tokio::spawn({
        let s = until_stopped();
        async move { notifications.run(s).await.map_err(anyhow::Error::from) }
    }));

    // Customers place three orders; each row and its event commit together.
    let placed = [("o-1", 2_500u64), ("o-2", 4_999), ("o-3", 120_000)];
    for (id, amount) in placed {
        let order_id = format!("{id}-{run}");
        let mut tx = pool.begin().await?;
        sqlx::query("INSERT INTO orders (id, amount_cents, status) VALUES (?, ?, 'placed')")
            .bind(&order_id)
            .bind(amount as i64)
            .execute(&mut *tx)
            .await?;
        outbox.enqueue(&mut tx, OrderPlaced { order_id: order_id.clone(), amount_cents: amount }).await?;
        tx.commit().await?;
        println!("order-service: order {order_id} placed ({amount} cents), order.placed in the outbox");
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let settled = || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'placed'")
            .fetch_one(&pool)
            .await
            .unwrap_or(i64::MAX);
        open == 0 && told.lock().expect("told").len() == placed.len()
    };
    while !settled().await && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    for task in tasks {
        task.await??;
    }
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT id, amount_cents, status FROM orders ORDER BY id").fetch_all(&pool).await?;
    println!("order-flow: final orders");
    for (id, amount, status) in &rows {
        println!("  {id}  {amount:>7} cents  {status}");
    }
    if rows.iter().any(|(_, _, status)| status == "placed") || told.lock().expect("told").len() != placed.len() {
        anyhow::bail!("the flow did not settle within 60 s");
    }
    Ok(())
}
