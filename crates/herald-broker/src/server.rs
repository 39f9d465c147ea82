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
//! finish a started request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
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
    /// A connection idle this long between requests is closed (Kafka: `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// A request must arrive whole within this time once its first byte has.
    pub request_timeout: Duration,
    /// How often retention runs (Kafka: `log.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
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
        }
    }
}

/// A running listener. Dropping it without [`Server::shutdown`] stops accepting too.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    maintenance: JoinHandle<()>,
}

impl Server {
    /// Starts accepting on `listener`, answering from `broker`; also runs the broker's
    /// periodic maintenance (interval fsyncs, retention, producer expiry).
    pub fn start(listener: TcpListener, config: ServerConfig, broker: Arc<Broker>) -> std::io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let config = Arc::new(config);
        let maintenance = tokio::spawn(maintain(Arc::clone(&broker), Arc::clone(&config), stopped.clone()));
        let task = tokio::spawn(accept_loop(listener, config, broker, stopped));
        Ok(Self { local_addr, stop, task, maintenance })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and reading, lets each connection finish and write the requests
    /// it has in flight, and waits for that.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let _ = self.maintenance.await;
    }
}

async fn maintain(broker: Arc<Broker>, config: Arc<ServerConfig>, mut stopped: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(broker.config().maintenance_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_retention = now_ms();
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
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
    mut stopped: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(config.connections_max));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tracing::warn!(%peer, limit = config.connections_max, "connection limit reached; closing");
                    drop(stream);
                    continue;
                };
                let config = Arc::clone(&config);
                let broker = Arc::clone(&broker);
                let stopped = stopped.clone();
                connections.spawn(async move {
                    let result = serve_connection(stream, &config, broker, stopped).await;
                    // The slot frees before the peer can see the close, so a client that
                    // reconnects at once is not turned away.
                    drop(permit);
                    if let Err(reason) = result {
                        tracing::info!(%peer, %reason, "closed connection");
                    }
                });
            }
        }
        // Reap finished connections so the set does not grow with every one ever made.
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

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
    #[error("request handler failed: {0}")]
    Handler(String),
}

/// A response on its way to the writer, in request order, with when its request arrived.
enum Outgoing {
    Ready(Option<Bytes>, Instant),
    Waiting(JoinHandle<Result<Option<Bytes>, FrameError>>, Instant),
}

async fn serve_connection(
    stream: TcpStream,
    config: &ServerConfig,
    broker: Arc<Broker>,
    stopped: watch::Receiver<bool>,
) -> Result<(), ConnectionEnd> {
    stream.set_nodelay(true)?;
    let (reader, writer) = stream.into_split();
    let (outgoing, queue) = mpsc::channel(config.in_flight_max.max(1));
    let writer = tokio::spawn(write_responses(writer, queue));
    let read = read_requests(reader, config, broker, stopped, outgoing).await;
    // The reader is done (and dropped its sender): the writer drains what is in flight.
    let written = writer.await.map_err(|e| ConnectionEnd::Handler(e.to_string()))?;
    read.and(written)
}

async fn read_requests(
    mut reader: OwnedReadHalf,
    config: &ServerConfig,
    broker: Arc<Broker>,
    mut stopped: watch::Receiver<bool>,
    outgoing: mpsc::Sender<Outgoing>,
) -> Result<(), ConnectionEnd> {
    // As Kafka shows it to group tools.
    let client_host = reader.peer_addr().map(|a| format!("/{}", a.ip())).unwrap_or_default();
    loop {
        let mut prefix = [0u8; 4];
        tokio::select! {
            _ = stopped.changed() => return Ok(()),
            read = tokio::time::timeout(config.idle_timeout, reader.read_exact(&mut prefix)) => match read {
                Err(_) => return Err(ConnectionEnd::Idle(config.idle_timeout)),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(result) => { result?; }
            },
        }
        let length = frame_length(prefix, config.request_bytes_max)?;
        // The buffer grows with the bytes that actually arrive, so a large length prefix
        // alone does not reserve memory.
        let mut body = Vec::with_capacity(length.min(64 * 1024));
        let mut limited = (&mut reader).take(length as u64);
        tokio::time::timeout(config.request_timeout, limited.read_to_end(&mut body))
            .await
            .map_err(|_| ConnectionEnd::SlowRequest(config.request_timeout))??;
        if body.len() < length {
            return Ok(()); // the peer closed mid-request
        }
        let received = Instant::now();
        let handler_broker = Arc::clone(&broker);
        let host = client_host.clone();
        let reply = tokio::task::spawn_blocking(move || handle_frame_from(&handler_broker, Bytes::from(body), &host))
            .await
            .map_err(|e| ConnectionEnd::Handler(e.to_string()))??;
        let next = match reply {
            Reply::Ready(bytes) => Outgoing::Ready(bytes, received),
            Reply::Pending(future) => Outgoing::Waiting(tokio::spawn(future), received),
        };
        if outgoing.send(next).await.is_err() {
            return Ok(()); // the writer stopped: the peer is gone
        }
    }
}

async fn write_responses(mut writer: OwnedWriteHalf, mut queue: mpsc::Receiver<Outgoing>) -> Result<(), ConnectionEnd> {
    while let Some(next) = queue.recv().await {
        let (bytes, received) = match next {
            Outgoing::Ready(bytes, received) => (bytes, received),
            Outgoing::Waiting(task, received) => {
                (task.await.map_err(|e| ConnectionEnd::Handler(e.to_string()))??, received)
            }
        };
        if let Some(bytes) = bytes {
            // Prefix and body in one vectored write, without copying the body.
            let prefix = (bytes.len() as u32).to_be_bytes();
            let length = bytes.len();
            writer.write_all_buf(&mut Buf::chain(&prefix[..], bytes)).await?;
            tracing::trace!(bytes = length, micros = received.elapsed().as_micros() as u64, "responded");
        }
    }
    writer.shutdown().await.ok();
    Ok(())
}
