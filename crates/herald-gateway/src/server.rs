//! [`RunningGateway`]: the router, its shared state, start and shutdown.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use herald_broker::internals::Broker;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{Semaphore, watch};

use herald_registry::Registry;

use crate::config::GatewayConfig;
use crate::console::dead_letters::RedriveLog;
use crate::console::history::{self, History};
use crate::console::workflows::Workflows;
use crate::error::GatewayError;
use crate::problem::Problem;
use crate::session::Sessions;
use crate::tail::Tails;
use crate::{auth, console, dead_letters, groups, messages, metrics, openapi, reset, sse, topics, ws};

/// How long a shutdown waits for requests in flight (streams end at once).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) broker: Arc<Broker>,
    pub(crate) config: GatewayConfig,
    /// One permit per stream that may open.
    pub(crate) streams: Arc<Semaphore>,
    /// True once the gateway is stopping: streams end.
    pub(crate) stopping: watch::Receiver<bool>,
    pub(crate) metrics: PrometheusHandle,
    /// Where the next unkeyed record without a partition goes.
    pub(crate) round_robin: AtomicU64,
    /// The live edges of topics with streams.
    pub(crate) tails: Tails,
    /// The schema registry, for the console's schema pages.
    pub(crate) registry: Option<Arc<Registry>>,
    /// A service's sagas and projections, for the console.
    pub(crate) workflows: Option<Arc<dyn Workflows>>,
    /// Samples over time (rates, lag charts).
    pub(crate) history: Arc<Mutex<History>>,
    /// The console's redrives since start, newest first.
    pub(crate) redrives: RedriveLog,
    /// Console logins.
    pub(crate) sessions: Sessions,
}

/// What the console reads besides the broker.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The schema registry `herald serve` runs.
    pub registry: Option<Arc<Registry>>,
    /// A service's database (`herald serve --database-url`).
    pub workflows: Option<Arc<dyn Workflows>>,
}

/// Samples the console keeps (an hour at the default interval).
const HISTORY_SAMPLES: usize = 720;

/// Runs `work` on a blocking thread (log and registry IO).
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Problem> + Send + 'static,
) -> Result<T, Problem> {
    tokio::task::spawn_blocking(work).await.map_err(|e| Problem::internal(format!("a task failed: {e}")))?
}

fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/api/v1/topics", get(topics::list).post(topics::create))
        .route("/api/v1/topics/{topic}", get(topics::describe).patch(topics::alter).delete(topics::delete))
        .route("/api/v1/topics/{topic}/partitions/{partition}/messages", get(messages::page))
        .route("/api/v1/topics/{topic}/messages", axum::routing::post(messages::produce))
        .route("/api/v1/topics/{topic}/events", get(sse::events))
        .route("/api/v1/ws", get(ws::socket))
        .route("/api/v1/dead-letters", get(dead_letters::topics))
        .route("/api/v1/topics/{topic}/dead-letters", get(dead_letters::page))
        .route("/api/v1/topics/{topic}/dead-letters/redrive", axum::routing::post(dead_letters::redrive))
        .route("/api/v1/groups", get(groups::list))
        .route("/api/v1/groups/{group}", get(groups::describe).delete(groups::delete))
        .route("/api/v1/groups/{group}/offsets", axum::routing::post(reset::reset))
        .route("/metrics", get(metrics::render))
        .route("/healthz", get(metrics::healthz))
        .route("/readyz", get(metrics::readyz))
        .merge(console::router())
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(axum::http::StatusCode::METHOD_NOT_ALLOWED, "this route does not take that method")
        });
    api.layer(axum::middleware::from_fn(metrics::observe))
        .layer(DefaultBodyLimit::max(app.config.body_bytes_max))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&app), auth::cors))
        .with_state(app)
}

/// A bound listener serving a router until stopped: the gateway's and the schema
/// registry's.
#[derive(Debug)]
pub(crate) struct Listening {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Listening {
    /// Binds `listen`; refuses a non-loopback address without tokens unless
    /// `config.insecure`.
    pub(crate) async fn bind(
        listen: SocketAddr,
        config: &GatewayConfig,
    ) -> Result<(tokio::net::TcpListener, SocketAddr), GatewayError> {
        if !listen.ip().is_loopback() && config.tokens.is_none() && !config.insecure {
            return Err(GatewayError::Insecure(listen));
        }
        let error = |source| GatewayError::Listen { address: listen, source };
        let listener = tokio::net::TcpListener::bind(listen).await.map_err(error)?;
        let addr = listener.local_addr().map_err(error)?;
        Ok((listener, addr))
    }

    /// Serves `service` on `listener` until `stop` says so; `what` names it in logs.
    pub(crate) fn serve(
        listener: tokio::net::TcpListener,
        addr: SocketAddr,
        service: Router,
        stop: watch::Sender<bool>,
        what: &'static str,
    ) -> Self {
        // Answers are small and each should leave at once, not wait for Nagle.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        });
        let mut until = stop.subscribe();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = until.wait_for(|s| *s).await;
            };
            if let Err(error) = axum::serve(listener, service).with_graceful_shutdown(shutdown).await {
                tracing::error!(%error, listener = what, "an HTTP listener stopped");
            }
        });
        Self { addr, stop, task }
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits a little for requests in flight.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// A gateway serving HTTP for a broker in the same process.
#[derive(Debug)]
pub struct RunningGateway(Listening);

impl RunningGateway {
    /// Binds `config.listen` and serves `broker`. Refuses a non-loopback address without
    /// tokens unless `config.insecure`.
    pub async fn start(config: GatewayConfig, broker: Arc<Broker>) -> Result<Self, GatewayError> {
        Self::start_with(config, broker, Sources::default()).await
    }

    /// [`start`](Self::start), with what the console shows besides the broker.
    pub async fn start_with(
        config: GatewayConfig,
        broker: Arc<Broker>,
        sources: Sources,
    ) -> Result<Self, GatewayError> {
        let (listener, addr) = Listening::bind(config.listen, &config).await?;
        let (stop, stopping) = watch::channel(false);
        let history = Arc::new(Mutex::new(History::new(HISTORY_SAMPLES)));
        tokio::spawn(history::run(Arc::clone(&broker), Arc::clone(&history), config.sample_every, stopping.clone()));
        let app = Arc::new(App {
            broker,
            streams: Arc::new(Semaphore::new(config.streams_max)),
            config,
            stopping,
            metrics: metrics::handle(),
            round_robin: AtomicU64::new(0),
            tails: Tails::default(),
            registry: sources.registry,
            workflows: sources.workflows,
            history,
            redrives: RedriveLog::default(),
            sessions: Sessions::default(),
        });
        let serving = Listening::serve(listener, addr, router(app), stop, "gateway");
        tracing::info!(http = %addr, "herald gateway ready");
        Ok(Self(serving))
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.0.local_addr()
    }

    /// Stops accepting, ends the streams, and waits a little for requests in flight.
    pub async fn shutdown(self) {
        self.0.shutdown().await;
    }
}
