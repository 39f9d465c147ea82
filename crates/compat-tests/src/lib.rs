//! Test support for running Herald's broker against real Kafka clients: start a broker
//! on 127.0.0.1:0 over a temporary directory, restart it on the same directory, and
//! build rdkafka clients pointed at it. It holds no test logic of its own; it refuses
//! to mock anything (the broker, the sockets and the clients are all real).

pub mod proxy;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use herald_broker::{BrokerConfig, RunningBroker, ServerConfig};
use rdkafka::ClientConfig;

/// A broker on an ephemeral port over a data directory that outlives restarts.
#[derive(Debug)]
pub struct TestBroker {
    running: Option<RunningBroker>,
    dir: tempfile::TempDir,
    config: BrokerConfig,
    server: ServerConfig,
}

impl TestBroker {
    /// Starts a broker with default settings on a fresh directory.
    pub async fn start() -> Self {
        Self::start_with(BrokerConfig::default(), ServerConfig::default()).await
    }

    /// Starts a broker with these settings (data directory and listen address are set here).
    pub async fn start_with(config: BrokerConfig, server: ServerConfig) -> Self {
        init_logging();
        let dir = tempfile::tempdir().expect("temporary data directory");
        let config = BrokerConfig { data_dir: dir.path().to_path_buf(), ..config };
        let server = ServerConfig { listen: SocketAddr::from(([127, 0, 0, 1], 0)), ..server };
        let running = RunningBroker::start(config.clone(), server.clone()).await.expect("broker starts");
        Self { running: Some(running), dir, config, server }
    }

    /// The broker's address, as `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.addr().to_string()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().expect("running").local_addr()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The running broker.
    pub fn running(&self) -> &RunningBroker {
        self.running.as_ref().expect("running")
    }

    /// Shuts down cleanly and starts again on the same directory and port.
    pub async fn restart(&mut self) {
        let addr = self.addr();
        self.stop().await;
        let server = ServerConfig { listen: addr, ..self.server.clone() };
        let config = BrokerConfig { data_dir: PathBuf::from(self.dir.path()), ..self.config.clone() };
        self.running = Some(RunningBroker::start(config, server).await.expect("broker restarts"));
    }

    /// Shuts down cleanly (idempotent).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await.expect("clean shutdown");
        }
    }

    /// A client config with `bootstrap.servers` set and quick failure on trouble.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", self.bootstrap()).set("broker.address.family", "v4");
        config
    }
}

/// `kcat`'s path, if it is installed. Tests that need it say they were skipped when not,
/// unless `HERALD_REQUIRE_KCAT` is set (as `.ci/run` does), in which case they fail.
pub fn kcat() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("kcat")).find(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var_os("HERALD_REQUIRE_KCAT").is_none(),
            "kcat is required (HERALD_REQUIRE_KCAT) but not on PATH"
        );
        eprintln!("SKIPPED: kcat is not installed (apt-get install kcat)");
    }
    found
}

/// Broker logs to the test output when `HERALD_TEST_LOG` holds a filter (e.g. `debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("HERALD_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// The partitions of `topic` in a consumer-protocol assignment (as SyncGroup carries it).
pub fn assigned_partitions(assignment: &bytes::Bytes, topic: &str) -> std::collections::BTreeSet<i32> {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable;
    let mut bytes = assignment.clone();
    if bytes.len() < 2 {
        return Default::default();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let _ = bytes::Buf::get_i16(&mut bytes);
    match ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)) {
        Ok(decoded) => decoded
            .assigned_partitions
            .iter()
            .filter(|tp| &*tp.topic.0 == topic)
            .flat_map(|tp| tp.partitions.iter().copied())
            .collect(),
        Err(_) => Default::default(),
    }
}
