//! Broker settings, each with a default that suits a developer's machine.

use std::path::PathBuf;
use std::time::Duration;

use herald_log::{LogConfig, SyncPolicy};

use crate::group::GroupConfig;
use crate::producer_state::ProducerStateConfig;

/// When a produced batch is acknowledged, and so what a power loss can take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge after an fsync covers the batch; concurrent produces share fsyncs.
    /// Consumers see only fsynced records. Nothing acknowledged is lost to a power cut.
    Fsync,
    /// Acknowledge once the batch is in the page cache; fsync every `interval`. A process
    /// crash loses nothing; a power cut may lose up to `interval` of acknowledged data
    /// (Kafka's default on a single node, where replication would otherwise cover it).
    Interval(Duration),
}

impl Durability {
    /// The log's fsync policy for this setting.
    pub fn sync_policy(self) -> SyncPolicy {
        match self {
            Durability::Fsync => SyncPolicy::Always,
            Durability::Interval(interval) => {
                SyncPolicy::Interval { interval_ms: interval.as_millis() as u64, bytes: u64::MAX }
            }
        }
    }
}

/// Settings of a [`crate::Broker`].
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Where topics, partition logs and broker metadata live.
    pub data_dir: PathBuf,
    /// This broker's node id, as answered in Metadata.
    pub node_id: i32,
    /// Host clients are told to connect to; set from the listen address at start when
    /// empty.
    pub advertised_host: String,
    /// Port clients are told to connect to; set from the bound port at start when 0.
    pub advertised_port: u16,
    /// Create a topic when a client asks Metadata for one that does not exist.
    pub auto_create_topics: bool,
    /// Partitions of a topic created without a count (auto-created or `-1`).
    pub default_partitions: u32,
    /// Most partitions one topic may have.
    pub partitions_max: u32,
    /// When produced batches are acknowledged.
    pub durability: Durability,
    /// Defaults of every partition log; topic configs override some of them.
    pub log: LogConfig,
    /// Idempotent-producer state limits.
    pub producer_state: ProducerStateConfig,
    /// Consumer-group timeouts (session bounds, initial rebalance delay).
    pub groups: GroupConfig,
    /// Compact the committed-offsets log once it is this large.
    pub offsets_compact_bytes: u64,
    /// Longest a Fetch may wait for data, whatever the client asks.
    pub fetch_wait_max: Duration,
    /// How often interval fsyncs are considered (retention runs less often; see
    /// [`crate::ServerConfig::retention_check_interval`]).
    pub maintenance_interval: Duration,
    /// How long the cleaner of compacted topics rests between rounds (Kafka:
    /// `log.cleaner.backoff.ms`).
    pub cleaner_backoff: Duration,
    /// Most memory one cleaning pass spends on its map of keys; a larger dirty range is
    /// cleaned over several passes (Kafka: `log.cleaner.dedupe.buffer.size`).
    pub cleaner_map_bytes_max: usize,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("herald-data"),
            node_id: 0,
            advertised_host: String::new(),
            advertised_port: 0,
            auto_create_topics: true,
            default_partitions: 3,
            partitions_max: 10_000,
            durability: Durability::Fsync,
            log: LogConfig::default(),
            producer_state: ProducerStateConfig::default(),
            groups: GroupConfig::default(),
            offsets_compact_bytes: 64 << 20,
            fetch_wait_max: Duration::from_secs(30),
            maintenance_interval: Duration::from_millis(100),
            cleaner_backoff: Duration::from_secs(15),
            cleaner_map_bytes_max: 128 << 20,
        }
    }
}
