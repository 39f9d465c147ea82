//! The herald crate's cost over hand-written rdkafka code, measured in the same run against
//! an in-process Herald broker (page-cache durability, so the broker is not the limit):
//!
//! - publish: `Publisher::publish` against a raw idempotent `FutureProducer` sending the same
//!   envelope JSON (serialized per event, as hand-written code must) with the same headers;
//!   both keep the same number of sends in flight;
//! - consume: the runtime with a no-op typed handler, and with inbox (memory), retry policy,
//!   dead letters and key parking switched on but never triggered, against a raw
//!   `StreamConsumer` loop that decodes each envelope and auto-commits.
//!
//! Rounds are interleaved so drift hits every variant alike. Run with
//! `cargo bench -p herald --bench runtime` (`HERALD_BENCH_EVENTS`, default 1,000,000;
//! `HERALD_BENCH_ROUNDS`, default 3; `HERALD_BENCH_ONLY=publish|consume` runs one half). Prints one line per measurement and a summary of
//! medians, ratios and per-event overhead. `HERALD_BENCH_PROFILE=raw|raw-routed|herald|machinery|publish-raw|publish-herald`
//! fills the topic and runs one consume variant alone, for `perf record`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::consumer::{Consumer, ConsumerConfig};
use herald::inbox::MemoryInbox;
use herald::testkit::TestBroker;
use herald::{Envelope, Publisher, PublisherConfig};
use herald_broker::{BrokerConfig, Durability, ServerConfig};
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio::task::JoinSet;

mod common;

use common::{IN_FLIGHT, OrderPlaced, event};

fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("compression.codec", "none")
        .set("linger.ms", "5");
    config
}

/// Sends `count` events through `send`, keeping up to IN_FLIGHT in flight; returns events/s.
async fn drive<F, Fut>(count: u64, send: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for n in 0..count {
        if tasks.len() >= IN_FLIGHT {
            tasks.join_next().await.expect("a task").expect("send task");
        }
        tasks.spawn(send(n));
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("send task");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

async fn publish_raw(bootstrap: &str, topic: &'static str, count: u64) -> f64 {
    let producer: FutureProducer = producer_config(bootstrap).create().expect("producer");
    drive(count, |n| {
        let producer = producer.clone();
        async move {
            let envelope = Envelope::new("bench", event(n));
            let payload = serde_json::to_vec(&envelope).expect("json");
            let id = envelope.event_id.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header { key: "event-type", value: Some("order.placed") })
                .insert(Header { key: "event-version", value: Some("1") })
                .insert(Header { key: "content-type", value: Some("application/json") })
                .insert(Header { key: "event-id", value: Some(id.as_str()) });
            let record = FutureRecord::to(topic).key(&envelope.data.order_id).payload(&payload).headers(headers);
            producer.send(record, Duration::from_secs(60)).await.expect("raw delivery");
        }
    })
    .await
}

async fn publish_herald(bootstrap: &str, count: u64) -> f64 {
    let publisher = Publisher::new(
        PublisherConfig::default().brokers(bootstrap).client_id("bench").linger(Duration::from_millis(5)),
    )
    .expect("publisher");
    drive(count, |n| {
        let publisher = publisher.clone();
        async move {
            publisher.publish(event(n)).await.expect("herald delivery");
        }
    })
    .await
}

/// Events/s from the first to the last of `count` events, raw loop; with `route`, it also
/// reads the `event-type` header and picks the decoder by it, as a hand-written consumer of
/// several event types must (the runtime does this for every message).
async fn consume_raw(bootstrap: &str, group: &str, count: u64, route: bool) -> f64 {
    // Spawned, like the runtime's run loop.
    tokio::spawn(raw_loop(bootstrap.to_string(), group.to_string(), count, route)).await.expect("raw loop")
}

async fn raw_loop(bootstrap: String, group: String, count: u64, route: bool) -> f64 {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", &group)
        .set("auto.offset.reset", "earliest")
        // As the runtime sets it (librdkafka's 1 s default idles a fast consumer).
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    consumer.subscribe(&["bench.orders"]).expect("subscribe");
    let mut received = 0u64;
    let mut first = None;
    while received < count {
        let message = consumer.recv().await.expect("message");
        first.get_or_insert_with(Instant::now);
        if route {
            let event_type = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "event-type").and_then(|h| h.value))
                .unwrap_or_default();
            assert_eq!(event_type, b"order.placed", "routed by header");
        }
        let envelope: Envelope<OrderPlaced> =
            Envelope::from_json(message.payload().unwrap_or_default(), 1 << 20).expect("envelope");
        std::hint::black_box(envelope);
        received += 1;
    }
    let elapsed = first.expect("received").elapsed();
    tokio::task::spawn_blocking(move || drop(consumer)).await.expect("close");
    (count - 1) as f64 / elapsed.as_secs_f64()
}

/// Events/s from the first to the last handled event, runtime with a no-op handler.
async fn consume_herald(bootstrap: &str, group: &str, count: u64, machinery: bool) -> f64 {
    let mut config = ConsumerConfig::new(bootstrap, group, &["bench.orders"]);
    config.park_keys_after_dead_letter = machinery;
    let handled = Arc::new(AtomicU64::new(0));
    let first: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let (h, f) = (Arc::clone(&handled), Arc::clone(&first));
    let mut consumer = Consumer::new(config).on(move |_event: Envelope<OrderPlaced>, _ctx| {
        f.get_or_init(Instant::now);
        h.fetch_add(1, Ordering::Relaxed);
        async { Ok(()) }
    });
    if machinery {
        // The default inbox (100,000 entries for an hour): full after the first 100,000
        // events, so every later record also evicts the oldest.
        consumer = consumer.inbox(Arc::new(MemoryInbox::default()));
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    while handled.load(Ordering::Relaxed) < count {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = first.get().expect("handled").elapsed();
    let _ = stop.send(());
    run.await.expect("task").expect("consumer");
    (count - 1) as f64 / elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn overhead_us(rate: f64, baseline: f64) -> f64 {
    (1.0 / rate - 1.0 / baseline) * 1e6
}

fn main() {
    let count: u64 = std::env::var("HERALD_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let only_setting = std::env::var("HERALD_BENCH_ONLY").ok();
    let only = only_setting.as_deref();
    let rounds: usize = std::env::var("HERALD_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    // The broker gets its own runtime (its own threads), as a separate process would; the
    // clients share the other, and every variant runs as a task spawned on it, so none has
    // a thread to itself that another lacks.
    let broker_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("broker")
        .enable_all()
        .build()
        .expect("runtime");
    let broker = broker_runtime.block_on(async {
        let mut config = BrokerConfig::default();
        config.groups.initial_rebalance_delay_ms = 0;
        config.durability = Durability::Interval(Duration::from_secs(1));
        TestBroker::start_with(config, ServerConfig::default()).await
    });
    let b = broker.bootstrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        println!("events {count}, rounds {rounds}, {IN_FLIGHT} sends in flight, broker in-process (page-cache durability)");
        // The consume input: `count` events in bench.orders.
        let fill = publish_raw(&b, "bench.orders", count).await;
        println!("fill bench.orders: {fill:.0} events/s");
        let (mut raw_pub, mut herald_pub, mut raw_con, mut routed_con, mut herald_con, mut full_con) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        if let Ok(only) = std::env::var("HERALD_BENCH_PROFILE") {
            // One variant alone, for a profiler (attach after this line): raw | herald | machinery.
            println!("profile: consuming in 2 s (pid {})", std::process::id());
            tokio::time::sleep(Duration::from_secs(2)).await;
            let rate = match only.as_str() {
                "raw" => consume_raw(&b, "profile", count, false).await,
                "raw-routed" => consume_raw(&b, "profile", count, true).await,
                "machinery" => consume_herald(&b, "profile", count, true).await,
                "publish-raw" => publish_raw(&b, "order.placed.raw", count).await,
                "publish-herald" => publish_herald(&b, count).await,
                _ => consume_herald(&b, "profile", count, false).await,
            };
            println!("consume {only}: {rate:.0}/s");
            return;
        }
        for round in 0..rounds {
            // Odd rounds run the variants in reverse order, so none always goes first.
            let reverse = round % 2 == 1;
            let (r, h) = if only == Some("consume") {
                (f64::NAN, f64::NAN)
            } else if reverse {
                let h = publish_herald(&b, count).await;
                (publish_raw(&b, "order.placed.raw", count).await, h)
            } else {
                let r = publish_raw(&b, "order.placed.raw", count).await;
                (r, publish_herald(&b, count).await)
            };
            if only != Some("consume") {
                println!("round {round} publish: raw {r:.0}/s, herald {h:.0}/s");
            }
            if only != Some("publish") {
                let mut rates = [0.0; 4];
                let mut order = [0, 1, 2, 3];
                if reverse {
                    order.reverse();
                }
                for variant in order {
                    let group = format!("{variant}-{round}");
                    rates[variant] = match variant {
                        0 => consume_raw(&b, &group, count, false).await,
                        1 => consume_raw(&b, &group, count, true).await,
                        2 => consume_herald(&b, &group, count, false).await,
                        _ => consume_herald(&b, &group, count, true).await,
                    };
                }
                let [rc, rr, hc, fc] = rates;
                println!(
                    "round {round} consume: raw {rc:.0}/s, raw routed by header {rr:.0}/s, herald no-op {hc:.0}/s, herald with machinery {fc:.0}/s"
                );
                raw_con.push(rc);
                routed_con.push(rr);
                herald_con.push(hc);
                full_con.push(fc);
            } else {
                for v in [&mut raw_con, &mut routed_con, &mut herald_con, &mut full_con] {
                    v.push(f64::NAN);
                }
            }
            raw_pub.push(r);
            herald_pub.push(h);
        }
        // Ratios are taken within each round (same minute, same machine state), then the
        // median over rounds; rates are medians of their own.
        let ratio = |a: &[f64], b: &[f64]| median(&mut a.iter().zip(b).map(|(x, y)| x / y).collect::<Vec<_>>());
        let (pub_ratio, con_ratio, full_ratio) =
            (ratio(&herald_pub, &raw_pub), ratio(&herald_con, &raw_con), ratio(&full_con, &raw_con));
        let machinery_cost = 1.0 - ratio(&full_con, &herald_con);
        let routed_ratio = ratio(&herald_con, &routed_con);
        let (rp, hp) = (median(&mut raw_pub), median(&mut herald_pub));
        let rr = median(&mut routed_con);
        let (rc, hc, fc) = (median(&mut raw_con), median(&mut herald_con), median(&mut full_con));
        println!("\nmedians over {rounds} rounds ({count} events each); ratios are medians of per-round ratios");
        println!("| measurement | events/s | ratio | overhead per event |");
        println!("|---|---|---|---|");
        println!("| raw rdkafka producer (baseline) | {rp:.0} | 1.00 | |");
        println!("| herald Publisher | {hp:.0} | {pub_ratio:.2} | {:.2} µs |", overhead_us(hp, rp));
        println!("| raw rdkafka consume loop (baseline) | {rc:.0} | 1.00 | |");
        println!(
            "| raw loop routing by the event-type header (second baseline) | {rr:.0} | 1.00 ({:.2} of the plain loop) | |",
            rr / rc
        );
        println!(
            "| herald Consumer, no-op handler | {hc:.0} | {con_ratio:.2} ({routed_ratio:.2} of the routed loop) | {:.2} µs ({:.2} µs) |",
            overhead_us(hc, rc),
            overhead_us(hc, rr)
        );
        println!(
            "| herald Consumer + inbox, retry, DLQ, parking (not triggered) | {fc:.0} | {full_ratio:.2} (costs {:.0}% vs no-op) | {:.2} µs |",
            machinery_cost * 100.0,
            overhead_us(fc, rc)
        );
    });
    drop(runtime);
    broker_runtime.block_on(async move { drop(broker) });
}
