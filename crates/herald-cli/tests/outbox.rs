//! `herald outbox relay` as a user runs it: the real binary against a SQLite file and an
//! in-process broker, killed with SIGKILL at random points while a service keeps writing;
//! every committed event arrives, in order per key. And a bad URL is one clear line.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald::Envelope;
use herald::outbox::{SqliteOutbox, sqlite_options};
use herald::testkit::TestBroker;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    seq: u32,
}
herald::event!(OrderPlaced, type = "order.placed", version = 1, key = order_id);

/// A relay process, killed when dropped.
struct RelayProcess(Child);

impl RelayProcess {
    fn start(database: &std::path::Path, bootstrap: &str) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["outbox", "relay", "--lease-ttl-ms", "500", "--poll-interval-ms", "20", "--log", "warn"])
            .arg("--database-url")
            .arg(format!("sqlite://{}", database.display()))
            .args(["--brokers", bootstrap])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("herald outbox relay starts");
        Self(child)
    }

    fn sigkill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    fn sigterm(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
        self.0.wait().expect("the relay exits")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_process_survives_sigkill_and_delivers_everything_in_key_order() {
    let dir = tempfile::tempdir().expect("dir");
    let database = dir.path().join("orders.db");
    let broker = TestBroker::start().await;
    let pool = sqlx::SqlitePool::connect_with(sqlite_options(&database)).await.expect("sqlite");
    let outbox = SqliteOutbox::new(pool.clone()).await.expect("outbox").source("order-service");
    let writer = {
        let (pool, outbox) = (pool.clone(), outbox.clone());
        tokio::spawn(async move {
            let mut committed = HashSet::new();
            for seq in 0..600u32 {
                let mut tx = pool.begin().await.expect("begin");
                let event = OrderPlaced { order_id: format!("order-{}", seq % 7), seq };
                committed.insert(outbox.enqueue(&mut tx, event).await.expect("enqueue"));
                tx.commit().await.expect("commit");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            committed
        })
    };
    for _ in 0..10 {
        let relay = RelayProcess::start(&database, &broker.bootstrap());
        let random = u64::from(Uuid::now_v7().as_bytes()[15]);
        tokio::time::sleep(Duration::from_millis(100 + random * 3)).await;
        relay.sigkill();
    }
    let committed = writer.await.expect("writer");
    let relay = RelayProcess::start(&database, &broker.bootstrap());
    let arrived = read_back(&broker.bootstrap(), "order.placed", &committed).await;
    let status = relay.sigterm();
    assert!(status.success(), "a clean stop on SIGTERM: {status:?}");

    let mut first_seen = HashSet::new();
    let mut last_seq: HashMap<String, u32> = HashMap::new();
    for (id, event) in &arrived {
        assert!(committed.contains(id), "never committed: {event:?}");
        if first_seen.insert(*id)
            && let Some(previous) = last_seq.insert(event.order_id.clone(), event.seq)
        {
            assert!(previous < event.seq, "{} out of order: {} after {previous}", event.order_id, event.seq);
        }
    }
    assert_eq!(first_seen.len(), committed.len());
    println!(
        "10 SIGKILLs: {} committed, {} arrived with {} repeats",
        committed.len(),
        first_seen.len(),
        arrived.len() - first_seen.len()
    );
}

/// Every event of `topic` in (partition, offset) order, once all of `want` arrived.
async fn read_back(bootstrap: &str, topic: &str, want: &HashSet<Uuid>) -> Vec<(Uuid, OrderPlaced)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "check")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut arrived = Vec::new();
    let mut ids = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !want.is_subset(&ids) {
        assert!(Instant::now() < deadline, "{} of {} arrived", want.intersection(&ids).count(), want.len());
        let Ok(received) = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await else { continue };
        let message = received.expect("message");
        let envelope: Envelope<OrderPlaced> =
            Envelope::from_json(message.payload().expect("payload"), 1 << 20).expect("envelope");
        ids.insert(envelope.event_id);
        arrived.push(((message.partition(), message.offset()), envelope.event_id, envelope.data));
    }
    tokio::task::spawn_blocking(move || drop(consumer)).await.expect("close");
    arrived.sort_by_key(|(at, _, _)| *at);
    arrived.into_iter().map(|(_, id, data)| (id, data)).collect()
}

#[test]
fn an_unsupported_database_url_is_one_clear_line() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["outbox", "relay", "--database-url", "mysql://root:hunter2@db/app"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "herald: --database-url mysql://root:***@db/app: expected postgres://... or sqlite://...",
        "one line, password hidden"
    );
}
