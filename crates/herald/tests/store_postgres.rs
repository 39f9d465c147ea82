//! The event store on the real PostgreSQL server (see `store_common` for what each check
//! shows), plus the global order under transactions that commit out of order.

mod common;
mod outbox_common;
mod store_common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::store::{EventStore, ExpectedVersion, PostgresEventStore, StoreError};
use herald::testkit::TestBroker;
use outbox_common::{Relaying, drop_schema, postgres_pool};
use proptest::prelude::*;

async fn store(test: &str, connections: u32) -> Option<PostgresEventStore> {
    let pool = postgres_pool(test, connections).await?;
    Some(PostgresEventStore::new(pool).await.expect("event store"))
}

fn rounds() -> u64 {
    std::env::var("HERALD_STORE_ROUNDS").map_or(200, |n| n.parse().expect("HERALD_STORE_ROUNDS"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_writers_with_one_expectation_have_one_winner_per_round() {
    let Some(store) = store("store_one_winner", 33).await else { return };
    store_common::one_winner_per_round(store.clone(), "order-1", 32, rounds()).await;
    drop_schema(store.pool().clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_of_stored_events_are_idempotent() {
    let Some(store) = store("store_idempotent", 4).await else { return };
    store_common::retries_are_idempotent(store.clone(), "order-1").await;
    drop_schema(store.pool().clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_read_forward_and_backward() {
    let Some(store) = store("store_reads", 4).await else { return };
    store_common::streams_read_both_ways(store.clone(), "order-1").await;
    drop_schema(store.pool().clone()).await;
}

/// Sixteen writers append inside their own transactions to four streams, sleeping at
/// random while they hold them open, and roll back one in ten. A subscription sees every
/// committed event once, in an order that keeps each stream's versions, and none rolled
/// back; a naive reader (`id > cursor`) polling beside it skips events (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_commits_are_never_skipped_while_a_naive_reader_skips_them() {
    let Some(store) = store("store_out_of_order", 24).await else { return };
    let pool = store.pool().clone();
    sqlx::query("CREATE INDEX herald_events_naive ON herald_events (id)").execute(&pool).await.expect("index");
    let writing = Arc::new(AtomicBool::new(true));
    let naive = {
        let (pool, writing) = (pool.clone(), Arc::clone(&writing));
        tokio::spawn(async move {
            let (mut cursor, mut seen) = (0i64, HashSet::new());
            loop {
                let done = !writing.load(Ordering::SeqCst);
                let rows: Vec<(i64, String)> =
                    sqlx::query_as("SELECT id, event_id::text FROM herald_events WHERE id > $1 ORDER BY id LIMIT 1000")
                        .bind(cursor)
                        .fetch_all(&pool)
                        .await
                        .expect("naive read");
                for (id, event_id) in rows {
                    cursor = cursor.max(id);
                    seen.insert(uuid::Uuid::parse_str(&event_id).expect("uuid"));
                }
                if done {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let committed = Arc::new(Mutex::new(HashSet::new()));
    let rolled_back = Arc::new(Mutex::new(HashSet::new()));
    let mut writers = Vec::new();
    for writer in 0..16u64 {
        let (store, committed, rolled_back) = (store.clone(), Arc::clone(&committed), Arc::clone(&rolled_back));
        writers.push(tokio::spawn(async move {
            let mut seed = writer.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut random = move |n: u64| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed % n
            };
            for n in 0..15 {
                let stream = format!("order-{}", random(4));
                let event = store_common::event(&stream, writer * 100 + n);
                let id = event.event_id();
                loop {
                    let mut tx = store.pool().begin().await.expect("begin");
                    tokio::time::sleep(Duration::from_millis(random(20))).await;
                    match store.append_in(&mut tx, &stream, ExpectedVersion::Any, vec![event.clone()]).await {
                        Ok(_) => {}
                        Err(StoreError::TransactionTooOld { .. }) => continue, // dropped: rolled back
                        Err(other) => panic!("{other}"),
                    }
                    tokio::time::sleep(Duration::from_millis(random(20))).await;
                    if random(10) == 0 {
                        tx.rollback().await.expect("rollback");
                        rolled_back.lock().expect("lock").insert(id);
                    } else {
                        tx.commit().await.expect("commit");
                        committed.lock().expect("lock").insert(id);
                    }
                    break;
                }
            }
        }));
    }
    let subscription = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut subscription =
                herald::store::Subscription::new(store, Default::default(), Default::default()).batch(7);
            let mut seen = Vec::new();
            loop {
                match tokio::time::timeout(Duration::from_secs(3), subscription.next()).await {
                    Ok(event) => seen.push(event.expect("read")),
                    Err(_) => return seen, // quiet for 3 s: the writers are done
                }
            }
        })
    };
    for writer in writers {
        writer.await.expect("writer");
    }
    writing.store(false, Ordering::SeqCst);
    let naive_seen = naive.await.expect("naive reader");
    let seen = subscription.await.expect("subscription");
    let committed = committed.lock().expect("lock").clone();
    let rolled_back = rolled_back.lock().expect("lock").clone();
    store_common::check_order(&seen, &committed);
    let naive_skipped = committed.difference(&naive_seen).count();
    println!(
        "committed {}, rolled back {}; subscription: {} events, none skipped; naive reader skipped {naive_skipped}",
        committed.len(),
        rolled_back.len(),
        seen.len()
    );
    assert!(!rolled_back.is_empty(), "the run had rollbacks");
    assert!(naive_skipped > 0, "the naive reader skipped nothing: this run cannot tell the two apart");
    drop_schema(pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_events_reach_the_broker_keyed_by_stream_in_stream_order() {
    let Some(store) = store("store_publish", 8).await else { return };
    let broker = TestBroker::start().await;
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
    let arrived = common::read_from_start(&broker.bootstrap(), "order.events", 60, |m| {
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
    drop_schema(store.pool().clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_metadata_limits_reads_and_deletes_are_soft_or_hard() {
    let Some(store) = store("store_metadata", 4).await else { return };
    store_common::metadata_and_deletes(store.clone()).await;
    drop_schema(store.pool().clone()).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]
    /// As on SQLite: the store answers as the model does, step by step.
    #[test]
    fn appends_agree_with_a_model_store(ops in prop::collection::vec((0u8..3, 0u8..5, 0u8..12), 1..40)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let Some(store) = store("store_model", 2).await else { return };
            store_common::agrees_with_the_model(store.clone(), "postgres", &ops).await;
            drop_schema(store.pool().clone()).await;
        });
    }
}
