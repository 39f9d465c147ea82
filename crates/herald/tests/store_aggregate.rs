//! Aggregates on the event store (SQLite files): the order's rules through the given/when/
//! then kit, snapshots that never change what a load returns, time travel, and upcasters on
//! every read path — the store, a subscription and the consumer runtime.

#[path = "../examples/order/aggregate.rs"]
mod aggregate;
mod common;
mod outbox_common;

use std::sync::{Arc, Mutex};

use aggregate::{Order, OrderCancelled, OrderCommand, OrderError, OrderEvent, OrderPaid, OrderPlaced, Status};
use herald::consumer::{Consumer, ConsumerConfig};
use herald::store::{
    AggregateTest, Direction, EventStore, ExpectedVersion, NewEvent, Position, Repository, SqliteEventStore,
    Subscription, SubscriptionFilter,
};
use herald::upcast::Upcasters;
use herald::{Envelope, Publisher, PublisherConfig};
use outbox_common::sqlite_pool;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn placed(id: &str, total: u64) -> OrderEvent {
    OrderEvent::Placed(OrderPlaced { order_id: id.into(), customer: "ada".into(), total_cents: total })
}

#[test]
fn the_orders_rules_given_when_then() {
    AggregateTest::<Order>::given([placed("o1", 500)])
        .when(&OrderCommand::Pay { amount_cents: 500 })
        .then([OrderEvent::Paid(OrderPaid { order_id: "o1".into(), amount_cents: 500 })]);
    AggregateTest::<Order>::given([placed("o1", 500)])
        .when(&OrderCommand::Pay { amount_cents: 400 })
        .then_error(|e| *e == OrderError::WrongAmount { due: 500, offered: 400 });
    let cancelled = OrderEvent::Cancelled(OrderCancelled { order_id: "o1".into(), reason: "asked".into() });
    AggregateTest::<Order>::given([placed("o1", 500), cancelled])
        .when(&OrderCommand::Ship)
        .then_error(|e| *e == OrderError::Cancelled);
    AggregateTest::<Order>::given([]).when(&OrderCommand::Ship).then_error(|e| *e == OrderError::NotPlaced);
}

fn command(code: u8, n: usize) -> OrderCommand {
    match code % 4 {
        0 => OrderCommand::Place { order_id: "o".into(), customer: format!("c{n}"), total_cents: 100 },
        1 => OrderCommand::Pay { amount_cents: if n.is_multiple_of(3) { 90 } else { 100 } },
        2 => OrderCommand::Ship,
        _ => OrderCommand::Cancel { reason: format!("r{n}") },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]
    /// For random command sequences, across many streams so snapshots are taken at every
    /// phase: the state loaded from snapshot plus tail equals the state replayed from all
    /// events, and equals the state the commands produced.
    #[test]
    fn state_from_a_snapshot_and_its_tail_equals_a_full_replay(
        commands in prop::collection::vec(0u8..4, 1..30),
        every in 1u64..5,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        runtime.block_on(async {
            let store = SqliteEventStore::new(sqlite_pool(dir.path()).await).await.expect("store");
            let orders: Repository<_, Order> = Repository::new(store.clone()).snapshot_every(every);
            let mut last = Order::default();
            for (n, code) in commands.iter().enumerate() {
                if let Ok(done) = orders.execute("o", &command(*code, n)).await {
                    last = done.state;
                }
            }
            let loaded = orders.load("o").await.expect("load");
            assert_eq!(loaded.state, last, "snapshot plus tail");
            if let Some(version) = loaded.version {
                let replayed = orders.load_at_version("o", version).await.expect("replay");
                assert_eq!(replayed.state, loaded.state, "full replay");
                let snapshot = store.load_snapshot("order-o").await.expect("snapshot");
                if version + 1 >= every {
                    assert!(snapshot.is_some(), "a snapshot every {every} events");
                }
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_of_another_schema_version_is_ignored() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteEventStore::new(sqlite_pool(dir.path()).await).await.expect("store");
    let orders: Repository<_, Order> = Repository::new(store.clone()).snapshot_every(1);
    orders
        .execute("o", &OrderCommand::Place { order_id: "o".into(), customer: "ada".into(), total_cents: 7 })
        .await
        .expect("place");
    let bogus = herald::store::Snapshot { version: 0, schema_version: 99, state: b"{\"not\": \"an order\"}".to_vec() };
    store.save_snapshot("order-o", bogus).await.expect("save");
    let loaded = orders.load("o").await.expect("load");
    assert_eq!((loaded.state.status, loaded.state.total_cents), (Status::Placed, 7), "rebuilt from events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_travel_by_version_and_by_time() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteEventStore::new(sqlite_pool(dir.path()).await).await.expect("store");
    let orders: Repository<_, Order> = Repository::new(store);
    orders
        .execute("o", &OrderCommand::Place { order_id: "o".into(), customer: "ada".into(), total_cents: 5 })
        .await
        .expect("place");
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = herald::time::now_ms();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    orders.execute("o", &OrderCommand::Pay { amount_cents: 5 }).await.expect("pay");
    assert_eq!(orders.load_at_version("o", 0).await.expect("v0").state.status, Status::Placed);
    assert_eq!(orders.load_as_of("o", between).await.expect("then").state.status, Status::Placed);
    assert_eq!(orders.load("o").await.expect("now").state.status, Status::Paid);
}

// `user.created` as it was first published (v1), and as handlers know it now (v3).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct UserCreatedV1 {
    user_id: String,
    name: String,
}
herald::event!(UserCreatedV1, type = "user.created", version = 1, key = user_id);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserCreated {
    user_id: String,
    full_name: String,
    locale: String,
}
herald::event!(UserCreated, type = "user.created", version = 3, key = user_id);

fn upcasters() -> Arc<Upcasters> {
    Arc::new(
        Upcasters::new()
            .register("user.created", 1, |mut data| {
                let name = data["name"].take();
                data["full_name"] = name;
                Ok(data)
            })
            .register("user.created", 2, |mut data| {
                data["locale"] = serde_json::json!("en");
                Ok(data)
            }),
    )
}

fn newest(user_id: &str) -> UserCreated {
    UserCreated { user_id: user_id.into(), full_name: "Ada".into(), locale: "en".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_event_reaches_v3_readers_through_the_store_a_subscription_and_the_consumer() {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteEventStore::new(sqlite_pool(dir.path()).await).await.expect("store").upcasters(upcasters());
    let old = Envelope::new("auth", UserCreatedV1 { user_id: "u1".into(), name: "Ada".into() });
    store.append("user-u1", ExpectedVersion::NoStream, vec![NewEvent::new(&old).expect("v1")]).await.expect("append");

    let read = store.read_stream("user-u1", 0, Direction::Forward, 10).await.expect("read");
    assert_eq!(read[0].event_version, 3);
    assert_eq!(read[0].decode::<UserCreated>(1 << 20).expect("v3").data, newest("u1"), "through the store");
    let mut subscription = Subscription::new(store.clone(), Position::default(), SubscriptionFilter::all());
    let event = subscription.next().await.expect("subscription");
    assert_eq!(event.decode::<UserCreated>(1 << 20).expect("v3").data, newest("u1"), "through a subscription");

    // The consumer: a v1 record on the broker reaches a v3 handler.
    let broker = herald::testkit::TestBroker::start().await;
    let publisher = Publisher::new(PublisherConfig::default().brokers(broker.bootstrap())).expect("publisher");
    publisher.publish(UserCreatedV1 { user_id: "u2".into(), name: "Ada".into() }).await.expect("publish v1");
    let seen: Arc<Mutex<Vec<UserCreated>>> = Arc::default();
    let handled = Arc::clone(&seen);
    let consumer = Consumer::new(ConsumerConfig::new(broker.bootstrap(), "upcast", &["user.created"]))
        .upcasters(upcasters())
        .on(move |event: Envelope<UserCreated>, _ctx| {
            handled.lock().expect("lock").push(event.data);
            async { Ok(()) }
        });
    let running = common::Running::start(consumer);
    common::wait("the v3 handler", || !seen.lock().expect("lock").is_empty()).await;
    running.stop().await;
    assert_eq!(seen.lock().expect("lock").clone(), vec![newest("u2")], "through the consumer runtime");
}
