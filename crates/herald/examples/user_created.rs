//! The seeds' first flow: the auth service publishes `user.created`; the notification
//! service and the analytics service (two consumer groups) each handle every event.
//!
//! Run `herald serve` (or point KAFKA_BROKERS at any Kafka cluster), then:
//!
//! ```sh
//! cargo run -p herald --example user_created
//! ```
//!
//! It publishes five users, waits until both services handled all five, prints what each
//! did and a summary line, and exits 0 (1 if they did not finish within 60 s).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::consumer::{Consumer, ConsumerConfig};
use herald::{Envelope, Publisher, PublisherConfig};
use serde::{Deserialize, Serialize};

mod common;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserCreated {
    user_id: String,
    email: String,
    /// Tells this run's events from earlier runs' on a long-lived broker.
    run: String,
}
herald::event!(UserCreated, type = "user.created", version = 1, key = user_id);

type Seen = Arc<Mutex<BTreeSet<String>>>;

/// A consumer group that records the users of this run it handled.
fn service(brokers: &str, group: &'static str, run: &str, seen: &Seen, action: &'static str) -> Consumer {
    let (run, seen) = (run.to_string(), Arc::clone(seen));
    Consumer::new(ConsumerConfig::new(brokers, group, &["user.created"])).on(
        move |event: Envelope<UserCreated>, _ctx| {
            if event.data.run == run && seen.lock().expect("seen").insert(event.data.user_id.clone()) {
                println!("{group}: {action} {} <{}>", event.data.user_id, event.data.email);
            }
            async { Ok(()) }
        },
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    common::ensure_topics(&brokers, &["user.created"]).await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let (notified, counted): (Seen, Seen) = (Arc::default(), Arc::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut services = Vec::new();
    for consumer in [
        service(&brokers, "notification-service", &run, &notified, "welcome email to"),
        service(&brokers, "analytics-service", &run, &counted, "counted signup of"),
    ] {
        let mut stopped = stopped.clone();
        services.push(tokio::spawn(consumer.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }

    let auth = Publisher::new(PublisherConfig::default().brokers(&brokers).client_id("auth-service"))?;
    let users = ["ada", "grace", "edsger", "barbara", "ken"];
    for (n, name) in users.iter().enumerate() {
        let user =
            UserCreated { user_id: format!("u-{}", n + 1), email: format!("{name}@example.com"), run: run.clone() };
        let at = auth.publish(user).await?;
        println!(
            "auth-service: published user.created for u-{} (partition {}, offset {})",
            n + 1,
            at.partition,
            at.offset
        );
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    let done =
        || notified.lock().expect("seen").len() == users.len() && counted.lock().expect("seen").len() == users.len();
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    for service in services {
        service.await??;
    }
    let (n, c) = (notified.lock().expect("seen").len(), counted.lock().expect("seen").len());
    println!(
        "user-created: {} published, notification-service handled {n}, analytics-service handled {c}",
        users.len()
    );
    if n != users.len() || c != users.len() {
        anyhow::bail!("not every event was handled by both services within 60 s");
    }
    Ok(())
}
