//! A TCP proxy that forwards Kafka frames and, every so often, cuts the connection right
//! after forwarding a Produce request, so the client never sees the answer and retries.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The proxy: bind first (so the broker can advertise it), then start towards the broker.
#[derive(Debug)]
pub struct CuttingProxy {
    listener: std::sync::Mutex<Option<TcpListener>>,
    addr: SocketAddr,
    produces: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
}

impl CuttingProxy {
    /// Binds 127.0.0.1:0.
    pub async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        Self {
            listener: std::sync::Mutex::new(Some(listener)),
            addr,
            produces: Arc::new(AtomicU64::new(0)),
            cuts: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::SeqCst)
    }

    /// Forwards to `upstream`; cuts after every `every`-th Produce request, at most `max_cuts` times.
    pub fn start(&self, upstream: SocketAddr, every: u64, max_cuts: u64) {
        let listener = self.listener.lock().expect("lock").take().expect("started once");
        let (produces, cuts) = (Arc::clone(&self.produces), Arc::clone(&self.cuts));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let (produces, cuts) = (Arc::clone(&produces), Arc::clone(&cuts));
                tokio::spawn(relay(client, server, produces, cuts, every, max_cuts));
            }
        });
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    produces: Arc<AtomicU64>,
    cuts: Arc<AtomicU64>,
    every: u64,
    max_cuts: u64,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let back = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    loop {
        let mut prefix = [0u8; 4];
        if client_read.read_exact(&mut prefix).await.is_err() {
            break;
        }
        let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
        if client_read.read_exact(&mut body).await.is_err() {
            break;
        }
        let is_produce = body.len() >= 2 && i16::from_be_bytes([body[0], body[1]]) == 0;
        let cut = is_produce
            && (produces.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(every)
            && cuts.load(Ordering::SeqCst) < max_cuts;
        if cut {
            // Stop passing answers back first, so the client cannot see this one.
            back.abort();
            cuts.fetch_add(1, Ordering::SeqCst);
        }
        if server_write.write_all(&prefix).await.is_err() || server_write.write_all(&body).await.is_err() {
            break;
        }
        if cut {
            // Let the broker apply the request, then drop its answer with the connection.
            tokio::time::sleep(Duration::from_millis(30)).await;
            break;
        }
    }
    back.abort();
}
