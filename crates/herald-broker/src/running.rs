//! [`RunningBroker`]: bind, open the data directory, serve; and the orderly way down.

use std::net::SocketAddr;
use std::sync::Arc;

use herald_log::FsStorage;
use tokio::net::TcpListener;

use crate::broker::{Broker, BrokerError, now_ms};
use crate::compaction::cleaner::Cleaner;
use crate::config::BrokerConfig;
use crate::server::{Server, ServerConfig};

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The data directory could not be opened.
    #[error("cannot open the data directory: {0}")]
    Broker(#[from] BrokerError),
    /// Opening ran on a blocking thread that failed.
    #[error("startup task failed: {0}")]
    Task(String),
}

/// A broker serving Kafka clients on real files.
#[derive(Debug)]
pub struct RunningBroker {
    server: Server,
    broker: Arc<Broker>,
    cleaner: CleanerThread,
}

impl RunningBroker {
    /// Binds `server.listen`, opens `config.data_dir` (recovering logs as needed) and
    /// starts serving. An empty advertised host or a zero advertised port is taken from
    /// the bound address.
    pub async fn start(mut config: BrokerConfig, server: ServerConfig) -> Result<Self, StartError> {
        let listener = TcpListener::bind(server.listen)
            .await
            .map_err(|source| StartError::Listen { address: server.listen, source })?;
        let bound = listener.local_addr().map_err(|source| StartError::Listen { address: server.listen, source })?;
        if config.advertised_host.is_empty() {
            config.advertised_host =
                if bound.ip().is_unspecified() { "127.0.0.1".to_string() } else { bound.ip().to_string() };
        }
        if config.advertised_port == 0 {
            config.advertised_port = bound.port();
        }
        let data_dir = config.data_dir.clone();
        let broker = tokio::task::spawn_blocking(move || Broker::open(config, Arc::new(FsStorage)))
            .await
            .map_err(|e| StartError::Task(e.to_string()))??;
        let broker = Arc::new(broker);
        let topics = broker.topics().len();
        let server = Server::start(listener, server, Arc::clone(&broker))
            .map_err(|source| StartError::Listen { address: bound, source })?;
        tracing::info!(listen = %bound, data_dir = %data_dir.display(), topics, "herald broker ready");
        let cleaner = CleanerThread::start(Arc::clone(&broker)).map_err(|e| StartError::Task(e.to_string()))?;
        Ok(Self { server, broker, cleaner })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Client connections open now.
    pub fn open_connections(&self) -> usize {
        self.server.open_connections()
    }

    /// The broker state (for in-process inspection, e.g. tests).
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, answers parked requests, finishes in-flight ones within the
    /// shutdown grace (then closes the connections left), then flushes, fsyncs and marks
    /// every log and the offsets log cleanly closed.
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        self.server.shutdown().await;
        let cleaner = self.cleaner;
        let _ = tokio::task::spawn_blocking(move || cleaner.stop()).await;
        let broker = self.broker;
        // Cancelled requests and blocking handlers that were running drop their references
        // to the broker shortly after their connection closed.
        for _ in 0..200 {
            if Arc::strong_count(&broker) == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let closed = tokio::task::spawn_blocking(move || match Arc::try_unwrap(broker) {
            Ok(broker) => broker.close(),
            Err(shared) => {
                tracing::warn!("broker still referenced at shutdown; fsyncing without the clean mark");
                shared.sync_all()
            }
        })
        .await;
        let result = closed.unwrap_or_else(|e| {
            tracing::error!(error = %e, "shutdown task failed");
            Ok(())
        });
        tracing::info!("herald broker stopped");
        result
    }
}

/// The thread that cleans compacted topics, a round every `cleaner_backoff`. A round in
/// progress notices a shutdown between batches and drops its unfinished rewrite.
#[derive(Debug)]
struct CleanerThread {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl CleanerThread {
    fn start(broker: Arc<Broker>) -> std::io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let backoff = broker.config().cleaner_backoff;
        let thread = std::thread::Builder::new().name("herald-cleaner".into()).spawn(move || {
            let mut cleaner = Cleaner::default();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(backoff) {
                cleaner.run(&broker, now_ms(), &|| broker.is_stopping());
            }
        })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        if self.thread.join().is_err() {
            tracing::error!("the cleaner thread panicked");
        }
    }
}
