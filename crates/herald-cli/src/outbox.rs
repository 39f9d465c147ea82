//! `herald outbox relay`: the outbox relay as its own process, for services that would
//! rather not embed it. Same relay, same guarantees (see `herald::outbox`).

use std::time::Duration;

use anyhow::Context;
use herald::PublisherConfig;
use herald::outbox::{PostgresOutbox, Relay, RelayConfig, SqliteOutbox};

use crate::database::{Pool, redact};
use crate::serve::wait_for_signal;

/// `herald outbox ...`.
#[derive(Debug, clap::Args)]
pub(crate) struct OutboxArgs {
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, clap::Subcommand)]
enum OutboxCommand {
    /// Publish the committed events of a service's outbox, in order, until stopped.
    Relay(RelayArgs),
}

/// Settings of `herald outbox relay`.
#[derive(Debug, clap::Args)]
struct RelayArgs {
    /// The service's database: `postgres://user:password@host/db` or `sqlite://path`.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Kafka bootstrap servers.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Kafka client id of the relay's producer.
    #[arg(long, env = "KAFKA_CLIENT_ID", default_value = "herald-outbox-relay")]
    client_id: String,
    /// Relay name: relays of one name share a cursor, and one of them is active.
    #[arg(long, default_value = "default")]
    name: String,
    /// Rows read and sent at a time.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Lease length in ms: how long a dead relay's successor waits.
    #[arg(long, default_value_t = 10_000)]
    lease_ttl_ms: u64,
    /// How often an idle relay polls, in ms.
    #[arg(long, default_value_t = 100)]
    poll_interval_ms: u64,
    /// Published rows are deleted this many seconds after they were written.
    #[arg(long, default_value_t = 3600)]
    retention_s: u64,
    /// Log filter, e.g. `info` or `herald=debug`.
    #[arg(long, env = "HERALD_LOG", default_value = "info")]
    log: String,
}

pub(crate) fn run(args: OutboxArgs) -> anyhow::Result<()> {
    let OutboxCommand::Relay(args) = args.command;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&args.log).context("--log")?)
        .init();
    let config = RelayConfig::default()
        .name(&args.name)
        .batch_size(args.batch_size.max(1))
        .lease_ttl(Duration::from_millis(args.lease_ttl_ms.max(100)))
        .poll_interval(Duration::from_millis(args.poll_interval_ms.max(1)))
        .retention(Duration::from_secs(args.retention_s));
    // A batch goes to the producer whole: waiting for more gains nothing.
    let publisher =
        PublisherConfig::default().brokers(&args.brokers).client_id(&args.client_id).linger(Duration::from_millis(1));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        let url = args.database_url.as_str();
        let shutdown = async {
            if let Err(error) = wait_for_signal().await {
                tracing::error!(%error, "signal handling failed; stopping");
            }
        };
        match crate::database::connect(url).await? {
            Pool::Postgres(pool) => {
                let outbox = PostgresOutbox::new(pool).await.context("preparing the outbox tables")?;
                tracing::info!(database = %redact(url), brokers = %args.brokers, "outbox relay starting");
                Relay::new(outbox, publisher, config).run(shutdown).await?;
            }
            Pool::Sqlite(pool) => {
                let outbox = SqliteOutbox::new(pool).await.context("preparing the outbox tables")?;
                tracing::info!(database = %url, brokers = %args.brokers, "outbox relay starting");
                Relay::new(outbox, publisher, config).run(shutdown).await?;
            }
        }
        tracing::info!("outbox relay stopped");
        Ok(())
    })
}
