//! A broker and its gateway on 127.0.0.1, and a small HTTP/1.1 client that reads
//! responses and Server-Sent Events off a raw socket (so a test can cut a stream
//! anywhere).

#![allow(dead_code, unreachable_pub)] // each test file uses its own part

#[path = "../../../herald-cli/tests/common/webdriver.rs"]
pub mod webdriver;

#[allow(unused_imports)] // not every test binary runs tools
pub use webdriver::tool;

use std::net::SocketAddr;
use std::time::Duration;

use herald_broker::internals::Broker;
use herald_broker::{BrokerConfig, RunningBroker, ServerConfig};
use herald_gateway::{GatewayConfig, RunningGateway};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A broker with its gateway.
pub struct Served {
    pub broker: Option<RunningBroker>,
    pub gateway: Option<RunningGateway>,
    pub http: SocketAddr,
    pub kafka: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Served {
    pub async fn start(config: GatewayConfig) -> Self {
        Self::start_with(BrokerConfig::default(), config).await
    }

    pub async fn start_with(broker_config: BrokerConfig, config: GatewayConfig) -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let broker_config = BrokerConfig { data_dir: dir.path().to_path_buf(), ..broker_config };
        let server = ServerConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..ServerConfig::default() };
        let broker = RunningBroker::start(broker_config, server).await.expect("broker");
        let config = config.listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        let gateway = RunningGateway::start(config, std::sync::Arc::clone(broker.broker())).await.expect("gateway");
        Self {
            http: gateway.local_addr(),
            kafka: broker.local_addr(),
            broker: Some(broker),
            gateway: Some(gateway),
            _dir: dir,
        }
    }

    pub fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("running").broker()
    }

    pub async fn stop(mut self) {
        if let Some(gateway) = self.gateway.take() {
            gateway.shutdown().await;
        }
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await.expect("clean shutdown");
        }
    }
}

/// A whole response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one request and reads the whole response.
pub async fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !given("host") {
        request.push_str(&format!("host: {addr}\r\n"));
    }
    if !given("connection") {
        request.push_str("connection: close\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    if let Some(body) = body {
        // A server may answer (413) before reading a large body.
        let _ = stream.write_all(body).await;
    }
    let mut reader = BufReader::new(stream);
    let (status, headers) = head(&mut reader).await;
    let chunked = headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let length =
        headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("content-length")).and_then(|(_, v)| v.parse().ok());
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = next_chunk(&mut reader).await {
            body.extend(chunk);
        }
    } else if let Some(length) = length {
        // Some servers (chromedriver) keep the connection open despite `connection: close`.
        body = vec![0; length];
        reader.read_exact(&mut body).await.expect("the body");
    } else {
        let _ = reader.read_to_end(&mut body).await;
    }
    Reply { status, headers, body }
}

/// Reads one response with a `content-length` body off a kept-alive connection (the
/// benches' load generators): its status line and its body.
pub async fn response(stream: &mut BufReader<TcpStream>) -> (String, Vec<u8>) {
    let (mut status, mut line, mut length) = (String::new(), String::new(), 0usize);
    stream.read_line(&mut status).await.expect("status");
    loop {
        line.clear();
        stream.read_line(&mut line).await.expect("header");
        if line.trim().is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().expect("length");
        }
    }
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.expect("body");
    (status, body)
}

/// JSON in, JSON out.
pub async fn json(addr: SocketAddr, method: &str, path: &str, body: &serde_json::Value) -> Reply {
    let body = body.to_string();
    call(addr, method, path, &[("content-type", "application/json")], Some(body.as_bytes())).await
}

async fn head(reader: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header");
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            return (status, headers);
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
}

async fn next_chunk(reader: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if reader.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim(), 16).ok()?;
    if size == 0 {
        return None;
    }
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).await.ok()?;
    chunk.truncate(size);
    Some(chunk)
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// An open event stream.
pub struct Stream {
    pub status: u16,
    reader: BufReader<TcpStream>,
    pending: Vec<u8>,
}

impl Stream {
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut reader = BufReader::new(stream);
        let (status, _) = head(&mut reader).await;
        Self { status, reader, pending: Vec::new() }
    }

    /// The next event (comments skipped), or `None` when the stream ends or nothing
    /// comes within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Event> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                if let Some(event) = parse(&String::from_utf8_lossy(&block)) {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(wait, next_chunk(&mut self.reader)).await.ok()??;
            self.pending.extend(chunk);
        }
    }
}

/// An event block; `None` for comments and a bare `retry:`.
fn parse(block: &str) -> Option<Event> {
    let mut event = Event::default();
    for line in block.lines() {
        let (field, value) = line.split_once(':').map_or((line, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
        match field {
            "" => continue,
            "id" => event.id = Some(value.to_string()),
            "event" => event.event = Some(value.to_string()),
            "data" => {
                if !event.data.is_empty() {
                    event.data.push('\n');
                }
                event.data.push_str(value);
            }
            _ => {}
        }
    }
    (event.event.is_some() || !event.data.is_empty()).then_some(event)
}

/// Produces `records` (JSON objects) to `topic` over HTTP; returns (partition, offset) of each.
pub async fn produce(addr: SocketAddr, topic: &str, records: Vec<serde_json::Value>) -> Vec<(i64, i64)> {
    let reply =
        json(addr, "POST", &format!("/api/v1/topics/{topic}/messages"), &serde_json::json!({ "records": records }))
            .await;
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    reply.json()["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| (o["partition"].as_i64().expect("partition"), o["offset"].as_i64().expect("offset")))
        .collect()
}

/// A small xorshift generator, seeded.
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
