//! The TCP side: accept, read frames under limits, answer in order, shut down gracefully.
//!
//! Each connection reads one frame at a time (length prefix first, checked before the body
//! is read), answers it, and reads the next, so responses keep request order and a
//! connection has at most one request in flight for now. A bad frame closes that
//! connection only, with one log line. Limits, each with a default: connections
//! (`connections_max`), request size (`request_bytes_max`), time between requests
//! (`idle_timeout`) and time to finish a started request (`request_timeout`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::request::{FrameError, REQUEST_BYTES_MAX_DEFAULT, frame_length, handle_frame, with_length_prefix};

/// Settings of the Kafka listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen; 127.0.0.1:9092 by default (never all interfaces unless told).
    pub listen: SocketAddr,
    /// Open connections at most; further ones are closed on accept.
    pub connections_max: usize,
    /// Largest request frame; a larger length prefix closes the connection unread.
    pub request_bytes_max: u32,
    /// A connection idle this long between requests is closed (Kafka: `connections.max.idle.ms`).
    pub idle_timeout: Duration,
    /// A request must arrive whole within this time once its first byte has.
    pub request_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            connections_max: 1_000,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            idle_timeout: Duration::from_secs(600),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A running listener. Dropping it without [`Server::shutdown`] stops accepting too.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds and starts accepting.
    pub async fn start(config: ServerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        tracing::info!(%local_addr, "listening for Kafka clients");
        let task = tokio::spawn(accept_loop(listener, Arc::new(config), stopped));
        Ok(Self { local_addr, stop, task })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets each connection finish the request it is answering, and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, config: Arc<ServerConfig>, mut stopped: watch::Receiver<bool>) {
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
                let stopped = stopped.clone();
                connections.spawn(async move {
                    let mut stream = stream;
                    let result = serve_connection(&mut stream, &config, stopped).await;
                    // The slot frees before the peer can see the close, so a client that
                    // reconnects at once is not turned away.
                    drop(permit);
                    drop(stream);
                    if let Err(reason) = result {
                        tracing::info!(%peer, %reason, "closed connection");
                    }
                });
            }
        }
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
}

async fn serve_connection(
    stream: &mut TcpStream,
    config: &ServerConfig,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), ConnectionEnd> {
    stream.set_nodelay(true)?;
    loop {
        let mut prefix = [0u8; 4];
        tokio::select! {
            _ = stopped.changed() => return Ok(()),
            read = tokio::time::timeout(config.idle_timeout, stream.read_exact(&mut prefix)) => match read {
                Err(_) => return Err(ConnectionEnd::Idle(config.idle_timeout)),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(result) => { result?; }
            },
        }
        let length = frame_length(prefix, config.request_bytes_max)?;
        // The buffer grows with the bytes that actually arrive, so a large length prefix
        // alone does not reserve memory.
        let mut body = Vec::with_capacity(length.min(64 * 1024));
        let mut limited = (&mut *stream).take(length as u64);
        tokio::time::timeout(config.request_timeout, limited.read_to_end(&mut body))
            .await
            .map_err(|_| ConnectionEnd::SlowRequest(config.request_timeout))??;
        if body.len() < length {
            return Ok(()); // the peer closed mid-request
        }
        let response = handle_frame(Bytes::from(body))?;
        stream.write_all(&with_length_prefix(&response)).await?;
    }
}
