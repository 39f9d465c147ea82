//! What every cluster command shares: where the brokers are, how long to wait for them,
//! the output format, and the clients built from that.

use std::time::Duration;

use anyhow::Context as _;
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::metadata::Metadata;

/// `--brokers`, `--timeout-ms`, `--json`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClusterArgs {
    /// Bootstrap brokers (any Kafka-compatible cluster).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092", global = true)]
    pub(crate) brokers: String,
    /// How long to wait for the cluster, in ms.
    #[arg(long, default_value_t = 10_000, global = true)]
    pub(crate) timeout_ms: u64,
    /// Print JSON instead of a table (for scripts).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl ClusterArgs {
    pub(crate) fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Client settings: the brokers, and librdkafka's own logging kept quiet (its errors
    /// come back to us as results).
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("log_level", "0");
        config
    }

    pub(crate) fn admin(&self) -> anyhow::Result<AdminClient<DefaultClientContext>> {
        self.client_config().create().with_context(|| format!("connecting to {}", self.brokers))
    }

    pub(crate) fn consumer(&self) -> anyhow::Result<BaseConsumer> {
        self.client_config()
            .set("group.id", "herald-cli")
            .set("enable.auto.commit", "false")
            .create()
            .with_context(|| format!("connecting to {}", self.brokers))
    }

    /// Cluster metadata (one topic or all), with an error that names the brokers.
    pub(crate) fn metadata(&self, consumer: &BaseConsumer, topic: Option<&str>) -> anyhow::Result<Metadata> {
        consumer.fetch_metadata(topic, self.timeout()).map_err(|error| {
            let why = error.rdkafka_error_code().map_or_else(|| error.to_string(), |code| format!("{code:?}"));
            anyhow::anyhow!("cannot reach the brokers at {} within {} ms ({why})", self.brokers, self.timeout_ms)
        })
    }
}

/// Prints rows under a header, columns padded to their widest cell.
pub(crate) fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `key=value` settings from the command line.
pub(crate) fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected key=value, got {text:?}")),
    }
}
