//! [`Publisher`]: events in the envelope to any Kafka-compatible broker, through an
//! idempotent rdkafka producer (acks=all, murmur2_random, so keys land where the Java
//! client and kafkajs put them).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::Event;
use crate::envelope::{ENVELOPE_BYTES_MAX_DEFAULT, Envelope, EnvelopeError};
use crate::registry::{Framing, RegistrySettings, SchemaError, Schemas, SubjectNaming};

/// Publisher settings: defaults, [`PublisherConfig::from_env`] for the seeds' variables,
/// then builder methods. Times are [`Duration`]s; sizes end in their unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    /// `bootstrap.servers` (`KAFKA_BROKERS`).
    pub brokers: String,
    /// `client.id` (`KAFKA_CLIENT_ID`), also the envelope's `source`.
    pub client_id: String,
    /// `compression.codec`: none, gzip, snappy, lz4, zstd.
    pub compression: String,
    /// `linger.ms`: how long the producer waits to fill a batch.
    pub linger: Duration,
    /// How long a publish may take before it fails (`message.timeout.ms`).
    pub timeout: Duration,
    /// Largest encoded envelope.
    pub envelope_max_bytes: usize,
    /// Further librdkafka settings (`security.protocol`, `sasl.*`, `ssl.*`, ...), applied
    /// last, so they override herald's choices.
    pub rdkafka: Vec<(String, String)>,
    /// A schema registry (`SCHEMA_REGISTRY_URL`): events are validated against their
    /// schema before sending and carry its id (see [`crate::registry`]).
    pub schema_registry: Option<RegistrySettings>,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".to_string(),
            client_id: "herald".to_string(),
            compression: "none".to_string(),
            linger: Duration::from_millis(5),
            timeout: Duration::from_secs(30),
            envelope_max_bytes: ENVELOPE_BYTES_MAX_DEFAULT,
            rdkafka: Vec::new(),
            schema_registry: None,
        }
    }
}

impl PublisherConfig {
    /// Defaults, with `KAFKA_BROKERS` and `KAFKA_CLIENT_ID` from the environment when set.
    pub fn from_env() -> Self {
        let mut config = Self::default();
        if let Ok(brokers) = std::env::var("KAFKA_BROKERS") {
            config.brokers = brokers;
        }
        if let Ok(client_id) = std::env::var("KAFKA_CLIENT_ID") {
            config.client_id = client_id;
        }
        if let Ok(url) = std::env::var("SCHEMA_REGISTRY_URL") {
            config.schema_registry = Some(RegistrySettings::new(url));
        }
        config
    }

    /// Validates events against their schemas in the registry at `url` and marks each
    /// record with its schema's id (a `schema-id` header unless [`Self::schema_framing`]).
    pub fn schema_registry(mut self, url: impl Into<String>) -> Self {
        self.schema_registry = Some(RegistrySettings::new(url));
        self
    }

    /// With a registry: header (default) or Confluent framing.
    pub fn schema_framing(mut self, framing: Framing) -> Self {
        if let Some(registry) = &mut self.schema_registry {
            registry.framing = framing;
        }
        self
    }

    /// With a registry: subjects named `<topic>-value` (default) or by event type.
    pub fn subject_naming(mut self, naming: SubjectNaming) -> Self {
        if let Some(registry) = &mut self.schema_registry {
            registry.naming = naming;
        }
        self
    }

    setters! {
        /// Sets the brokers.
        brokers: impl Into<String>,
        /// Sets the client id (and so the envelope's source).
        client_id: impl Into<String>,
        /// Sets the compression codec.
        compression: impl Into<String>,
        /// Sets `linger.ms`.
        linger: Duration,
        /// Sets how long a publish may take.
        timeout: Duration,
        /// Sets the largest encoded envelope.
        envelope_max_bytes: usize,
    }

    /// Adds a librdkafka setting, applied after herald's own (for example
    /// `.rdkafka("security.protocol", "SASL_SSL")`).
    pub fn rdkafka(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.rdkafka.push((name.into(), value.into()));
        self
    }
}

/// Applies `overrides` to `client`, after herald's own settings: every client herald
/// creates goes through here.
pub(crate) fn apply_overrides(client: &mut ClientConfig, overrides: &[(String, String)]) {
    for (name, value) in overrides {
        client.set(name, value);
    }
}

/// Why a publish failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The envelope could not be encoded or is too large.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The producer could not be created (bad settings).
    #[error("cannot create a producer for {brokers}: {source}")]
    Config {
        /// The brokers.
        brokers: String,
        /// What librdkafka said.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// Events queued before a flush were not all acknowledged in time.
    #[error("flushing the publisher's queue failed: {source}")]
    Flush {
        /// What librdkafka said.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The event's schema could not be resolved, or the event does not follow it
    /// (nothing was sent).
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// The broker did not acknowledge the event.
    #[error("publishing {event_type} to {topic} failed: {source}")]
    Delivery {
        /// The event type.
        event_type: String,
        /// The topic.
        topic: String,
        /// What librdkafka said.
        #[source]
        source: Box<rdkafka::error::KafkaError>,
    },
}

/// Where a published event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
}

/// Publishes events; cheap to clone and share.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    config: PublisherConfig,
    schemas: Option<Arc<Schemas>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Publisher {
    /// A publisher with these settings (connects lazily).
    pub fn new(config: PublisherConfig) -> Result<Self, PublishError> {
        let producer = producer_config(&config)
            .create()
            .map_err(|source| PublishError::Config { brokers: config.brokers.clone(), source: Box::new(source) })?;
        let schemas = config.schema_registry.clone().map(|settings| Arc::new(Schemas::new(settings)));
        Ok(Self { producer, config, schemas })
    }

    /// Uses `data_schema` (JSON Schema) for `E`'s data: registered, inside the envelope's
    /// schema, at `E`'s first publish. Without one, the subject's latest schema is used.
    /// Does nothing without a registry.
    pub fn schema<E: Event>(&self, data_schema: serde_json::Value) -> &Self {
        if let Some(schemas) = &self.schemas {
            schemas.give(E::TYPE, data_schema);
        }
        self
    }

    /// [`Self::schema`] derived from the Rust type with schemars.
    pub fn derive_schema<E: Event + schemars::JsonSchema>(&self) -> &Self {
        self.schema::<E>(serde_json::Value::from(schemars::schema_for!(E)))
    }

    /// The settings.
    pub fn config(&self) -> &PublisherConfig {
        &self.config
    }

    /// The underlying producer (the consumer runtime writes dead letters through it).
    pub(crate) fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Publishes `event` to its default topic in a fresh envelope; returns where it landed
    /// once the broker acknowledged it (acks=all).
    pub async fn publish<E: Event>(&self, event: E) -> Result<Published, PublishError> {
        self.publish_envelope(&Envelope::new(self.config.client_id.clone(), event)).await
    }

    /// Publishes a prepared envelope (to set correlation or causation ids) to its
    /// event's default topic.
    pub async fn publish_envelope<E: Event>(&self, envelope: &Envelope<E>) -> Result<Published, PublishError> {
        self.send(E::TOPIC, metrics::SharedString::const_str(E::TOPIC), envelope).await
    }

    /// Publishes a prepared envelope to `topic`.
    pub async fn publish_to<E: Event>(&self, topic: &str, envelope: &Envelope<E>) -> Result<Published, PublishError> {
        self.send(topic, metrics::SharedString::from(topic.to_string()), envelope).await
    }

    /// `topic_label` is the metrics label: borrowed for the event's own (static) topic, so
    /// the common path does not allocate for it.
    async fn send<E: Event>(
        &self,
        topic: &str,
        topic_label: metrics::SharedString,
        envelope: &Envelope<E>,
    ) -> Result<Published, PublishError> {
        let mut payload = envelope.to_json(self.config.envelope_max_bytes)?;
        let key = envelope.data.key();
        let mut headers = OwnedHeaders::new_with_capacity(7);
        for (name, value) in envelope_headers(envelope, E::TYPE, E::VERSION).iter().flatten() {
            headers = headers.insert(Header { key: name, value: Some(value.as_ref()) });
        }
        if let Some(schemas) = &self.schemas {
            let known = schemas.resolve(topic, E::TYPE).await?;
            // Straight from the event: building the value costs less than parsing the bytes.
            let value =
                if known.data_only { serde_json::to_value(&envelope.data) } else { serde_json::to_value(envelope) }
                    .map_err(|source| EnvelopeError::Json { context: format!("validating {}", E::TYPE), source })?;
            if let Err(invalid) = known.validate(E::TYPE, &value) {
                metrics::counter!("herald_publish_invalid_total", "topic" => topic_label).increment(1);
                return Err(invalid.into());
            }
            match schemas.settings().framing {
                Framing::Header => {
                    headers = headers.insert(Header { key: "schema-id", value: Some(known.id_text.as_str()) });
                }
                Framing::Confluent => payload = crate::registry::confluent_frame(known.id, payload),
            }
        }
        let mut record = FutureRecord::to(topic).payload(&payload).headers(headers);
        if let Some(key) = &key {
            record = record.key(key);
        }
        let delivered = self.producer.send(record, self.config.timeout).await;
        match delivered {
            Ok(delivery) => {
                metrics::counter!("herald_published_total", "topic" => topic_label).increment(1);
                Ok(Published { partition: delivery.partition, offset: delivery.offset })
            }
            Err((source, _)) => {
                metrics::counter!("herald_publish_failures_total", "topic" => topic_label).increment(1);
                Err(PublishError::Delivery {
                    event_type: E::TYPE.to_string(),
                    topic: topic.to_string(),
                    source: Box::new(source),
                })
            }
        }
    }

    /// Publishes without waiting (for request handlers): a failure is logged and counted
    /// (`herald_publish_failures_total`), never returned. Needs a tokio runtime.
    pub fn publish_detached<E: Event>(&self, event: E) {
        let publisher = self.clone();
        tokio::spawn(async move {
            if let Err(error) = publisher.publish(event).await {
                tracing::error!(%error, "detached publish failed");
            }
        });
    }

    /// Waits until every queued event is acknowledged or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.producer.flush(timeout).map_err(|source| PublishError::Flush { source: Box::new(source) })
    }
}

/// The producer settings herald uses everywhere: idempotent, acks=all, murmur2_random
/// (keys land where the Java client and kafkajs put them), `config`'s choices, then its
/// librdkafka overrides.
pub(crate) fn producer_config(config: &PublisherConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("compression.codec", &config.compression)
        .set("linger.ms", config.linger.as_millis().to_string())
        .set("message.timeout.ms", config.timeout.as_millis().to_string());
    apply_overrides(&mut client, &config.rdkafka);
    client
}

/// The headers every herald event carries, in order: `event-type`, `event-version`,
/// `content-type`, `event-id`, and `correlation-id` and `traceparent` when the envelope has
/// those ids. The publisher and the outbox both write exactly these.
pub(crate) fn envelope_headers<'a, T>(
    envelope: &'a Envelope<T>,
    event_type: &'a str,
    version: u32,
) -> [Option<(&'static str, Cow<'a, str>)>; 6] {
    [
        Some(("event-type", Cow::Borrowed(event_type))),
        Some(("event-version", Cow::Owned(version.to_string()))),
        Some(("content-type", Cow::Borrowed("application/json"))),
        Some(("event-id", Cow::Owned(envelope.event_id.to_string()))),
        envelope.correlation_id.as_deref().map(|id| ("correlation-id", Cow::Borrowed(id))),
        envelope.trace_id.as_deref().and_then(traceparent).map(|t| ("traceparent", Cow::Owned(t))),
    ]
}

/// A W3C `traceparent` for a 32-hex-digit trace id (a fresh parent span id derived from it).
fn traceparent(trace_id: &str) -> Option<String> {
    let valid =
        trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()) && trace_id.bytes().any(|b| b != b'0');
    valid.then(|| {
        format!("00-{}-{}-01", trace_id.to_ascii_lowercase(), &uuid::Uuid::now_v7().simple().to_string()[16..])
    })
}
