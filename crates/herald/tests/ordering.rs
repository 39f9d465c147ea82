//! Per-key order under parallelism, as a property against a real broker: random keys,
//! random handler delays, 8 messages in flight per partition; each key's events must be
//! handled in offset order, each exactly once, and different keys must really overlap.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Running, UserCreated, wait};
use herald::consumer::{Consumer, ConsumerConfig};
use herald::testkit::TestBroker;
use herald::{Publisher, PublisherConfig};
use proptest::prelude::*;

#[derive(Debug, Default)]
struct Observed {
    /// Per key, the (partition, offset) of each handled event, in the order handlers started.
    per_key: HashMap<String, Vec<(i32, i64)>>,
    handled: usize,
}

fn check(keys: Vec<u8>, delays_us: Vec<u16>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async move {
        let broker = TestBroker::start().await;
        let b = broker.bootstrap();
        let publisher =
            Publisher::new(PublisherConfig::default().brokers(&b).client_id("auth-service")).expect("publisher");
        for (n, key) in keys.iter().enumerate() {
            let event = UserCreated { user_id: format!("user-{key}"), n: n as u32 };
            publisher.publish(event).await.expect("published");
        }
        let observed: Arc<Mutex<Observed>> = Arc::default();
        let (running_now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let delays = Arc::new(delays_us);
        let mut config = ConsumerConfig::new(&b, "ordering", &["user.created"]);
        config.in_flight_per_partition = 8;
        let (o, r, m) = (Arc::clone(&observed), Arc::clone(&running_now), Arc::clone(&most));
        let consumer =
            Consumer::new(config).on(move |event: herald::Envelope<UserCreated>, ctx: herald::consumer::Context| {
                let (observed, running_now, most, delays) =
                    (Arc::clone(&o), Arc::clone(&r), Arc::clone(&m), Arc::clone(&delays));
                async move {
                    observed
                        .lock()
                        .expect("lock")
                        .per_key
                        .entry(event.data.user_id.clone())
                        .or_default()
                        .push((ctx.partition, ctx.offset));
                    let now = running_now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let delay = delays[event.data.n as usize % delays.len()];
                    tokio::time::sleep(Duration::from_micros(u64::from(delay))).await;
                    running_now.fetch_sub(1, Ordering::SeqCst);
                    observed.lock().expect("lock").handled += 1;
                    Ok(())
                }
            });
        let running = Running::start(consumer);
        let total = keys.len();
        let o = Arc::clone(&observed);
        wait("every event handled", move || o.lock().expect("lock").handled >= total).await;
        running.stop().await;
        let observed = observed.lock().expect("lock");
        prop_assert_eq!(observed.handled, total, "each event once");
        for (key, seen) in &observed.per_key {
            prop_assert!(seen.iter().all(|(p, _)| *p == seen[0].0), "key {} spans partitions", key);
            prop_assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "key {} out of offset order: {:?}", key, seen);
        }
        let distinct_keys = observed.per_key.len();
        if distinct_keys >= 4 && total >= 100 {
            prop_assert!(most.load(Ordering::SeqCst) > 1, "handlers never overlapped: the test would prove nothing");
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("HERALD_PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(4),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]
    #[test]
    fn each_keys_events_are_handled_in_offset_order(
        keys in prop::collection::vec(0u8..24, 100..400),
        delays_us in prop::collection::vec(0u16..3_000, 1..64),
    ) {
        check(keys, delays_us)?;
    }
}
