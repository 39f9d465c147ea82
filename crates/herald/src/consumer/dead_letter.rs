//! Dead letters: a copy of the failed record in `<topic>.dlq`, with headers telling its
//! story, acknowledged by the broker before the source offset may be committed.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::RetryPolicy;
use super::record::Record;
use crate::backoff::jitter;
use crate::time::rfc3339_now;

/// Why a record is dead-lettered.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    /// `retryable`, `permanent`, `undecodable`, `panicked`, `unknown-type` or `parked`.
    pub(crate) class: &'static str,
    pub(crate) message: String,
    pub(crate) attempts: u32,
}

/// The headers a dead letter carries besides the original ones (the convention lives in
/// `herald-common`, shared with `herald dlq` and the gateway).
pub use herald_common::dlq::DLQ_HEADERS;

/// Copies `message` to `<topic>.dlq` and returns once the broker acknowledged it,
/// retrying with backoff for as long as it takes: the source offset must not be committed
/// before the dead letter is safe.
pub(crate) async fn dead_letter(
    message: &Record,
    failure: &Failure,
    group: &str,
    retry: &RetryPolicy,
    producer: &FutureProducer,
) {
    // Always appended: a dead-letter topic's own failures go to `<topic>.dlq.dlq`, not back.
    let topic = format!("{}{}", message.topic(), herald_common::dlq::DLQ_SUFFIX);
    let (partition, offset, attempts) =
        (message.partition().to_string(), message.offset().to_string(), failure.attempts.to_string());
    let key = message.key().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
    let failed_at = rfc3339_now();
    let mut headers = OwnedHeaders::new();
    // rdkafka takes names as `&str`: one that is not UTF-8 goes out with U+FFFD in place of
    // the bad bytes (its value intact) rather than not at all.
    for (key, value) in message.headers().filter(|(name, _)| !name.starts_with(herald_common::dlq::DLQ_HEADER_PREFIX)) {
        headers = headers.insert(Header { key: &key, value });
    }
    let values = [
        message.topic(),
        partition.as_str(),
        offset.as_str(),
        key.as_str(),
        failure.class,
        failure.message.as_str(),
        attempts.as_str(),
        failed_at.as_str(),
        group,
    ];
    for (name, value) in DLQ_HEADERS.into_iter().zip(values) {
        headers = headers.insert(Header { key: name, value: Some(value) });
    }
    let mut failures = 0;
    loop {
        let mut record = FutureRecord::to(&topic).headers(headers.clone());
        if let Some(payload) = message.payload_or_null() {
            record = record.payload(payload);
        }
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        match producer.send(record, Duration::from_secs(30)).await {
            Ok(_) => {
                metrics::counter!("herald_dead_lettered_total", "topic" => message.topic().to_string()).increment(1);
                return;
            }
            Err((error, _)) => {
                tracing::error!(%topic, %error, "dead-letter publish failed; retrying before committing past it");
                failures += 1;
                tokio::time::sleep(retry.backoff.delay(failures, jitter())).await;
            }
        }
    }
}
