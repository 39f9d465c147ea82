//! Projections fed from Kafka topics through the consumer runtime: one consumer group per
//! projection and version (`herald.projection.<name>.v<version>`), one record of a
//! partition at a time, each folded in its own transaction that first moves the
//! partition's checkpoint (`herald_projection_offsets`) past it. A redelivered record (after
//! a crash or a rebalance, before the group's commit) finds the checkpoint past it and is
//! passed over, so each record is applied once.
//!
//! A failing `apply` parks the partition at that record: it is recorded as the parked
//! event (`herald projections status`) and retried with the retry policy's backoff, for
//! ever, until it succeeds or is told to `skip` (recorded in `herald_projection_skips`).

use std::sync::Arc;

use super::{Command, Projection, ProjectionDb, ProjectionError};
use crate::consumer::{Consumer, ConsumerConfig, Context, HandlerError, RetryPolicy};
use crate::store::{Position, StoredEvent};

/// A [`Consumer`] that folds `topics`' records of the projection's event types into it:
/// creates the version's tables if new, then returns the consumer for the caller to
/// [`run`](Consumer::run). The group id is `herald.projection.<name>.v<version>`; the
/// rest of `config` (brokers, topics, backoff, librdkafka settings) is used as given.
pub async fn projection_consumer<D, P>(
    mut config: ConsumerConfig,
    db: D,
    projection: P,
) -> Result<Consumer, ProjectionError>
where
    D: ProjectionDb,
    P: Projection<D>,
{
    let (name, version) = (projection.name().to_string(), projection.version());
    if projection.event_types().is_empty() {
        let reason = "a Kafka-fed projection names its event types (records are routed by type)";
        return Err(ProjectionError::Refused { name, version, reason });
    }
    db.prepare(&name, version, projection.tables()).await?;
    config.group_id = format!("herald.projection.{name}.v{version}");
    config.in_flight_per_partition = 1;
    config.retry = RetryPolicy { backoff: config.retry.backoff, max_attempts: u32::MAX };
    let types: Vec<&'static str> =
        projection.event_types().iter().map(|t| &*Box::leak(t.to_string().into_boxed_str())).collect();
    let fold = Arc::new(Fold { db, projection, name, version, parked: std::sync::Mutex::new(None) });
    let mut consumer = Consumer::new(config);
    for event_type in types {
        let fold = Arc::clone(&fold);
        consumer = consumer.on_record(event_type, move |context| {
            let fold = Arc::clone(&fold);
            async move { fold.record(event_type, &context).await }
        });
    }
    Ok(consumer)
}

/// What a Kafka-fed projection's handlers share.
struct Fold<D, P> {
    db: D,
    projection: P,
    name: String,
    version: u32,
    /// The partition this process parked the projection on (cleared when a record of
    /// that partition folds: the parked one got through).
    parked: std::sync::Mutex<Option<(String, i32)>>,
}

impl<D: ProjectionDb, P: Projection<D>> Fold<D, P> {
    async fn record(&self, event_type: &str, context: &Context) -> Result<(), HandlerError> {
        let event = stored_event(event_type, context)?;
        let (name, version, record) = (self.name.as_str(), self.version, context.record());
        let mut tx = self.db.begin().await.map_err(HandlerError::retryable)?;
        let fresh = D::advance_offset_in(&mut tx, name, version, record.topic(), record.partition(), record.offset())
            .await
            .map_err(HandlerError::retryable)?;
        if !fresh {
            return D::rollback(tx).await.map_err(HandlerError::retryable);
        }
        match self.projection.apply(&event, &mut tx).await {
            Ok(()) => {
                D::commit(tx).await.map_err(HandlerError::retryable)?;
                if self.unpark_if_here(record.topic(), record.partition()) {
                    self.db.resolve(name, version, Command::Retry).await.map_err(HandlerError::retryable)?;
                }
                Ok(())
            }
            Err(error) => {
                D::rollback(tx).await.map_err(HandlerError::retryable)?;
                self.failed(&event, context, error).await
            }
        }
    }

    /// Skips the record if told to, else parks at it and has the runtime retry it.
    async fn failed(&self, event: &StoredEvent, context: &Context, error: String) -> Result<(), HandlerError> {
        let (name, version, record) = (self.name.as_str(), self.version, context.record());
        let state = self.db.state(name, version).await.map_err(HandlerError::retryable)?;
        let parked_here = state.parked.as_ref().is_some_and(|p| p.event_id == event.event_id.to_string());
        if parked_here && state.command == Some(Command::Skip) {
            let mut tx = self.db.begin().await.map_err(HandlerError::retryable)?;
            D::advance_offset_in(&mut tx, name, version, record.topic(), record.partition(), record.offset())
                .await
                .map_err(HandlerError::retryable)?;
            D::commit(tx).await.map_err(HandlerError::retryable)?;
            self.db.resolve(name, version, Command::Skip).await.map_err(HandlerError::retryable)?;
            self.unpark_if_here(record.topic(), record.partition());
            tracing::warn!(projection = name, version, event_id = %event.event_id, "skipped a failing record as told");
            return Ok(());
        }
        if !parked_here {
            tracing::error!(
                projection = name, version, event_id = %event.event_id, topic = record.topic(),
                partition = record.partition(), offset = record.offset(), %error,
                "projection parked at a failing record; it retries, or skip it"
            );
            self.db.park(name, version, event, &error).await.map_err(HandlerError::retryable)?;
            *crate::sync::lock(&self.parked) = Some((record.topic().to_string(), record.partition()));
        }
        Err(HandlerError::retryable(error))
    }
}

impl<D, P> Fold<D, P> {
    /// Forgets the park if it was on this partition; true if it was.
    fn unpark_if_here(&self, topic: &str, partition: i32) -> bool {
        let mut parked = crate::sync::lock(&self.parked);
        let here = parked.as_ref().is_some_and(|(t, p)| t == topic && *p == partition);
        if here {
            *parked = None;
        }
        here
    }
}

/// The record as the event a projection folds: its position is (partition, offset), its
/// stream the record key, its time the envelope's.
fn stored_event(event_type: &str, context: &Context) -> Result<StoredEvent, HandlerError> {
    let record = context.record();
    let envelope: crate::Envelope<serde::de::IgnoredAny> = serde_json::from_slice(record.envelope_bytes())
        .map_err(|error| HandlerError::Undecodable(format!("reading a {event_type} envelope: {error}")))?;
    let created_ms = crate::time::parse_rfc3339_ms(&envelope.timestamp).unwrap_or_else(|_| crate::time::now_ms());
    let event_version = record.header("event-version").and_then(|v| v.parse().ok()).unwrap_or(1);
    Ok(StoredEvent {
        position: Position { txid: i64::from(record.partition()), id: record.offset() },
        stream_id: String::from_utf8_lossy(record.key().unwrap_or_default()).into_owned(),
        stream_version: u64::try_from(record.offset()).unwrap_or(0),
        event_id: context.event_id,
        event_type: event_type.to_string(),
        event_version,
        payload: record.envelope_bytes().to_vec(),
        created_ms,
    })
}
