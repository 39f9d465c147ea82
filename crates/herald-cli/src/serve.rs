//! `herald serve`: settings from flags, environment and TOML; start; stop on a signal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use herald_broker::{BrokerConfig, Durability, RunningBroker, ServerConfig};
use herald_gateway::{GatewayConfig, RunningGateway, RunningRegistry, Sources, Tokens};
use herald_registry::{Registry, RegistryConfig, SCHEMAS_DIR};
use serde::Deserialize;

/// Settings of `herald serve`. Each flag also reads an environment variable; anything
/// unset falls back to the TOML file given by --config, then to the default.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on for Kafka clients [default: 127.0.0.1:9092].
    #[arg(long, env = "HERALD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for topics and partition logs [default: ./herald-data].
    #[arg(long, env = "HERALD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// A TOML file with any of the settings below (flags and environment win).
    #[arg(long, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    /// When a produce is acknowledged: `fsync` (after an fsync covers it; the default)
    /// or `interval:<ms>` (from the page cache, fsync every <ms>).
    #[arg(long, env = "HERALD_DURABILITY")]
    durability: Option<String>,
    /// Create topics on first use, like KAFKA_AUTO_CREATE_TOPICS_ENABLE [default: true].
    #[arg(long, env = "HERALD_AUTO_CREATE_TOPICS")]
    auto_create_topics: Option<bool>,
    /// Partitions of a topic created without a count [default: 3].
    #[arg(long, env = "HERALD_DEFAULT_PARTITIONS")]
    default_partitions: Option<u32>,
    /// Host clients are told to connect to [default: the listen address].
    #[arg(long, env = "HERALD_ADVERTISED_HOST")]
    advertised_host: Option<String>,
    /// Most open client connections [default: 1000].
    #[arg(long, env = "HERALD_CONNECTIONS_MAX")]
    connections_max: Option<usize>,
    /// Largest request in bytes [default: 104857600].
    #[arg(long, env = "HERALD_REQUEST_BYTES_MAX")]
    request_bytes_max: Option<u32>,
    /// Requests answered at once per connection [default: 32].
    #[arg(long, env = "HERALD_IN_FLIGHT_MAX")]
    in_flight_max: Option<usize>,
    /// How long the first rebalance of an empty consumer group waits for more members,
    /// like Kafka's `group.initial.rebalance.delay.ms` [default: 3000].
    #[arg(long, env = "HERALD_GROUP_INITIAL_REBALANCE_DELAY_MS")]
    group_initial_rebalance_delay_ms: Option<u64>,
    /// How long a shutdown lets connections finish what they owe before closing them; 0
    /// closes them at once, unanswered [default: 10000].
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE_MS")]
    shutdown_grace_ms: Option<u64>,
    /// Log filter, e.g. `info` or `herald_broker=debug` [default: info].
    #[arg(long, env = "HERALD_LOG")]
    log: Option<String>,
    /// Address of the HTTP gateway (REST, SSE, /metrics), or `off` [default: 127.0.0.1:8080].
    #[arg(long, env = "HERALD_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// A file of `<scope> <token>` lines (scopes: read, write, admin); without it the
    /// gateway needs no token and serves loopback addresses only.
    #[arg(long, env = "HERALD_HTTP_TOKEN_FILE")]
    http_token_file: Option<PathBuf>,
    /// Origins browsers may call the gateway from, comma-separated (CORS).
    #[arg(long, env = "HERALD_HTTP_CORS_ORIGINS")]
    http_cors_origins: Option<String>,
    /// Serve HTTP on a non-loopback address without tokens.
    #[arg(long, env = "HERALD_HTTP_INSECURE")]
    http_insecure: bool,
    /// A service's database (`postgres://...` or `sqlite:path`) whose sagas and
    /// projections the web console shows. Opening it runs herald's migrations there.
    #[arg(long, env = "HERALD_CONSOLE_DATABASE_URL")]
    database_url: Option<String>,
    /// Address of the schema registry (the Confluent REST API), or `off`
    /// [default: 127.0.0.1:8081]. It takes the gateway's tokens and limits.
    #[arg(long, env = "HERALD_SCHEMA_REGISTRY_LISTEN")]
    schema_registry_listen: Option<String>,
}

/// The TOML file: the same settings, plus log defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    durability: Option<String>,
    auto_create_topics: Option<bool>,
    default_partitions: Option<u32>,
    advertised_host: Option<String>,
    connections_max: Option<usize>,
    request_bytes_max: Option<u32>,
    in_flight_max: Option<usize>,
    group_initial_rebalance_delay_ms: Option<u64>,
    shutdown_grace_ms: Option<u64>,
    http_listen: Option<String>,
    schema_registry_listen: Option<String>,
    http_token_file: Option<PathBuf>,
    http_cors_origins: Option<String>,
    /// Most SSE streams open at once.
    http_streams_max: Option<usize>,
    /// Events buffered per stream.
    http_stream_buffer: Option<usize>,
    /// Largest HTTP request body.
    http_body_bytes_max: Option<usize>,
    /// Bounds of consumers' `session.timeout.ms` (Kafka: 6000 and 1800000).
    group_min_session_timeout_ms: Option<u64>,
    group_max_session_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    log: Option<String>,
    /// Default `retention.ms` of topics (-1: keep forever).
    retention_ms: Option<i64>,
    /// Default `retention.bytes` of topics (-1: no limit).
    retention_bytes: Option<i64>,
    /// Default `segment.bytes` of topics.
    segment_bytes: Option<u64>,
    /// Default `max.message.bytes` of topics.
    max_message_bytes: Option<u32>,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => FileSettings::default(),
    };
    let filter = args.log.clone().or(file.log.clone()).unwrap_or_else(|| "info".to_string());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter).context("--log")?)
        .with_writer(std::io::stderr)
        .init();
    let (http, http_on) = gateway_settings(&args, &file)?;
    let registry_listen = registry_address(&args, &file)?;
    let database_url = args.database_url.clone();
    let (broker, server) = settings(args, file)?;
    let server_grace_ms = server.shutdown_grace.as_millis() as u64;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting tokio")?;
    runtime.block_on(async move {
        // Installed before anything starts: a SIGTERM during startup still stops cleanly.
        let signals = Signals::install()?;
        let running = RunningBroker::start(broker, server).await?;
        let registry = match registry_listen {
            Some(listen) => match start_registry(&running, listen, &http).await {
                Ok(registry) => Some(registry),
                Err(error) => {
                    running.shutdown().await?;
                    return Err(error);
                }
            },
            None => None,
        };
        let sources = Sources {
            registry: registry.as_ref().map(|(_, registry)| Arc::clone(registry)),
            workflows: match database_url.as_deref().map(open_service_db) {
                Some(opening) => match opening.await {
                    Ok(db) => Some(db),
                    Err(error) => {
                        stop_registry(registry).await;
                        running.shutdown().await?;
                        return Err(error);
                    }
                },
                None => None,
            },
        };
        let gateway = match http_on {
            true => match RunningGateway::start_with(http, Arc::clone(running.broker()), sources).await {
                Ok(gateway) => Some(gateway),
                Err(error) => {
                    stop_registry(registry).await;
                    running.shutdown().await?;
                    return Err(error.into());
                }
            },
            false => None,
        };
        signals.wait().await;
        tracing::info!(
            grace_ms = server_grace_ms,
            "shutting down: answering parked requests, finishing in-flight ones within the grace, then flushing logs"
        );
        if let Some(gateway) = gateway {
            gateway.shutdown().await;
        }
        stop_registry(registry).await;
        running.shutdown().await?;
        Ok(())
    })
}

/// The service database the console reads sagas and projections from.
async fn open_service_db(url: &str) -> anyhow::Result<Arc<dyn herald_gateway::workflows::Workflows>> {
    let db = crate::console_source::ServiceDb::open(url)
        .await
        .with_context(|| format!("--database-url {}", crate::database::redact(url)))?;
    tracing::info!(database = %crate::database::redact(url), "the console reads sagas and projections from this database");
    Ok(Arc::new(db))
}

/// Opens the schema registry's log in the data directory and serves it on `listen`.
async fn start_registry(
    running: &RunningBroker,
    listen: SocketAddr,
    http: &GatewayConfig,
) -> anyhow::Result<(RunningRegistry, Arc<Registry>)> {
    let broker = running.broker();
    let (storage, dir, log) =
        (broker.storage(), broker.config().data_dir.join(SCHEMAS_DIR), broker.config().log_defaults());
    let registry = tokio::task::spawn_blocking(move || Registry::open(storage, dir, log, RegistryConfig::default()))
        .await
        .context("opening the schema registry")?
        .context("opening the schema registry's log")?;
    let registry = Arc::new(registry);
    let serving = RunningRegistry::start(listen, http, Arc::clone(&registry)).await?;
    Ok((serving, registry))
}

/// Stops serving the registry and closes its log.
async fn stop_registry(registry: Option<(RunningRegistry, Arc<Registry>)>) {
    let Some((serving, registry)) = registry else { return };
    serving.shutdown().await;
    match Arc::try_unwrap(registry) {
        Ok(registry) => {
            if let Err(error) = tokio::task::spawn_blocking(move || registry.close()).await.unwrap_or(Ok(())) {
                tracing::warn!(%error, "closing the schema registry's log");
            }
        }
        Err(_) => tracing::warn!("the schema registry is still in use; its log is flushed at the next open"),
    }
}

/// The registry's address, or `None` for `off`.
fn registry_address(args: &ServeArgs, file: &FileSettings) -> anyhow::Result<Option<SocketAddr>> {
    match args.schema_registry_listen.as_deref().or(file.schema_registry_listen.as_deref()) {
        Some("off") => Ok(None),
        Some(listen) => Ok(Some(listen.parse().with_context(|| format!("--schema-registry-listen {listen:?}"))?)),
        None => Ok(Some(SocketAddr::from(([127, 0, 0, 1], 8081)))),
    }
}

/// The gateway's settings (the registry takes its tokens and limits too), and whether
/// the gateway runs (`--http-listen off`: no).
fn gateway_settings(args: &ServeArgs, file: &FileSettings) -> anyhow::Result<(GatewayConfig, bool)> {
    let mut config = GatewayConfig::default();
    let mut on = true;
    match args.http_listen.as_deref().or(file.http_listen.as_deref()) {
        Some("off") => on = false,
        Some(listen) => config.listen = listen.parse().with_context(|| format!("--http-listen {listen:?}"))?,
        None => {}
    }
    if let Some(path) = args.http_token_file.as_ref().or(file.http_token_file.as_ref()) {
        config.tokens = Some(Tokens::load(path)?);
    }
    if let Some(origins) = args.http_cors_origins.as_ref().or(file.http_cors_origins.as_ref()) {
        config.cors_origins = origins.split(',').map(str::trim).filter(|o| !o.is_empty()).map(String::from).collect();
    }
    config.insecure = args.http_insecure;
    if let Some(n) = file.http_streams_max {
        config.streams_max = n;
    }
    if let Some(n) = file.http_stream_buffer {
        config.stream_buffer = n.max(1);
    }
    if let Some(n) = file.http_body_bytes_max {
        config.body_bytes_max = n;
    }
    Ok((config, on))
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("{} is not a valid settings file", path.display()))
}

fn settings(args: ServeArgs, file: FileSettings) -> anyhow::Result<(BrokerConfig, ServerConfig)> {
    let mut broker = BrokerConfig::default();
    let mut server = ServerConfig::default();
    if let Some(listen) = args.listen.or(file.listen) {
        server.listen = listen;
    }
    if let Some(dir) = args.data_dir.or(file.data_dir) {
        broker.data_dir = dir;
    }
    if let Some(durability) = args.durability.or(file.durability) {
        broker.durability = parse_durability(&durability)?;
    }
    if let Some(auto) = args.auto_create_topics.or(file.auto_create_topics) {
        broker.auto_create_topics = auto;
    }
    if let Some(partitions) = args.default_partitions.or(file.default_partitions) {
        if partitions == 0 {
            bail!("default_partitions must be at least 1");
        }
        broker.default_partitions = partitions;
    }
    if let Some(host) = args.advertised_host.or(file.advertised_host) {
        broker.advertised_host = host;
    }
    if let Some(n) = args.connections_max.or(file.connections_max) {
        server.connections_max = n;
    }
    if let Some(n) = args.request_bytes_max.or(file.request_bytes_max) {
        server.request_bytes_max = n;
    }
    if let Some(n) = args.in_flight_max.or(file.in_flight_max) {
        server.in_flight_max = n.max(1);
    }
    if let Some(ms) = args.group_initial_rebalance_delay_ms.or(file.group_initial_rebalance_delay_ms) {
        broker.groups.initial_rebalance_delay_ms = ms.min(i64::MAX as u64) as i64;
    }
    if let Some(ms) = args.shutdown_grace_ms.or(file.shutdown_grace_ms) {
        server.shutdown_grace = Duration::from_millis(ms);
    }
    if let Some(ms) = file.group_min_session_timeout_ms {
        broker.groups.min_session_timeout_ms = ms.min(i64::MAX as u64) as i64;
    }
    if let Some(ms) = file.group_max_session_timeout_ms {
        broker.groups.max_session_timeout_ms = ms.min(i64::MAX as u64) as i64;
    }
    if broker.groups.min_session_timeout_ms > broker.groups.max_session_timeout_ms {
        bail!("group_min_session_timeout_ms is above group_max_session_timeout_ms");
    }
    if let Some(ms) = file.idle_timeout_ms {
        server.idle_timeout = Duration::from_millis(ms);
    }
    if let Some(ms) = file.request_timeout_ms {
        server.request_timeout = Duration::from_millis(ms);
    }
    let unlimited = |v: i64| u64::try_from(v).ok();
    if let Some(ms) = file.retention_ms {
        broker.log.retention_ms = unlimited(ms);
    }
    if let Some(bytes) = file.retention_bytes {
        broker.log.retention_bytes = unlimited(bytes);
    }
    if let Some(bytes) = file.segment_bytes {
        broker.log.segment_bytes = bytes;
    }
    if let Some(bytes) = file.max_message_bytes {
        broker.log.batch_bytes_max = bytes;
    }
    broker.log_defaults().validate().context("log settings")?;
    Ok((broker, server))
}

fn parse_durability(text: &str) -> anyhow::Result<Durability> {
    if text == "fsync" {
        return Ok(Durability::Fsync);
    }
    if let Some(ms) = text.strip_prefix("interval:") {
        let ms: u64 = ms.trim_end_matches("ms").parse().with_context(|| format!("durability {text:?}"))?;
        if ms == 0 {
            bail!("durability interval must be at least 1 ms");
        }
        return Ok(Durability::Interval(Duration::from_millis(ms)));
    }
    bail!("durability {text:?}: use `fsync` or `interval:<ms>`")
}

/// SIGINT and SIGTERM, caught from the moment they are installed.
pub(crate) struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    pub(crate) fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            terminate: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
        })
    }

    /// Waits for either.
    pub(crate) async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    Signals::install()?.wait().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_parses_both_forms_and_rejects_others() {
        assert_eq!(parse_durability("fsync").expect("fsync"), Durability::Fsync);
        assert_eq!(
            parse_durability("interval:250").expect("interval"),
            Durability::Interval(Duration::from_millis(250))
        );
        assert!(parse_durability("sometimes").is_err());
        assert!(parse_durability("interval:0").is_err());
    }

    #[test]
    fn the_file_fills_what_flags_leave_unset() {
        let file: FileSettings = toml::from_str(
            "listen = \"127.0.0.1:19092\"\ndata_dir = \"/tmp/x\"\ndefault_partitions = 6\nretention_ms = -1\n\
             shutdown_grace_ms = 2500\n",
        )
        .expect("toml");
        let args = ServeArgs {
            listen: None,
            data_dir: Some(PathBuf::from("/tmp/flag")),
            config: None,
            durability: None,
            auto_create_topics: None,
            default_partitions: None,
            advertised_host: None,
            connections_max: None,
            request_bytes_max: None,
            in_flight_max: None,
            group_initial_rebalance_delay_ms: None,
            shutdown_grace_ms: None,
            log: None,
            http_listen: None,
            schema_registry_listen: None,
            database_url: None,
            http_token_file: None,
            http_cors_origins: None,
            http_insecure: false,
        };
        let (broker, server) = settings(args, file).expect("settings");
        assert_eq!(server.listen, "127.0.0.1:19092".parse().expect("addr"));
        assert_eq!(broker.data_dir, PathBuf::from("/tmp/flag"));
        assert_eq!(broker.default_partitions, 6);
        assert_eq!(broker.log.retention_ms, None);
        assert_eq!(server.shutdown_grace, Duration::from_millis(2500));
    }

    #[test]
    fn unknown_file_settings_are_rejected() {
        assert!(toml::from_str::<FileSettings>("listn = \"x\"").is_err());
    }
}
