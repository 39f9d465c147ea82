//! `GET /schemas/ids/{id}` from Herald's schema registry against a minimal axum handler
//! returning the same bytes, with the same HTTP load generator in the same run: 32
//! kept-alive HTTP/1.1 connections, each sending its next request when the last answer
//! arrived, for a few seconds; rounds interleaved, medians compared. Target: at least 0.8x.
//!
//! `cargo bench -p herald-gateway --bench registry` (`HERALD_BENCH_SECONDS`, default 3;
//! `HERALD_BENCH_ROUNDS`, default 3).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::header;
use axum::routing::get;
use herald_gateway::{GatewayConfig, RunningRegistry};
use herald_registry::{NewSchema, Registry, SchemaType};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "../tests/common/mod.rs"]
mod common;

const CONNECTIONS: usize = 32;

/// Requests per second over `seconds`, `CONNECTIONS` connections asking for `path`.
async fn load(addr: SocketAddr, path: &'static str, seconds: u64) -> f64 {
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (done, count) = (Arc::clone(&done), Arc::clone(&count));
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut stream = BufReader::new(stream);
            let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n");
            while !done.load(Ordering::Relaxed) {
                stream.get_mut().write_all(request.as_bytes()).await.expect("send");
                common::response(&mut stream).await;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    done.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let answered = count.load(Ordering::Relaxed);
    for task in tasks {
        task.await.expect("connection");
    }
    answered as f64 / elapsed
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let seconds: u64 = std::env::var("HERALD_BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let rounds: usize = std::env::var("HERALD_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let servers = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let (herald, minimal, _serving) = servers.block_on(async {
        let registry = Registry::open_in(dir.path())
        .expect("registry");
        let schema = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"id","type":"string"},{"name":"qty","type":"int","default":0},{"name":"note","type":["null","string"],"default":null}]}"#;
        let new = NewSchema { schema: schema.into(), kind: SchemaType::Avro, references: Vec::new() };
        let id = registry.register("orders-value", &new, None).expect("registered");
        assert_eq!(id, 1);
        let stored = registry.schema(id).expect("stored");
        let listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let serving = RunningRegistry::start(listen, &GatewayConfig::default(), Arc::new(registry)).await.expect("listener");
        // The baseline: the same answer's bytes from a handler that does nothing else.
        let body: &'static str = Box::leak(serde_json::json!({ "schema": stored.schema }).to_string().into_boxed_str());
        let app = Router::new().route(
            "/schemas/ids/{id}",
            get(move || async move { ([(header::CONTENT_TYPE, "application/vnd.schemaregistry.v1+json")], body) }),
        );
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        let minimal = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        (serving.local_addr(), minimal, serving)
    });
    let clients = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    clients.block_on(async move {
        let (mut ours, mut base) = (Vec::new(), Vec::new());
        println!("{CONNECTIONS} connections, {seconds} s per measurement, {rounds} rounds");
        for round in 0..rounds {
            let (h, m) = if round % 2 == 0 {
                let h = load(herald, "/schemas/ids/1", seconds).await;
                (h, load(minimal, "/schemas/ids/1", seconds).await)
            } else {
                let m = load(minimal, "/schemas/ids/1", seconds).await;
                (load(herald, "/schemas/ids/1", seconds).await, m)
            };
            println!("round {round}: herald {h:.0} req/s, minimal axum handler {m:.0} req/s");
            ours.push(h);
            base.push(m);
        }
        let (h, m) = (median(&mut ours), median(&mut base));
        println!("| GET /schemas/ids/{{id}} | {h:.0} vs {m:.0} req/s | {:.2}x |", h / m);
    });
}
