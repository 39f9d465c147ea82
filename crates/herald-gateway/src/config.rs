//! [`GatewayConfig`]: where the gateway listens, who may use it, and its limits.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::Tokens;

/// Settings of the gateway. Times are [`Duration`]s; sizes end in their unit.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Address to listen on (`127.0.0.1:8080`, the seeds' Kafka UI port).
    pub listen: SocketAddr,
    /// Bearer tokens and their scopes; `None`: no authentication (loopback only, unless
    /// `insecure`).
    pub tokens: Option<Tokens>,
    /// Origins browsers may call from (CORS); empty: same origin only.
    pub cors_origins: Vec<String>,
    /// Serve a non-loopback address without tokens.
    pub insecure: bool,
    /// Most SSE streams open at once.
    pub streams_max: usize,
    /// Events buffered per stream for a client that reads slower than they come.
    pub stream_buffer: usize,
    /// How long a stream's buffer may stay full before the client is told to resync.
    pub stream_stall: Duration,
    /// A comment line sent on idle streams this often.
    pub heartbeat: Duration,
    /// How long browsers wait before reconnecting a cut stream (SSE `retry:`).
    pub stream_retry: Duration,
    /// Largest request body.
    pub body_bytes_max: usize,
    /// Most filter values (keys, event types, partitions) per stream.
    pub filters_max: usize,
    /// Most subscriptions on one WebSocket.
    pub ws_subscriptions_max: usize,
    /// Most messages per page of a read.
    pub read_limit_max: usize,
    /// Most bytes read from one partition at a time.
    pub read_bytes_max: u32,
    /// How often the console samples rates and lag.
    pub sample_every: Duration,
    /// How long one redrive request may run (a slow rate then takes several).
    pub redrive_time_max: Duration,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: None,
            cors_origins: Vec::new(),
            insecure: false,
            streams_max: 10_000,
            stream_buffer: 1_024,
            stream_stall: Duration::from_secs(10),
            heartbeat: Duration::from_secs(15),
            stream_retry: Duration::from_secs(1),
            body_bytes_max: 8 << 20,
            filters_max: 16,
            ws_subscriptions_max: 64,
            read_limit_max: 1_000,
            read_bytes_max: 1 << 20,
            sample_every: Duration::from_secs(5),
            redrive_time_max: Duration::from_secs(60),
        }
    }
}

impl GatewayConfig {
    /// Sets the listen address.
    pub fn listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Sets the tokens.
    pub fn tokens(mut self, tokens: Tokens) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// Sets the CORS allow-list.
    pub fn cors_origins(mut self, origins: Vec<String>) -> Self {
        self.cors_origins = origins;
        self
    }

    /// Sets the per-stream buffer (events).
    pub fn stream_buffer(mut self, events: usize) -> Self {
        self.stream_buffer = events.max(1);
        self
    }

    /// Sets how long a full stream buffer is tolerated.
    pub fn stream_stall(mut self, stall: Duration) -> Self {
        self.stream_stall = stall;
        self
    }

    /// Sets how long browsers wait before reconnecting.
    pub fn stream_retry(mut self, retry: Duration) -> Self {
        self.stream_retry = retry;
        self
    }

    /// Sets the most streams at once.
    pub fn streams_max(mut self, streams: usize) -> Self {
        self.streams_max = streams;
        self
    }

    /// Sets how often the console samples rates and lag.
    pub fn sample_every(mut self, every: Duration) -> Self {
        self.sample_every = every.max(Duration::from_millis(10));
        self
    }

    /// Sets the largest request body.
    pub fn body_bytes_max(mut self, bytes: usize) -> Self {
        self.body_bytes_max = bytes;
        self
    }
}
