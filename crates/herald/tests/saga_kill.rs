//! The order saga's service (its runner and its outbox relay, a child process) SIGKILLed
//! at random points 30 times while 200 orders flow through the broker, on a SQLite file
//! and on PostgreSQL: every saga ends completed or compensated, declined payments are
//! compensated, and each command goes out once per saga (a relay repeat carries the same
//! event id).

mod outbox_common;
#[path = "../examples/order_saga/saga.rs"]
mod saga;
#[path = "../examples/order_saga/services.rs"]
mod services;
#[path = "../examples/common/mod.rs"]
mod topics;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use herald::consumer::ConsumerConfig;
use herald::outbox::{OutboxStore, PostgresOutbox, Relay, RelayConfig, SqliteOutbox, sqlite_options};
use herald::saga::{PostgresSagas, SagaConfig, SagaControl, SagaDb, SagaRunner, SqliteSagas};
use herald::testkit::TestBroker;
use herald::{Envelope, Publisher, PublisherConfig};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use saga::*;

const ORDERS: u64 = 200;
const KILLS: usize = 30;
/// The child's database (`sqlite:<file>` or `postgres:<schema>`), brokers and run.
const CHILD: &str = "HERALD_SAGA_CHILD";
const CHILD_BROKERS: &str = "HERALD_SAGA_CHILD_BROKERS";
const CHILD_RUN: &str = "HERALD_SAGA_CHILD_RUN";

/// Not a test by itself: the saga service the SIGKILL tests start as a child process
/// (this test binary, `--ignored --exact saga_child`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the SIGKILL tests"]
async fn saga_child() {
    let spec = std::env::var(CHILD).expect("started by a SIGKILL test");
    let brokers = std::env::var(CHILD_BROKERS).expect("brokers");
    let run = std::env::var(CHILD_RUN).expect("run");
    if let Some(path) = spec.strip_prefix("sqlite:") {
        let pool = sqlx::SqlitePool::connect_with(sqlite_options(path)).await.expect("sqlite");
        let sagas = SqliteSagas::new(pool.clone()).await.expect("sagas");
        serve(sagas, SqliteOutbox::new(pool).await.expect("outbox"), &brokers, &run).await;
    } else if let Some(schema) = spec.strip_prefix("postgres:") {
        let url = std::env::var("HERALD_TEST_DATABASE_URL").expect("database url");
        let options: sqlx::postgres::PgConnectOptions = url.parse().expect("url");
        let pool = sqlx::PgPool::connect_with(options.options([("search_path", schema)])).await.expect("postgres");
        let sagas = PostgresSagas::new(pool.clone()).await.expect("sagas");
        serve(sagas, PostgresOutbox::new(pool).await.expect("outbox"), &brokers, &run).await;
    }
}

/// The saga's runner and relay, until killed. Static group membership and short leases,
/// so the next child takes over at once instead of waiting out the dead one's session.
async fn serve<D: SagaDb, O: OutboxStore>(sagas: D, outbox: O, brokers: &str, run: &str) {
    let publisher =
        PublisherConfig::default().brokers(brokers).client_id("order-saga").linger(Duration::from_millis(1));
    let relay_config = RelayConfig {
        poll_interval: Duration::from_millis(20),
        lease_ttl: Duration::from_secs(1),
        ..RelayConfig::default()
    };
    let relay = Relay::new(outbox, publisher, relay_config);
    let config = SagaConfig::default()
        .owner("child")
        .deadline_poll(Duration::from_millis(50))
        .deadline_lease(Duration::from_secs(1));
    let runner = SagaRunner::new(sagas, OrderSaga { suffix: run.to_string() }, config);
    let consumer = ConsumerConfig::new(brokers, "order-saga", &REPLIES)
        .commit_interval(Duration::from_millis(100))
        .rdkafka("group.instance.id", "order-saga-child");
    let (relayed, ran) = tokio::join!(relay.run(std::future::pending()), runner.run(consumer, std::future::pending()));
    relayed.expect("relay");
    ran.expect("runner");
}

/// Order `n`: every fourth is over the payment limit, every sixth is slow to pay.
fn order(n: u64, run: &str) -> OrderPlaced {
    let slow = if n % 6 == 5 { "-slow" } else { "" };
    let amount_cents = if n % 4 == 1 { services::LIMIT_CENTS + 1 } else { 100 + n };
    OrderPlaced { order_id: format!("o{n}{slow}{run}"), customer: format!("c{n}"), amount_cents }
}

/// Runs the scenario against the database `spec` names (`sagas` is the parent's view of
/// it).
async fn killed_service<D: SagaDb>(sagas: D, spec: String) {
    let broker = TestBroker::start().await;
    let brokers = broker.bootstrap();
    let all: Vec<&str> = REPLIES.iter().chain(&COMMANDS).copied().collect();
    topics::ensure_topics(&brokers, &all).await.expect("topics");
    let run = format!("-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let late = Duration::from_millis(PAYMENT_TIMEOUT_MS as u64 + 500);
    let services: Vec<_> = services::services(&brokers, &run, Some(late))
        .into_iter()
        .map(|service| {
            let mut stopped = stopped.clone();
            tokio::spawn(service.run(async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        })
        .collect();
    let placing = tokio::spawn(place_orders(brokers.clone(), run.clone()));

    let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ u64::from(std::process::id());
    let mut random = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let child = || {
        std::process::Command::new(std::env::current_exe().expect("this test binary"))
            .args(["--ignored", "--exact", "saga_child", "--quiet"])
            .env(CHILD, &spec)
            .env(CHILD_BROKERS, &brokers)
            .env(CHILD_RUN, &run)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start the saga service")
    };
    let control = SagaControl::new(sagas);
    for _ in 0..KILLS {
        let mut service = child();
        tokio::time::sleep(Duration::from_millis(200 + random(800))).await;
        service.kill().expect("SIGKILL");
        service.wait().expect("reaped");
    }
    let placed = placing.await.expect("placing");
    let ended_while_killed = ended(&control).await;

    // Failures wait until everything has stopped: a panic while consumers run leaves
    // the runtime blocked in their drop.
    let mut last = child();
    let finals = all_ended(&control).await;
    let sent = match &finals {
        Ok(finals) => wait_for_commands(&brokers, finals).await,
        Err(_) => Ok(Sent::new()),
    };
    last.kill().expect("SIGKILL");
    last.wait().expect("reaped");
    let _ = stop.send(true);
    for service in services {
        service.await.expect("service").expect("ran");
    }
    placed.expect("orders placed");
    let (finals, sent) = (finals.unwrap_or_else(|e| panic!("{e}")), sent.unwrap_or_else(|e| panic!("{e}")));
    assert!(ended_while_killed > 0, "sagas ended between the kills");
    for n in 0..ORDERS {
        let placed = order(n, &run);
        let status = finals.get(&placed.order_id).map(String::as_str);
        assert!(matches!(status, Some("completed" | "compensated")), "{}: {status:?}", placed.order_id);
        if placed.amount_cents > services::LIMIT_CENTS {
            assert_eq!(status, Some("compensated"), "{} was declined", placed.order_id);
        }
    }
    for ((order_id, command), ids) in &sent {
        assert_eq!(ids.len(), 1, "{order_id}: {command} sent once (repeats keep the event id): {ids:?}");
    }
    eprintln!(
        "{KILLS} kills: {ended_while_killed} sagas ended while the service was being killed; {} completed, {} \
         compensated; {} commands",
        finals.values().filter(|s| *s == "completed").count(),
        finals.values().filter(|s| *s == "compensated").count(),
        sent.len()
    );
}

/// Each saga's final status, once all have ended (90 s at most).
async fn all_ended<D: SagaDb>(control: &SagaControl<D>) -> Result<BTreeMap<String, String>, String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    while ended(control).await < ORDERS as usize {
        if Instant::now() > deadline {
            return Err(format!("{} of {ORDERS} sagas ended in 90 s", ended(control).await));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = control.list("order", "", 1000).await.map_err(|e| e.to_string())?;
    Ok(all.into_iter().map(|s| (s.id, s.status)).collect())
}

async fn ended<D: SagaDb>(control: &SagaControl<D>) -> usize {
    control
        .counts("order")
        .await
        .expect("counts")
        .iter()
        .filter(|(s, _)| s != "running")
        .map(|(_, n)| *n as usize)
        .sum()
}

/// Places the orders over a few seconds, so they are in flight while the service dies.
async fn place_orders(brokers: String, run: String) -> anyhow::Result<()> {
    let publisher = Publisher::new(PublisherConfig::default().brokers(&brokers).client_id("order-service"))?;
    for n in 0..ORDERS {
        let placed = order(n, &run);
        let id = placed.order_id.clone();
        publisher.publish_envelope(&Envelope::new("order-service", placed).with_correlation_id(&id)).await?;
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    Ok(())
}

/// (order, command) -> the event ids it went out with.
type Sent = BTreeMap<(String, String), BTreeSet<String>>;

/// Reads every command from the broker until each saga's are there: a completed one
/// reserved, paid and shipped; a compensated one reserved, asked for payment, released
/// and cancelled.
async fn wait_for_commands(brokers: &str, finals: &BTreeMap<String, String>) -> Result<Sent, String> {
    let want = |status: &str| match status {
        "completed" => vec!["inventory.reserve", "payment.process", "shipping.ship"],
        _ => vec!["inventory.reserve", "payment.process", "inventory.release", "order.cancel"],
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sent = tokio::task::block_in_place(|| read_commands(brokers))?;
        let complete = finals.iter().all(|(order_id, status)| {
            let got: Vec<&str> =
                sent.keys().filter(|(o, _)| o == order_id).map(|(_, c)| c.as_str()).collect::<Vec<_>>();
            let mut want = want(status);
            want.sort_unstable();
            let mut got = got;
            got.sort_unstable();
            got == want
        });
        if complete {
            return Ok(sent);
        }
        if Instant::now() > deadline {
            return Err(format!("commands missing or extra after 30 s: {sent:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every command on the broker now.
fn read_commands(brokers: &str) -> Result<Sent, String> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "command-reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| format!("reader: {e}"))?;
    let (mut list, mut ends) = (TopicPartitionList::new(), BTreeMap::new());
    for topic in COMMANDS {
        for partition in 0..3 {
            let (_, high) = reader
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .map_err(|e| format!("watermarks of {topic}/{partition}: {e}"))?;
            if high > 0 {
                list.add_partition_offset(topic, partition, Offset::Beginning).map_err(|e| e.to_string())?;
                ends.insert((topic.to_string(), partition), high);
            }
        }
    }
    reader.assign(&list).map_err(|e| e.to_string())?;
    let mut sent = Sent::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ends.is_empty() {
        if Instant::now() > deadline {
            return Err(format!("reading commands: {ends:?} left"));
        }
        let Some(message) = reader.poll(Duration::from_millis(200)) else { continue };
        let message = message.map_err(|e| e.to_string())?;
        let envelope: Envelope<serde_json::Value> =
            serde_json::from_slice(message.payload().unwrap_or_default()).map_err(|e| e.to_string())?;
        let order_id = envelope.data["orderId"].as_str().unwrap_or_default().to_string();
        let key = (order_id, message.topic().to_string());
        sent.entry(key).or_default().insert(envelope.event_id.to_string());
        let at = (message.topic().to_string(), message.partition());
        if ends.get(&at).is_some_and(|high| message.offset() + 1 >= *high) {
            ends.remove(&at);
        }
    }
    Ok(sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_saga_service_ends_every_saga_and_sends_each_command_once() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("sagas.db");
    let pool = sqlx::SqlitePool::connect_with(sqlite_options(&path)).await.expect("sqlite");
    let sagas = SqliteSagas::new(pool).await.expect("sagas");
    killed_service(sagas, format!("sqlite:{}", path.display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_saga_service_ends_every_saga_and_sends_each_command_once() {
    let Some(pool) = outbox_common::postgres_pool("saga_kill", 4).await else { return };
    let schema: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&pool).await.expect("schema");
    let sagas = PostgresSagas::new(pool.clone()).await.expect("sagas");
    killed_service(sagas, format!("postgres:{schema}")).await;
    outbox_common::drop_schema(pool).await;
}
