//! herald-gateway is `herald serve`'s HTTP side: an admin REST API under `/api/v1`
//! (topics, messages, produce, consumer groups with lag in offsets and seconds), topics as
//! Server-Sent Events that resume exactly where a client left off, Prometheus metrics,
//! health checks, the web console (server-rendered pages at `/`), and the schema
//! registry's Confluent REST API on its own listener. It runs in the broker's process and reads the logs and group state
//! directly, not over the Kafka protocol.
//!
//! It refuses to serve a non-loopback address without bearer tokens unless told to, and
//! it never drops records silently: a stream's every event carries a resume token (the
//! next offset of every partition), and a client too slow for its bounded buffer is told
//! to resync from its last token rather than skipped ahead. Every failure is an
//! `application/problem+json` response.

mod auth;
mod config;
mod console;
mod cursor;
mod dead_letters;
mod error;
mod groups;
mod messages;
mod metrics;
mod openapi;
mod problem;
mod records;
mod registry;
mod reset;
mod server;
mod session;
mod sse;
mod stream;
mod tail;
mod token;
mod topics;
mod ws;

pub use auth::{Scope, Tokens};
pub use config::GatewayConfig;
pub use console::workflows;
pub use error::GatewayError;
pub use registry::RunningRegistry;
pub use server::{RunningGateway, Sources};

/// For benchmarks: a produce batch as the gateway builds it.
#[doc(hidden)]
pub use records::{Outgoing, encode};
