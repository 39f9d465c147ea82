//! Every client herald creates takes the librdkafka overrides of its settings: the
//! publisher, the consumer, the publisher the consumer makes for dead letters, and the
//! outbox relay's producer. Each is configured with brokers where nothing listens and can
//! reach the test broker only through a `bootstrap.servers` override.

mod common;
mod outbox_common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Running, UserCreated, wait};
use herald::consumer::{Consumer, ConsumerConfig, HandlerError};
use herald::outbox::{RelayConfig, SqliteOutbox};
use herald::testkit::TestBroker;
use herald::{Envelope, Publisher, PublisherConfig};
use outbox_common::{Relaying, sqlite_pool};
use rdkafka::Message as _;

/// Nothing listens here: a client that connects anywhere got there by its override.
const NOWHERE: &str = "127.0.0.1:1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publisher_the_consumer_and_its_dead_letters_reach_the_broker_only_through_overrides() {
    let broker = TestBroker::start().await;
    let config = PublisherConfig::default().brokers(NOWHERE).timeout(Duration::from_secs(20));
    let publisher = Publisher::new(config.rdkafka("bootstrap.servers", broker.bootstrap())).expect("publisher");
    publisher.publish(UserCreated { user_id: "u-1".into(), n: 1 }).await.expect("published through the override");

    let handled = Arc::new(AtomicU32::new(0));
    let calls = Arc::clone(&handled);
    let config =
        ConsumerConfig::new(NOWHERE, "overrides", &["user.created"]).rdkafka("bootstrap.servers", broker.bootstrap());
    let consumer = Consumer::new(config).on(move |_event: Envelope<UserCreated>, _ctx| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Err(HandlerError::permanent("refused on purpose")) }
    });
    let running = Running::start(consumer);
    wait("the consumer to receive the event", || handled.load(Ordering::SeqCst) == 1).await;
    // The dead letter went out through the consumer's own publisher.
    let letters = common::read_from_start(&broker.bootstrap(), "user.created.dlq", 1, |m| {
        Envelope::<UserCreated>::from_json(m.payload().expect("payload"), 1 << 20).expect("envelope").data
    });
    assert_eq!(letters, vec![UserCreated { user_id: "u-1".into(), n: 1 }]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_reaches_the_broker_only_through_its_publisher_overrides() {
    let dir = tempfile::tempdir().expect("dir");
    let broker = TestBroker::start().await;
    let pool = sqlite_pool(dir.path()).await;
    let outbox = SqliteOutbox::new(pool.clone()).await.expect("outbox");
    let publisher = PublisherConfig::default().brokers(NOWHERE).rdkafka("bootstrap.servers", broker.bootstrap());
    let mut relay = Relaying::start_with(outbox.clone(), publisher, RelayConfig::default());
    let mut tx = pool.begin().await.expect("begin");
    let id = outbox.enqueue(&mut tx, UserCreated { user_id: "u-2".into(), n: 2 }).await.expect("enqueue");
    tx.commit().await.expect("commit");
    relay.wait_for(&HashSet::from([id]), &mut HashSet::new(), Duration::from_secs(60)).await;
    relay.stop().await;
}
