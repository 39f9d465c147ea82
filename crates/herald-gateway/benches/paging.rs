//! The console's message browser paging through a 1,000,000-record partition: the cost
//! of one page (50 records) from an offset and from a time at the start, the middle and
//! the end of the log. Target: the same cost everywhere (the indexes find the place; no
//! page reads from the start). The baseline, in the same run, is the page at the start.
//!
//! `cargo bench -p herald-gateway --bench paging` (`HERALD_BENCH_RECORDS`, default
//! 1,000,000; `HERALD_BENCH_PAGES`, pages per place, default 200).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_broker::{BrokerConfig, Durability, RunningBroker, ServerConfig};
use herald_gateway::{GatewayConfig, Outgoing, RunningGateway, encode};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "../tests/common/mod.rs"]
mod common;

const BATCH: usize = 1_000;
/// The first record's time; each batch is one second later than the one before.
const T0: i64 = 1_796_000_000_000;

/// Appends `records` records to partition 0 of `topic`, `BATCH` per batch.
fn fill(broker: &herald_broker::internals::Broker, topic: &str, records: usize) {
    let (log, max_bytes) = broker.partition_for_produce(topic, 0).expect("partition");
    for batch in 0..records / BATCH {
        let outgoing: Vec<Outgoing> = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                let value =
                    format!(r#"{{"eventType":"order.placed","data":{{"orderId":"o-{n}","total":{}}}}}"#, n % 997);
                Outgoing {
                    key: Some(Bytes::from(format!("k{}", n % 100))),
                    value: Some(Bytes::from(value)),
                    headers: Vec::new(),
                }
            })
            .collect();
        let mut encoded = encode(&outgoing, T0 + batch as i64 * 1_000).expect("encode");
        log.append(&mut encoded, max_bytes, T0 + batch as i64 * 1_000).expect("append");
    }
}

/// The median time of `pages` GETs of `path` on one kept-alive connection.
async fn page_time(addr: SocketAddr, path: &str, pages: usize) -> Duration {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut stream = BufReader::new(stream);
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
    let mut times = Vec::with_capacity(pages);
    for _ in 0..pages {
        let started = Instant::now();
        stream.get_mut().write_all(request.as_bytes()).await.expect("send");
        let (status, body) = common::response(&mut stream).await;
        assert!(status.contains(" 200 "), "{path}: {status}");
        assert_eq!(String::from_utf8_lossy(&body).matches("<tr data-offset=").count(), 50, "{path}: a full page");
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let records: usize = std::env::var("HERALD_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let pages: usize = std::env::var("HERALD_BENCH_PAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    runtime.block_on(async {
        let config = BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            durability: Durability::Interval(Duration::from_secs(1)),
            ..BrokerConfig::default()
        };
        let server = ServerConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..ServerConfig::default() };
        let running = RunningBroker::start(config, server).await.expect("broker");
        let broker = Arc::clone(running.broker());
        broker.create_topic("big", Some(1), BTreeMap::new(), false).expect("topic");
        let started = Instant::now();
        let filler = Arc::clone(&broker);
        tokio::task::spawn_blocking(move || fill(&filler, "big", records)).await.expect("fill");
        println!("{records} records written in {:.1} s", started.elapsed().as_secs_f64());
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let gateway = RunningGateway::start(GatewayConfig::default().listen(listen), broker).await.expect("gateway");
        let at = gateway.local_addr();
        let last_batch = (records / BATCH - 1) as i64;
        let places = [
            ("start", 0i64, 0i64),
            ("middle", records as i64 / 2, last_batch / 2),
            ("end", records as i64 - 50, last_batch),
        ];
        let mut rows = Vec::new();
        for (by, path) in [("offset", "offset"), ("time", "time")] {
            let mut base = None;
            for (name, offset, batch) in places {
                let path = match by {
                    "offset" => format!("/topics/big/messages?partition=0&{path}={offset}"),
                    _ => format!("/topics/big/messages?partition=0&{path}={}", T0 + batch * 1_000),
                };
                page_time(at, &path, 10).await; // warm the page cache and the connection
                let took = page_time(at, &path, pages).await;
                let base = *base.get_or_insert(took);
                println!("by {by}, {name}: median {:.2} ms per page", took.as_secs_f64() * 1e3);
                rows.push(format!(
                    "| by {by}, {name} | {:.2} ms | {:.2}x |",
                    took.as_secs_f64() * 1e3,
                    took.as_secs_f64() / base.as_secs_f64()
                ));
            }
        }
        println!("| page of 50 | median | vs the start |");
        for row in rows {
            println!("{row}");
        }
        gateway.shutdown().await;
        running.shutdown().await.expect("shutdown");
    });
}
