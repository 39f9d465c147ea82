//! `/metrics` (Prometheus text through the `metrics` facade), `/healthz`, `/readyz`, and
//! the per-request counters. The broker's gauges — partition bounds and sizes, group lag
//! in offsets and seconds, dead-letter depth — are set at scrape time from its state.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_broker::internals::Broker;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::auth::Read;
use crate::groups::{group_ids, lag_of};
use crate::problem::Problem;
use crate::server::{App, blocking};
use crate::topics::partitions;

/// Request latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// The process's Prometheus recorder: installed as the global `metrics` recorder the first
/// time, so the framework's and the gateway's metrics render together.
pub(crate) fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder =
                || PrometheusBuilder::new().set_buckets(&LATENCY_BUCKETS).unwrap_or_else(|_| PrometheusBuilder::new());
            builder().install_recorder().unwrap_or_else(|error| {
                tracing::warn!(%error, "another metrics recorder is installed; /metrics shows only its own view");
                builder().build_recorder().handle()
            })
        })
        .clone()
}

pub(crate) async fn render(_: Read, State(app): State<Arc<App>>) -> Result<Response, Problem> {
    let broker = Arc::clone(&app.broker);
    blocking(move || {
        publish_gauges(&broker);
        Ok(())
    })
    .await?;
    let text = app.metrics.render();
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response())
}

fn publish_gauges(broker: &Broker) {
    for (topic, meta) in broker.topics() {
        let mut depth = 0;
        for p in partitions(broker, &topic, meta.partitions) {
            let labels = [("topic", topic.clone()), ("partition", p.partition.to_string())];
            metrics::gauge!("herald_partition_log_start_offset", &labels).set(p.log_start_offset as f64);
            metrics::gauge!("herald_partition_high_watermark", &labels).set(p.high_watermark as f64);
            metrics::gauge!("herald_partition_size_bytes", &labels).set(p.size_bytes as f64);
            depth += p.high_watermark - p.log_start_offset;
        }
        if topic.ends_with(".dlq") {
            metrics::gauge!("herald_dlq_depth", "topic" => topic.clone()).set(depth as f64);
        }
    }
    for group in group_ids(broker) {
        for lag in lag_of(broker, &group) {
            let labels =
                [("group", group.clone()), ("topic", lag.topic.clone()), ("partition", lag.partition.to_string())];
            metrics::gauge!("herald_group_lag", &labels).set(lag.lag as f64);
            metrics::gauge!("herald_group_lag_seconds", &labels).set(lag.lag_seconds);
        }
    }
}

/// Middleware: counts requests by route, method and status, with latency.
pub(crate) async fn observe(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("herald_http_requests_total", &labels).increment(1);
    metrics::histogram!("herald_http_request_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

pub(crate) async fn healthz() -> &'static str {
    "ok"
}

pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.broker.is_stopping() || *app.stopping.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response();
    }
    "ready".into_response()
}
