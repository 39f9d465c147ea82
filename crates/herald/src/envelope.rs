//! [`Envelope`]: the seeds' standard event wrapper (DESIGN section 4), plus causationId.
//!
//! `{ "eventId", "eventType", "eventVersion", "timestamp", "source", "correlationId"?,
//! "causationId"?, "traceId"?, "data" }`, camelCase JSON; unknown fields are ignored on read
//! so producers can add fields without breaking consumers.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Event;

/// The seeds' limit on an encoded envelope: 1 MiB.
pub const ENVELOPE_BYTES_MAX_DEFAULT: usize = 1 << 20;

/// Why an envelope could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The encoded envelope is over the limit.
    #[error("{event_type} envelope of {bytes} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Its event type.
        event_type: String,
        /// Its size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The data did not serialize, or the bytes are not an envelope of this event.
    #[error("{context}: {source}")]
    Json {
        /// What was being done.
        context: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
}

/// One event in the standard envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    /// Unique per event (UUID v7, so ids sort by creation time).
    pub event_id: Uuid,
    /// E.g. `user.created`.
    pub event_type: String,
    /// E.g. `1.0.0`.
    pub event_version: String,
    /// RFC 3339, UTC, milliseconds.
    pub timestamp: String,
    /// The service that published it.
    pub source: String,
    /// Ties together every event of one business flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The event id of the event that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// W3C trace id (32 hex digits), if traced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The event itself.
    pub data: T,
}

impl<T: Serialize> Envelope<T> {
    /// Encodes as JSON, refusing more than `max_bytes`.
    pub fn to_json(&self, max_bytes: usize) -> Result<Vec<u8>, EnvelopeError> {
        let bytes = serde_json::to_vec(self)
            .map_err(|source| EnvelopeError::Json { context: format!("serializing {}", self.event_type), source })?;
        if bytes.len() > max_bytes {
            return Err(EnvelopeError::TooLarge {
                event_type: self.event_type.clone(),
                bytes: bytes.len(),
                max: max_bytes,
            });
        }
        Ok(bytes)
    }
}

impl<E: Event> Envelope<E> {
    /// Wraps `data` with a fresh id and the current time.
    pub fn new(source: impl Into<String>, data: E) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: E::TYPE.to_string(),
            event_version: format!("{}.0.0", E::VERSION),
            timestamp: crate::time::rfc3339_now(),
            source: source.into(),
            correlation_id: None,
            causation_id: None,
            trace_id: None,
            data,
        }
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets the causation id (the id of the event that caused this one).
    pub fn with_causation_id(mut self, id: impl Into<String>) -> Self {
        self.causation_id = Some(id.into());
        self
    }

    /// Decodes JSON, refusing more than `max_bytes` before parsing.
    pub fn from_json(bytes: &[u8], max_bytes: usize) -> Result<Self, EnvelopeError> {
        if bytes.len() > max_bytes {
            return Err(EnvelopeError::TooLarge {
                event_type: E::TYPE.to_string(),
                bytes: bytes.len(),
                max: max_bytes,
            });
        }
        serde_json::from_slice(bytes)
            .map_err(|source| EnvelopeError::Json { context: format!("reading a {} envelope", E::TYPE), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct UserCreated {
        user_id: String,
        email: String,
    }
    crate::event!(UserCreated, type = "user.created", version = 1, key = user_id);

    #[test]
    fn the_envelope_has_the_seeds_fields_and_ignores_unknown_ones() {
        let data = UserCreated { user_id: "u1".into(), email: "a@example.com".into() };
        let envelope = Envelope::new("auth-service", data.clone()).with_correlation_id("c1");
        let json: serde_json::Value =
            serde_json::from_slice(&envelope.to_json(1 << 20).expect("encode")).expect("json");
        for field in ["eventId", "eventType", "eventVersion", "timestamp", "source", "correlationId", "data"] {
            assert!(json.get(field).is_some(), "{field} missing in {json}");
        }
        assert_eq!(json["eventType"], "user.created");
        assert_eq!(json["eventVersion"], "1.0.0");
        assert!(json.get("causationId").is_none(), "absent ids are left out");
        let mut extended = json.clone();
        extended["addedLater"] = serde_json::json!({"x": 1});
        let read: Envelope<UserCreated> =
            Envelope::from_json(&serde_json::to_vec(&extended).expect("json"), 1 << 20).expect("decode");
        assert_eq!(read.data, data);
        assert_eq!(read.event_id, envelope.event_id);
    }

    #[test]
    fn oversized_envelopes_are_refused_both_ways() {
        let data = UserCreated { user_id: "u1".into(), email: "x".repeat(2_000) };
        let error = Envelope::new("auth-service", data).to_json(1_000).expect_err("too large");
        assert!(matches!(error, EnvelopeError::TooLarge { bytes, max: 1_000, .. } if bytes > 1_000));
        let error = Envelope::<UserCreated>::from_json(&[b' '; 2_000], 1_000).expect_err("too large");
        assert!(matches!(error, EnvelopeError::TooLarge { .. }));
        let error = Envelope::<UserCreated>::from_json(b"{\"eventId\": 5}", 1_000).expect_err("not an envelope");
        assert!(error.to_string().contains("user.created"), "{error}");
    }
}
