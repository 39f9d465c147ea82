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
    let mut relay =
        Relaying::start(store.clone(), &broker.bootstrap(), outbox_common::quick(Duration::from_millis(500)));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_relay_crashes_only_same_id_repeats_reach_the_broker() {
    use rdkafka::Message as _;
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let dir = tempfile::tempdir().expect("dir");
    let broker = TestBroker::start().await;
    let store = store(dir.path()).await;
    let mut committed = HashSet::new();
    for crash in 0..4 {
        let relay =
            Relaying::start(store.clone(), &broker.bootstrap(), outbox_common::quick(Duration::from_millis(500)));
        for n in 0..50u64 {
            let stream = format!("order-{}", n % 5);
            let event = store_common::event(&stream, crash * 50 + n);
            committed.insert(event.event_id());
            store.append(&stream, ExpectedVersion::Any, vec![event]).await.expect("append");
        }
        tokio::time::sleep(Duration::from_millis(5 * crash)).await;
        relay.abort().await; // a crash: the cursor may lag what was sent
    }
    // The last relay sends what the earlier ones' cursors had not passed; the broker then
    // holds every event (what the dead relays acknowledged is not theirs to report).
    let relay = Relaying::start(store.clone(), &broker.bootstrap(), outbox_common::quick(Duration::from_millis(500)));
    let reader: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "crash-check")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("reader");
    reader.subscribe(&["order.events"]).expect("subscribe");
    let (mut seen, mut versions, mut repeats) = (HashSet::new(), std::collections::HashMap::new(), 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < committed.len() {
        assert!(std::time::Instant::now() < deadline, "only {} of {} arrived", seen.len(), committed.len());
        let Some(Ok(message)) = tokio::task::block_in_place(|| reader.poll(Duration::from_millis(200))) else {
            continue;
        };
        let envelope: herald::Envelope<store_common::OrderPlaced> =
            herald::Envelope::from_json(message.payload().expect("payload"), 1 << 20).expect("envelope");
        assert!(committed.contains(&envelope.event_id), "an event that was never appended");
        if !seen.insert(envelope.event_id) {
            repeats += 1; // a repeat of an id already delivered: what a crash may cost
            continue;
        }
        let next = versions.entry(envelope.data.order_id.clone()).or_insert(0u64);
        let stored = store.read_stream(&envelope.data.order_id, *next, herald::store::Direction::Forward, 1).await;
        assert_eq!(stored.expect("read")[0].event_id, envelope.event_id, "first deliveries in stream order");
        *next += 1;
    }
    relay.stop().await;
    println!("{} events, {repeats} repeats of delivered ids", committed.len());
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
