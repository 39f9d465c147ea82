//! The event store on real SQLite files (see `store_common` for what each check shows).

mod common;
mod outbox_common;
mod store_common;

use std::collections::HashSet;
use std::time::Duration;

use herald::store::{EventStore, ExpectedVersion, SqliteEventStore};
use herald::testkit::TestBroker;
use outbox_common::{Relaying, sqlite_pool};
use proptest::prelude::*;

async fn store(dir: &std::path::Path) -> SqliteEventStore {
    SqliteEventStore::new(sqlite_pool(dir).await).await.expect("event store")
}

fn rounds() -> u64 {
    std::env::var("HERALD_STORE_ROUNDS").map_or(200, |n| n.parse().expect("HERALD_STORE_ROUNDS"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_writers_with_one_expectation_have_one_winner_per_round() {
    let dir = tempfile::tempdir().expect("dir");
    store_common::one_winner_per_round(store(dir.path()).await, "order-1", 32, rounds()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_stored_events_are_idempotent() {
    let dir = tempfile::tempdir().expect("dir");
    store_common::retries_are_idempotent(store(dir.path()).await, "order-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_read_forward_and_backward() {
    let dir = tempfile::tempdir().expect("dir");
    store_common::streams_read_both_ways(store(dir.path()).await, "order-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_catches_up_then_follows_live_appends_and_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().expect("dir");
    let store = store(dir.path()).await;
    let mut committed = HashSet::new();
    for n in 0..30 {
        let stream = format!("order-{}", n % 3);
        let event = store_common::event(&stream, n);
        committed.insert(event.event_id());
        store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
    }
    // Catch-up of 30, then 20 live ones appended while it waits.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut ids = HashSet::new();
            for n in 30..50 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let stream = format!("order-{}", n % 3);
                let event = store_common::event(&stream, n);
                ids.insert(event.event_id());
                store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
            }
            ids
        })
    };
    let (seen, checkpoint) = store_common::subscribe_until(store.clone(), "order-", 50).await;
    committed.extend(writer.await.expect("writer"));
    store_common::check_order(&seen, &committed);
    let mut resumed = herald::store::Subscription::new(store, checkpoint, herald::store::SubscriptionFilter::all());
    assert_eq!(resumed.try_next().await.expect("read"), None, "nothing twice after a resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_events_reach_the_broker_keyed_by_stream_in_stream_order() {
    let dir = tempfile::tempdir().expect("dir");
    let broker = TestBroker::start().await;
    let store = store(dir.path()).await.topic("order", "orders.events");
    let mut relay = Relaying::start(store.clone(), &broker.bootstrap(), herald::outbox::RelayConfig::default());
    let mut committed = HashSet::new();
    for n in 0..60 {
        let stream = format!("order-{}", n % 4);
        let event = store_common::event(&stream, n);
        committed.insert(event.event_id());
        store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
    }
    relay.wait_for(&committed, &mut HashSet::new(), Duration::from_secs(60)).await;
    relay.stop().await;
    let arrived = common::read_from_start(&broker.bootstrap(), "orders.events", 60, |m| {
        use rdkafka::Message as _;
        let key = String::from_utf8_lossy(m.key().expect("key")).into_owned();
        let event: herald::Envelope<store_common::OrderPlaced> =
            herald::Envelope::from_json(m.payload().expect("payload"), 1 << 20).expect("envelope");
        (key, event.data.n)
    });
    for stream in 0..4 {
        let key = format!("order-{stream}");
        let ns: Vec<u64> = arrived.iter().filter(|(k, _)| *k == key).map(|(_, n)| *n).collect();
        assert_eq!(ns, (0..60).filter(|n| n % 4 == stream).collect::<Vec<_>>(), "{key} in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_metadata_limits_reads_and_deletes_are_soft_or_hard() {
    let dir = tempfile::tempdir().expect("dir");
    store_common::metadata_and_deletes(store(dir.path()).await).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    /// Random appends (three streams, every kind of expectation, retries of earlier batches
    /// to the same or another place): the store answers as the model does, step by step.
    #[test]
    fn appends_agree_with_a_model_store(ops in prop::collection::vec((0u8..3, 0u8..5, 0u8..12), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("dir");
        runtime.block_on(async {
            let store = store(dir.path()).await;
            store_common::agrees_with_the_model(store, "sqlite", &ops).await;
        });
    }
}
