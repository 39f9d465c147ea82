//! The TCP side: accept, read frames under limits, answer in order, shut down gracefully.
//!
//! Each connection has a reader and a writer. The reader takes one frame at a time
//! (length prefix first, checked before the body is read) and applies it to the broker
//! on a blocking thread before reading the next, so a connection's requests take effect
//! in the order sent. Work that only waits (a produce's fsync, a long-polling fetch)
//! continues as a task while later requests are read; the writer sends responses in
//! request order. At most `in_flight_max` responses wait per connection, after which the
//! reader stops reading (backpressure). A bad frame closes that connection only, with one
//! log line, after the responses before it are written. Limits, each with a default:
//! connections, request size, in-flight requests, idle time between requests and time to
//! finish a started request or a response write.
//!
//! Every wait is bounded. A peer that closes is noticed by the reader, even while its
//! requests wait in the queue (the socket is watched then too); its connection is released
//! at once and its waiting requests (a parked JoinGroup, a long poll, a produce's fsync)
//! are dropped unanswered. A shutdown stops reading, has the broker give up every wait
//! ([`Broker::begin_shutdown`]), lets connections write what they owe for up to
//! `shutdown_grace`, then closes the rest; maintenance (session expiry among it) runs
//! until the connections are gone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::broker::{Broker, now_ms};
use crate::request::{FrameError, REQUEST_BYTES_MAX_DEFAULT, Reply, frame_length, handle_frame_from};

/// Settings of the Kafka listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen; 127.0.0.1:9092 by default (never all interfaces unless told).
    pub listen: SocketAddr,
    /// Open connections at most; further ones are closed on accept.
    pub connections_max: usize,
    /// Largest request frame; a larger length prefix closes the connection unread.
    pub request_bytes_max: u32,
    /// Requests of one connection being answered at once; the next waits.
    pub in_flight_max: usize,
    /// A connection idle this long between requests is closed (Kafka: `connections.max.idle.ms`);
    /// also the longest one response may take to write.
    pub idle_timeout: Duration,
    /// A request must arrive whole within this time once its first byte has.
    pub request_timeout: Duration,
    /// How often retention runs (Kafka: `log.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
    /// How long a shutdown lets connections write the answers they owe before closing them.
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            connections_max: 1_000,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            in_flight_max: 32,
            idle_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
            retention_check_interval: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A running listener. Dropping it without [`Server::shutdown`] stops accepting too.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    broker: Arc<Broker>,
    stop: watch::Sender<bool>,
    stop_maintenance: watch::Sender<bool>,
    task: JoinHandle<()>,
    maintenance: JoinHandle<()>,
    connections: Arc<Connections>,
}

impl Server {
    /// Starts accepting on `listener`, answering from `broker`; also runs the broker's
    /// periodic maintenance (interval fsyncs, retention, producer expiry, group sessions).
    pub fn start(listener: TcpListener, config: ServerConfig, broker: Arc<Broker>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let (stop_maintenance, maintenance_stopped) = watch::channel(false);
        let config = Arc::new(config);
        let connections = Arc::new(Connections::new(config.connections_max));
        let maintenance = tokio::spawn(maintain(Arc::clone(&broker), Arc::clone(&config), maintenance_stopped));
        let accept = accept_loop(listener, config, Arc::clone(&broker), Arc::clone(&connections), stopped);
        let task = tokio::spawn(accept);
        Ok(Self { local_addr, broker, stop, stop_maintenance, task, maintenance, connections })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }

    /// Stops accepting and reading, answers every parked request (see
    /// [`Broker::begin_shutdown`]), lets each connection write what it owes for up to
    /// `shutdown_grace`, closes the connections still open after that, then stops
    /// maintenance. Returns once every connection is closed.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.broker.begin_shutdown();
        let _ = self.task.await;
        let _ = self.stop_maintenance.send(true);
        let _ = self.maintenance.await;
    }
}

/// One open connection's slot: frees it and logs the count when dropped, also when the
/// connection's task is aborted at the end of a shutdown's grace.
struct Slot {
    _permit: tokio::sync::OwnedSemaphorePermit,
    slots: Arc<Connections>,
    peer: SocketAddr,
}

impl Slot {
    fn open(permit: tokio::sync::OwnedSemaphorePermit, slots: Arc<Connections>, peer: SocketAddr) -> Self {
        tracing::debug!(target: CONNECTIONS, %peer, open = slots.open(), "connection opened");
        metrics::gauge!("herald_kafka_connections").increment(1.0);
        Self { _permit: permit, slots, peer }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The count is read after the permit is released (fields drop after this body), so
        // it says one more than is open: subtract it here.
        let open = self.slots.open().saturating_sub(1);
        tracing::debug!(target: CONNECTIONS, peer = %self.peer, open, "connection closed");
        metrics::gauge!("herald_kafka_connections").decrement(1.0);
    }
}

/// The connection slots: a semaphore whose taken permits are the open connections.
#[derive(Debug)]
struct Connections {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Connections {
    fn new(max: usize) -> Self {
        Self { slots: Arc::new(Semaphore::new(max)), max }
    }

    fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

async fn maintain(broker: Arc<Broker>, config: Arc<ServerConfig>, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(broker.config().maintenance_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention = now_ms();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        let retention = now.saturating_sub(last_retention) >= config.retention_check_interval.as_millis() as i64;
        if retention {
            last_retention = now;
        }
        let broker = Arc::clone(&broker);
        let _ = tokio::task::spawn_blocking(move || broker.maintain(now, retention)).await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    broker: Arc<Broker>,
    slots: Arc<Connections>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut connections = tokio::task::JoinSet::new();
    let connection_stopped = stopped.clone();
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&slots.slots).try_acquire_owned() else {
                    tracing::warn!(%peer, limit = config.connections_max, "connection limit reached; closing");
                    drop(stream);
                    continue;
                };
                let slot = Slot::open(permit, Arc::clone(&slots), peer);
                let (config, broker, stopped) = (Arc::clone(&config), Arc::clone(&broker), connection_stopped.clone());
                connections.spawn(async move {
                    let result = serve_connection(stream, &config, broker, stopped).await;
                    drop(slot);
                    if let Err(reason) = result {
                        tracing::info!(%peer, %reason, "closed connection");
                    }
                });
            }
        }
        // Reap finished connections so the set does not grow with every one ever made.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drain = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(config.shutdown_grace, drain).await.is_err() {
        tracing::warn!(open = connections.len(), grace = ?config.shutdown_grace, "shutdown grace is over; closing connections");
        connections.abort_all();
        while connections.join_next().await.is_some() {}
    }
}

/// The tracing target of one debug line per opened and closed connection, with the count
/// of open ones (tests follow it).
pub const CONNECTIONS: &str = "herald_broker::connections";

/// Why a connection ended other than by the peer closing it.
#[derive(Debug, thiserror::Error)]
enum ConnectionEnd {
    #[error("{0}")]
    Frame(#[from] FrameError),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("request not complete within {0:?}")]
    SlowRequest(Duration),
    #[error("response not written within {0:?}")]
    SlowWrite(Duration),
    #[error("request handler failed: {0}")]
    Handler(String),
}

/// How the reader stopped without an error.
enum ReadEnd {
    /// The peer closed its side (or the writer found it gone): nobody will read answers.
    PeerClosed,
    /// The server is shutting down: answers still owed are written.
    Stopped,
}

/// A task that is cancelled when its handle is dropped, so a closed connection takes its
/// waiting requests with it.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A response on its way to the writer, in request order, with when its request arrived.
enum Outgoing {
    Ready(Option<Bytes>, Received),
    Waiting(AbortOnDrop<Result<Option<Bytes>, FrameError>>, Received),
}

/// When a request arrived, and which API it called (for the request metrics).
#[derive(Debug, Clone, Copy)]
struct Received {
    at: Instant,
    api: &'static str,
}

async fn serve_connection(
    stream: TcpStream,
    config: &ServerConfig,
    broker: Arc<Broker>,
    stopped: watch::Receiver<bool>,
) -> Result<(), ConnectionEnd> {
    stream.set_nodelay(true)?;
    let (mut reader, writer) = stream.into_split();
    let (outgoing, queue) = mpsc::channel(config.in_flight_max.max(1));
    let mut writer = AbortOnDrop(tokio::spawn(write_responses(writer, queue, config.idle_timeout)));
    let read = tokio::select! {
        read = read_requests(&mut reader, config, broker, stopped, outgoing) => read,
        // The writer ends first only when a write failed: the peer is gone.
        written = &mut writer.0 => return joined(written),
    };
    match read {
        // Dropping the writer drops the answers and cancels the requests still waiting.
        Ok(ReadEnd::PeerClosed) | Err(ConnectionEnd::Io(_)) => read.map(drop),
        // Write what a shutdown owes, unless the peer leaves first; the grace bounds this.
        Ok(ReadEnd::Stopped) => tokio::select! {
            written = &mut writer.0 => joined(written),
            () = peer_closed(&mut reader) => Ok(()),
        },
        // A bad frame: write the answers before it, for at most `request_timeout` (a parked
        // request may wait far longer, and unread bytes can hide the peer's close).
        Err(_) => tokio::select! {
            written = &mut writer.0 => read.map(drop).and(joined(written)),
            () = peer_closed(&mut reader) => read.map(drop),
            () = tokio::time::sleep(config.request_timeout) => read.map(drop),
        },
    }
}

fn joined(written: Result<Result<(), ConnectionEnd>, tokio::task::JoinError>) -> Result<(), ConnectionEnd> {
    written.map_err(|e| ConnectionEnd::Handler(e.to_string()))?
}

/// Resolves when the peer has closed its side (end of stream or a reset). Bytes waiting to
/// be read hide a close behind them, so then it never resolves: the caller's other
/// deadlines bound the wait.
async fn peer_closed(reader: &mut OwnedReadHalf) {
    let mut byte = [0u8; 1];
    match reader.peek(&mut byte).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

async fn read_requests(
    reader: &mut OwnedReadHalf,
    config: &ServerConfig,
    broker: Arc<Broker>,
    mut stopped: watch::Receiver<bool>,
    outgoing: mpsc::Sender<Outgoing>,
) -> Result<ReadEnd, ConnectionEnd> {
    // As Kafka shows it to group tools.
    let client_host = reader.peer_addr().map(|a| format!("/{}", a.ip())).unwrap_or_default();
    loop {
        let body = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return Ok(ReadEnd::Stopped),
            body = read_frame(reader, config) => match body? {
                Some(body) => body,
                None => return Ok(ReadEnd::PeerClosed),
            },
        };
        // Room for its answer before it is applied; while there is none, watch the socket
        // so a peer that closes while its requests wait is noticed.
        let slot = match outgoing.try_reserve() {
            Ok(slot) => slot,
            Err(TrySendError::Closed(())) => return Ok(ReadEnd::PeerClosed),
            Err(TrySendError::Full(())) => tokio::select! {
                _ = stopped.wait_for(|stop| *stop) => return Ok(ReadEnd::Stopped),
                () = peer_closed(reader) => return Ok(ReadEnd::PeerClosed),
                slot = outgoing.reserve() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return Ok(ReadEnd::PeerClosed),
                },
            },
        };
        metrics::counter!("herald_kafka_bytes_received_total").increment(4 + body.len() as u64);
        let api = body.get(..2).map_or("unknown", |key| crate::request::api_name(i16::from_be_bytes([key[0], key[1]])));
        let received = Received { at: Instant::now(), api };
        let handler_broker = Arc::clone(&broker);
        let host = client_host.clone();
        let reply = tokio::task::spawn_blocking(move || handle_frame_from(&handler_broker, Bytes::from(body), &host))
            .await
            .map_err(|e| ConnectionEnd::Handler(e.to_string()))??;
        slot.send(match reply {
            Reply::Ready(bytes) => Outgoing::Ready(bytes, received),
            Reply::Pending(future) => Outgoing::Waiting(AbortOnDrop(tokio::spawn(future)), received),
        });
    }
}

/// Reads one request frame: `None` when the peer closed before or inside it.
async fn read_frame(reader: &mut OwnedReadHalf, config: &ServerConfig) -> Result<Option<Vec<u8>>, ConnectionEnd> {
    let mut prefix = [0u8; 4];
    match tokio::time::timeout(config.idle_timeout, reader.read_exact(&mut prefix)).await {
        Err(_) => return Err(ConnectionEnd::Idle(config.idle_timeout)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(result) => {
            result?;
        }
    }
    let length = frame_length(prefix, config.request_bytes_max)?;
    // The buffer grows with the bytes that actually arrive, so a large length prefix
    // alone does not reserve memory.
    let mut body = Vec::with_capacity(length.min(64 * 1024));
    let mut limited = reader.take(length as u64);
    tokio::time::timeout(config.request_timeout, limited.read_to_end(&mut body))
        .await
        .map_err(|_| ConnectionEnd::SlowRequest(config.request_timeout))??;
    Ok((body.len() == length).then_some(body))
}

async fn write_responses(
    mut writer: OwnedWriteHalf,
    mut queue: mpsc::Receiver<Outgoing>,
    write_timeout: Duration,
) -> Result<(), ConnectionEnd> {
    while let Some(next) = queue.recv().await {
        let (bytes, received) = match next {
            Outgoing::Ready(bytes, received) => (bytes, received),
            Outgoing::Waiting(mut task, received) => {
                ((&mut task.0).await.map_err(|e| ConnectionEnd::Handler(e.to_string()))??, received)
            }
        };
        // Counted before the write, so a client that has its answer sees it counted.
        metrics::counter!("herald_kafka_requests_total", "api" => received.api).increment(1);
        metrics::histogram!("herald_kafka_request_seconds", "api" => received.api)
            .record(received.at.elapsed().as_secs_f64());
        if let Some(bytes) = bytes {
            // Prefix and body in one vectored write, without copying the body.
            let prefix = (bytes.len() as u32).to_be_bytes();
            let length = bytes.len();
            tokio::time::timeout(write_timeout, writer.write_all_buf(&mut Buf::chain(&prefix[..], bytes)))
                .await
                .map_err(|_| ConnectionEnd::SlowWrite(write_timeout))??;
            metrics::counter!("herald_kafka_bytes_sent_total").increment(4 + length as u64);
            tracing::trace!(bytes = length, micros = received.at.elapsed().as_micros() as u64, "responded");
        }
    }
    writer.shutdown().await.ok();
    Ok(())
}
