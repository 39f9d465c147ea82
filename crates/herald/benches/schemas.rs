//! What validation on publish costs: `Publisher::publish` with a schema registry (each
//! event checked against its registered JSON Schema, a `schema-id` header added) against
//! the same publisher without one, in the same run, against an in-process Herald broker
//! (page-cache durability) and registry. Rounds interleave, medians are compared. Target:
//! at least 0.9x (validation costs at most 10% of publish throughput).
//!
//! `cargo bench -p herald --bench schemas` (`HERALD_BENCH_EVENTS`, default 200,000;
//! `HERALD_BENCH_ROUNDS`, default 3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use herald::registry::Framing;
use herald::testkit::TestBroker;
use herald::{Publisher, PublisherConfig};
use herald_broker::{BrokerConfig, Durability, ServerConfig};
use herald_gateway::{GatewayConfig, RunningRegistry};
use herald_registry::Registry;
use tokio::task::JoinSet;

mod common;

use common::{IN_FLIGHT, OrderPlaced, event};

/// Publishes `count` events with up to IN_FLIGHT in flight; events/s.
async fn publish(publisher: &Publisher, count: u64) -> f64 {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for n in 0..count {
        if tasks.len() >= IN_FLIGHT {
            tasks.join_next().await.expect("a task").expect("send task");
        }
        let publisher = publisher.clone();
        tasks.spawn(async move { publisher.publish(event(n)).await.expect("delivered") });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("send task");
    }
    count as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let count: u64 = std::env::var("HERALD_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let rounds: usize = std::env::var("HERALD_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let (broker, serving) = server.block_on(async {
        let config =
            BrokerConfig { durability: Durability::Interval(Duration::from_secs(1)), ..BrokerConfig::default() };
        let broker = TestBroker::start_with(config, ServerConfig::default()).await;
        let registry = Registry::open_in(dir.path()).expect("registry");
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let serving =
            RunningRegistry::start(listen, &GatewayConfig::default(), Arc::new(registry)).await.expect("listener");
        (broker, serving)
    });
    let (b, url) = (broker.bootstrap(), format!("http://{}", serving.local_addr()));
    let clients = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    clients.block_on(async move {
        let plain = Publisher::new(PublisherConfig::default().brokers(&b).client_id("bench")).expect("publisher");
        let checked = Publisher::new(PublisherConfig::default().brokers(&b).client_id("bench").schema_registry(&url))
            .expect("publisher");
        checked.derive_schema::<OrderPlaced>();
        let framed_config = PublisherConfig::default().brokers(&b).client_id("bench").schema_registry(&url);
        let framed = Publisher::new(framed_config.schema_framing(Framing::Confluent)).expect("publisher");
        framed.derive_schema::<OrderPlaced>();
        let (mut without, mut with, mut with_framing) = (Vec::new(), Vec::new(), Vec::new());
        println!("events {count}, rounds {rounds}, {IN_FLIGHT} publishes in flight");
        for round in 0..rounds {
            // Odd rounds run the variants in reverse order, so none always goes first.
            let mut order = [0, 1, 2];
            if round % 2 == 1 {
                order.reverse();
            }
            let mut rates = [0.0; 3];
            for variant in order {
                rates[variant] = publish([&plain, &checked, &framed][variant], count).await;
            }
            println!(
                "round {round}: without a registry {:.0}/s, validated (schema-id header) {:.0}/s, validated (Confluent framing) {:.0}/s",
                rates[0], rates[1], rates[2]
            );
            without.push(rates[0]);
            with.push(rates[1]);
            with_framing.push(rates[2]);
        }
        let (w, v, f) = (median(&mut without), median(&mut with), median(&mut with_framing));
        println!("| publish, validated (header) vs not | {v:.0} vs {w:.0} events/s | {:.2}x |", v / w);
        println!("| publish, validated (Confluent framing) vs not | {f:.0} vs {w:.0} events/s | {:.2}x |", f / w);
    });
}
