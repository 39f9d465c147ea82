//! Event schemas in a Confluent-compatible schema registry (Herald's own on :8081, or
//! Confluent's, or Karapace): the [`Publisher`](crate::Publisher) registers — or, when it
//! was given no schema for an event type, looks up — the schema of each event type once
//! per subject, validates every event against it before sending (an invalid event is an
//! error and nothing is sent), and marks the record with the schema's id: a `schema-id`
//! header on plain JSON (the default: the seeds read plain JSON), or Confluent's framing
//! (a zero byte and the id before the JSON) that Confluent's deserializers read.
//!
//! The registered schema describes the whole record value: the standard envelope with
//! the event type's schema as its `data` ([`envelope_schema`]).

mod client;
mod envelope;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde_json::Value;

pub use client::{encode as path_segment, request};
pub use envelope::envelope_schema;

/// How a record says which schema it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// Plain JSON with a `schema-id` header (the default).
    #[default]
    Header,
    /// Confluent's wire format: a zero byte, the id (4 bytes, big-endian), the JSON.
    Confluent,
}

/// How an event's subject is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubjectNaming {
    /// `<topic>-value` (Confluent's TopicNameStrategy, the default).
    #[default]
    Topic,
    /// The event type (as Confluent's RecordNameStrategy names a record).
    RecordName,
}

/// Where the registry is and how records carry schema ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    /// The registry's base URL (`http://127.0.0.1:8081`).
    pub url: String,
    /// Header or Confluent framing.
    pub framing: Framing,
    /// Subject naming.
    pub naming: SubjectNaming,
    /// How long one registry request may take.
    pub timeout: Duration,
}

impl RegistrySettings {
    /// The registry at `url`, with the defaults.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            framing: Framing::Header,
            naming: SubjectNaming::Topic,
            timeout: Duration::from_secs(10),
        }
    }

    fn subject(&self, topic: &str, event_type: &str) -> String {
        match self.naming {
            SubjectNaming::Topic => format!("{topic}-value"),
            SubjectNaming::RecordName => event_type.to_string(),
        }
    }
}

/// Why an event could not be matched to its schema.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The registry could not be reached or refused.
    #[error("schema registry at {url}, subject {subject}: {reason}")]
    Registry {
        /// The registry.
        url: String,
        /// The subject.
        subject: String,
        /// What went wrong (Confluent's error code and message when it answered).
        reason: String,
    },
    /// The event does not follow its schema.
    #[error("{event_type} does not follow schema {id} of {subject}: {}", errors.join("; "))]
    Invalid {
        /// The event type.
        event_type: String,
        /// The subject.
        subject: String,
        /// The schema's id.
        id: u32,
        /// What is wrong, by JSON pointer.
        errors: Vec<String>,
    },
}

/// One subject's schema, ready to validate.
#[derive(Debug)]
pub(crate) struct Known {
    pub(crate) id: u32,
    /// The validator checks the event's data alone (the schema is Herald's envelope
    /// schema); else the whole envelope.
    pub(crate) data_only: bool,
    /// The id as the `schema-id` header writes it.
    pub(crate) id_text: String,
    subject: String,
    validator: jsonschema::Validator,
}

impl Known {
    /// Compiles schema `id` of `subject`. Herald's own envelope schema for `event_type`
    /// is compiled on its data part (the envelope is right by construction); any other
    /// schema whole.
    fn compile(id: u32, subject: String, event_type: &str, schema: &Value) -> Result<Self, String> {
        let data_part = data_part(event_type, schema);
        let checked = data_part.as_ref().unwrap_or(schema);
        let validator = jsonschema::validator_for(checked).map_err(|e| format!("the schema does not compile: {e}"))?;
        Ok(Self { id, id_text: id.to_string(), subject, validator, data_only: data_part.is_some() })
    }

    /// Checks the event (its data if [`Self::data_only`], else the envelope, as a JSON
    /// value) against the schema.
    pub(crate) fn validate(&self, event_type: &str, value: &Value) -> Result<(), SchemaError> {
        let invalid = |errors| SchemaError::Invalid {
            event_type: event_type.to_string(),
            subject: self.subject.clone(),
            id: self.id,
            errors,
        };
        if self.validator.is_valid(value) {
            return Ok(());
        }
        let prefix = if self.data_only { "/data" } else { "" };
        let errors: Vec<String> =
            self.validator.iter_errors(value).take(8).map(|e| format!("{prefix}{}: {e}", e.instance_path())).collect();
        Err(invalid(errors))
    }
}

/// Topic -> each event type's schema on it.
type ByTopic = HashMap<String, Vec<(&'static str, Arc<Known>)>>;

/// A publisher's schemas: the ones it was given by event type, and each subject's once
/// resolved.
#[derive(Debug)]
pub(crate) struct Schemas {
    settings: RegistrySettings,
    given: Mutex<HashMap<String, Value>>,
    /// Resolved subjects (resolving holds this lock: one registry call per subject).
    known: tokio::sync::Mutex<HashMap<String, Arc<Known>>>,
    /// Topic -> (event type, schema): the per-publish lookup, without allocating.
    by_topic: RwLock<ByTopic>,
    /// Schemas by id, for consumers.
    by_id: RwLock<HashMap<u32, Arc<Known>>>,
}

impl Schemas {
    pub(crate) fn new(settings: RegistrySettings) -> Self {
        Self {
            settings,
            given: Mutex::new(HashMap::new()),
            known: tokio::sync::Mutex::new(HashMap::new()),
            by_topic: RwLock::new(HashMap::new()),
            by_id: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn settings(&self) -> &RegistrySettings {
        &self.settings
    }

    /// Uses `data_schema` for `event_type` (registered at its first publish).
    pub(crate) fn give(&self, event_type: &str, data_schema: Value) {
        crate::sync::lock(&self.given).insert(event_type.to_string(), data_schema);
    }

    /// The schema for `event_type` on `topic`: registered from the given one, or the
    /// subject's latest; resolved once per subject.
    pub(crate) async fn resolve(&self, topic: &str, event_type: &'static str) -> Result<Arc<Known>, SchemaError> {
        let cached = read(&self.by_topic)
            .get(topic)
            .and_then(|types| types.iter().find(|(t, _)| *t == event_type).map(|(_, k)| Arc::clone(k)));
        if let Some(found) = cached {
            return Ok(found);
        }
        let found = self.resolve_subject(topic, event_type).await?;
        write(&self.by_topic).entry(topic.to_string()).or_default().push((event_type, Arc::clone(&found)));
        Ok(found)
    }

    /// The schema with `id` (for a consumer checking a record of `event_type`), fetched
    /// once.
    pub(crate) async fn for_id(&self, id: u32, event_type: &str) -> Result<Arc<Known>, SchemaError> {
        if let Some(found) = read(&self.by_id).get(&id) {
            return Ok(Arc::clone(found));
        }
        let subject = format!("schema id {id}");
        let fail =
            |reason: String| SchemaError::Registry { url: self.settings.url.clone(), subject: subject.clone(), reason };
        let schema = client::by_id(&self.settings, id).await.map_err(fail)?;
        let found = Arc::new(Known::compile(id, subject.clone(), event_type, &schema).map_err(fail)?);
        write(&self.by_id).insert(id, Arc::clone(&found));
        Ok(found)
    }

    async fn resolve_subject(&self, topic: &str, event_type: &str) -> Result<Arc<Known>, SchemaError> {
        let subject = self.settings.subject(topic, event_type);
        let mut known = self.known.lock().await;
        if let Some(found) = known.get(&subject) {
            return Ok(Arc::clone(found));
        }
        let given = crate::sync::lock(&self.given).get(event_type).cloned();
        let fail =
            |reason: String| SchemaError::Registry { url: self.settings.url.clone(), subject: subject.clone(), reason };
        let (id, schema) = match given {
            Some(data) => {
                let schema = envelope_schema(event_type, data);
                let id = client::register(&self.settings, &subject, &schema).await.map_err(fail)?;
                (id, schema)
            }
            None => client::latest(&self.settings, &subject).await.map_err(fail)?,
        };
        let found = Arc::new(Known::compile(id, subject.clone(), event_type, &schema).map_err(fail)?);
        known.insert(subject, Arc::clone(&found));
        Ok(found)
    }
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// The data part of Herald's envelope schema for `event_type` (with the root's
/// definitions), or `None` for any other schema.
fn data_part(event_type: &str, schema: &Value) -> Option<Value> {
    let properties = schema.get("properties")?;
    if properties.get("eventType")?.get("const")?.as_str()? != event_type {
        return None;
    }
    let mut data = properties.get("data")?.clone();
    if let Some(fields) = data.as_object_mut() {
        for key in ["$defs", "definitions", "$schema"] {
            if let Some(value) = schema.get(key) {
                fields.insert(key.to_string(), value.clone());
            }
        }
    }
    Some(data)
}

/// `payload` in Confluent's wire format for schema `id`.
pub(crate) fn confluent_frame(id: u32, payload: Vec<u8>) -> Vec<u8> {
    let mut framed = Vec::with_capacity(payload.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&id.to_be_bytes());
    framed.extend_from_slice(&payload);
    framed
}

/// `payload` without Confluent's framing, if it has it (JSON never starts with a zero byte).
pub(crate) fn unframed(payload: &[u8]) -> &[u8] {
    match payload {
        [0, _, _, _, _, rest @ ..] => rest,
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confluent_framing_round_trips_and_plain_json_passes_through() {
        let framed = confluent_frame(258, b"{\"a\":1}".to_vec());
        assert_eq!(&framed[..5], &[0, 0, 0, 1, 2]);
        assert_eq!(unframed(&framed), b"{\"a\":1}");
        assert_eq!(unframed(b"{\"a\":1}"), b"{\"a\":1}");
        assert_eq!(unframed(b""), b"");
    }
}
