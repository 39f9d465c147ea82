//! SSE fan-out against the transport's ceiling, in the same run, on this machine: N
//! streams on one topic while 1,000 events/s are published, through herald's gateway
//! (records appended to a partition in-process; a shared tail reads them) and through a
//! minimal axum SSE server fed by a tokio broadcast channel. The clients run in a child
//! process (this binary with `HERALD_FANOUT_CLIENT`), so the server's memory per stream
//! is its own and both sides stay under the file-descriptor limit.
//!
//! `cargo bench -p herald-gateway --bench fanout` (`HERALD_FANOUT_STREAMS=1000,10000`,
//! `HERALD_FANOUT_SECONDS=5`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event, Sse};
use herald_broker::{BrokerConfig, Durability};
use herald_gateway::GatewayConfig;
use tokio::sync::{broadcast, mpsc};

const RATE_PER_SECOND: u64 = 1_000;

fn micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// What the clients saw.
#[derive(Debug, Clone, Copy)]
struct Seen {
    events_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Client mode: opens `streams` streams on `url`, says "open", reads for `seconds`, and
/// prints events, p50 and p99 (µs).
async fn clients(addr: SocketAddr, path: String, streams: usize, seconds: u64) {
    let mut tasks = Vec::new();
    let (ready, mut opened) = mpsc::channel::<()>(streams);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    for _ in 0..streams {
        let (path, ready, stop) = (path.clone(), ready.clone(), Arc::clone(&stop));
        tasks.push(tokio::spawn(async move {
            let mut stream = common::Stream::open(addr, &path, &[]).await;
            let _ = ready.send(()).await;
            let mut latencies = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Some(event) = stream.next(Duration::from_millis(200)).await else { continue };
                let digits: String =
                    event.data.split("\"t\":").nth(1).unwrap_or("").chars().take_while(char::is_ascii_digit).collect();
                if let Ok(sent) = digits.parse::<u64>() {
                    latencies.push(micros().saturating_sub(sent));
                }
            }
            latencies
        }));
    }
    for _ in 0..streams {
        opened.recv().await;
    }
    println!("open");
    // The parent waits 1 s, publishes for `seconds`; then 2 s to drain.
    tokio::time::sleep(Duration::from_secs(seconds + 3)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap_or_default());
    }
    all.sort_unstable();
    let at = |q: f64| all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0);
    println!("{} {} {}", all.len(), at(0.5), at(0.99));
}

/// Runs the clients as a child against `addr`, publishing with `publish` once they are
/// open; returns what they saw and the server's memory per stream.
async fn measure(
    addr: SocketAddr,
    path: &str,
    streams: usize,
    seconds: u64,
    publish: impl Fn(u64) + Send + 'static,
) -> (Seen, f64) {
    let before = rss_bytes();
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env("HERALD_FANOUT_CLIENT", format!("{addr} {path} {streams} {seconds}"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("clients");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let open = tokio::task::block_in_place(|| lines.next());
    assert_eq!(open.and_then(Result::ok).as_deref(), Some("open"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_stream = rss_bytes().saturating_sub(before) as f64 / streams as f64;
    let publisher = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE_PER_SECOND));
        for n in 0..seconds * RATE_PER_SECOND {
            tick.tick().await;
            publish(n);
        }
    });
    let result = tokio::task::block_in_place(|| lines.next()).and_then(Result::ok).unwrap_or_default();
    publisher.await.expect("publisher");
    let _ = child.wait();
    let numbers: Vec<f64> = result.split_whitespace().filter_map(|n| n.parse().ok()).collect();
    let [events, p50, p99] = numbers[..] else { panic!("client output {result:?}") };
    (Seen { events_per_second: events / seconds as f64, p50_ms: p50 / 1000.0, p99_ms: p99 / 1000.0 }, per_stream)
}

/// The baseline: axum SSE, one broadcast channel, a forwarding task per stream.
async fn baseline(streams: usize, seconds: u64) -> (Seen, f64) {
    let (sender, _) = broadcast::channel::<(Arc<str>, Arc<str>)>(4096);
    let feed = sender.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::get(move || {
            let mut receiver = feed.subscribe();
            async move {
                let (tx, rx) = mpsc::channel::<(Arc<str>, Arc<str>)>(1024);
                tokio::spawn(async move {
                    while let Ok(data) = receiver.recv().await {
                        if tx.send(data).await.is_err() {
                            return;
                        }
                    }
                });
                Sse::new(Body(rx))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    // TCP_NODELAY, as the gateway sets it.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    // The same events herald sends: its record JSON and a one-partition token.
    let measured = measure(addr, "/events", streams, seconds, move |n| {
        let data = format!(
            "{{\"partition\":0,\"offset\":{n},\"timestamp\":{},\"headers\":{{}},\"value\":{{\"n\":{n},\"t\":{}}},\"valueEncoding\":\"json\"}}",
            micros() / 1000,
            micros()
        );
        let _ = sender.send((data.into(), format!("0:{}", n + 1).into()));
    })
    .await;
    server.abort();
    measured
}

struct Body(mpsc::Receiver<(Arc<str>, Arc<str>)>);

impl futures_core::Stream for Body {
    type Item = Result<Event, std::convert::Infallible>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|d| d.map(|(data, id)| Ok(Event::default().id(&*id).data(&*data))))
    }
}

/// Herald: a one-partition topic, records appended in-process as a producer's would be.
async fn herald(streams: usize, seconds: u64) -> (Seen, f64) {
    let broker_config =
        BrokerConfig { durability: Durability::Interval(Duration::from_millis(100)), ..BrokerConfig::default() };
    let served = common::Served::start_with(broker_config, GatewayConfig::default().streams_max(streams + 10)).await;
    served.broker().create_topic("fanout", Some(1), BTreeMap::new(), false).expect("topic");
    let broker = Arc::clone(served.broker.as_ref().expect("running").broker());
    let measured = measure(served.http, "/api/v1/topics/fanout/events", streams, seconds, move |n| {
        let value = format!("{{\"n\":{n},\"t\":{}}}", micros());
        let record = herald_gateway::Outgoing { value: Some(value.into()), ..Default::default() };
        let mut batch = herald_gateway::encode(&[record], herald_broker::internals::now_ms()).expect("encode");
        let (partition, max) = broker.partition_for_produce("fanout", 0).expect("partition");
        partition.append(&mut batch, max, herald_broker::internals::now_ms()).expect("append");
        broker.notify_data();
    })
    .await;
    served.stop().await;
    measured
}

fn main() {
    if let Ok(spec) = std::env::var("HERALD_FANOUT_CLIENT") {
        let parts: Vec<&str> = spec.split(' ').collect();
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        runtime.block_on(clients(
            parts[0].parse().expect("addr"),
            parts[1].to_string(),
            parts[2].parse().expect("n"),
            parts[3].parse().expect("s"),
        ));
        return;
    }
    let seconds: u64 = std::env::var("HERALD_FANOUT_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let counts: Vec<usize> = std::env::var("HERALD_FANOUT_STREAMS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    println!("| measurement | herald | broadcast-fed axum SSE | ratio |");
    println!("|---|---|---|---|");
    for streams in counts {
        let (base, base_mem) = runtime.block_on(baseline(streams, seconds));
        let (ours, our_mem) = runtime.block_on(herald(streams, seconds));
        println!(
            "| {streams} streams, delivered events/s | {:.0} | {:.0} | {:.2}x |",
            ours.events_per_second,
            base.events_per_second,
            ours.events_per_second / base.events_per_second
        );
        println!(
            "| {streams} streams, p50 / p99 ms | {:.1} / {:.1} | {:.1} / {:.1} | p99 {:.2}x |",
            ours.p50_ms,
            ours.p99_ms,
            base.p50_ms,
            base.p99_ms,
            ours.p99_ms / base.p99_ms.max(0.001)
        );
        println!(
            "| {streams} streams, server memory per stream | {:.1} KiB | {:.1} KiB | {:.2}x |",
            our_mem / 1024.0,
            base_mem / 1024.0,
            our_mem / base_mem.max(1.0)
        );
    }
}
