//! An in-process Herald broker for end-to-end tests: real sockets on 127.0.0.1, a real
//! log in a temporary directory, gone when dropped.
//!
//! ```no_run
//! # async fn demo() {
//! let broker = herald::testkit::TestBroker::start().await;
//! let publisher = herald::Publisher::new(herald::PublisherConfig::default().brokers(broker.bootstrap()));
//! # }
//! ```

use std::net::SocketAddr;

use herald_broker::{BrokerConfig, RunningBroker, ServerConfig};

/// A running broker on an ephemeral port over a temporary data directory.
#[derive(Debug)]
pub struct TestBroker {
    running: Option<RunningBroker>,
    addr: SocketAddr,
    config: BrokerConfig,
    server: ServerConfig,
    dir: tempfile::TempDir,
}

impl TestBroker {
    /// Starts a broker with default settings (and no initial rebalance delay, so group
    /// tests do not wait 3 s per group).
    pub async fn start() -> Self {
        let mut config = BrokerConfig::default();
        config.groups.initial_rebalance_delay_ms = 0;
        Self::start_with(config, ServerConfig::default()).await
    }

    /// Starts a broker with these settings; the data directory and listen address are
    /// chosen here.
    pub async fn start_with(config: BrokerConfig, server: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("a temporary data directory");
        let config = BrokerConfig { data_dir: dir.path().to_path_buf(), ..config };
        let server = ServerConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..server };
        let running = RunningBroker::start(config.clone(), server.clone()).await.expect("the test broker starts");
        let addr = running.local_addr();
        Self { running: Some(running), addr, config, server, dir }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    /// The bound address (kept across [`stop`](Self::stop) and [`resume`](Self::resume)).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The data directory.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The running broker (to inspect topics, groups and lag in-process).
    pub fn running(&self) -> &RunningBroker {
        self.running.as_ref().expect("the test broker is running")
    }

    /// Shuts down cleanly and starts again on the same directory and port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.resume().await;
    }

    /// Starts a stopped broker again on the same directory and port (a no-op when it is
    /// running), e.g. to end a simulated outage.
    pub async fn resume(&mut self) {
        if self.running.is_none() {
            let server = ServerConfig { listen: self.addr, ..self.server.clone() };
            let running = RunningBroker::start(self.config.clone(), server).await.expect("the test broker restarts");
            self.running = Some(running);
        }
    }

    /// Shuts down cleanly (a no-op when already stopped).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("a clean shutdown");
        }
    }
}
