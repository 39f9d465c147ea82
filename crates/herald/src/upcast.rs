//! [`Upcasters`]: old versions of an event brought to the newest shape when they are read,
//! so handlers and aggregates only ever see one. An upcaster takes an event type's `data`
//! at one version and returns it at the next; a registry chains them to the newest. The
//! event store applies them on every read path (stream reads, `read_all`, subscriptions)
//! and the consumer runtime before it decodes (`Consumer::upcasters`).
//!
//! Upcasters are the application's own compiled functions; nothing read from the
//! network or the database is ever evaluated.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::Value;

/// One step: `data` at version `n` to `data` at version `n + 1`.
pub type Upcaster = Arc<dyn Fn(Value) -> Result<Value, String> + Send + Sync>;

/// Why an event could not be upcast.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpcastError {
    /// The stored bytes are not an envelope (JSON object with `eventVersion` and `data`).
    #[error("{event_type}: not an envelope: {problem}")]
    NotAnEnvelope {
        /// The event type.
        event_type: String,
        /// What is wrong.
        problem: String,
    },
    /// An upcaster refused the data.
    #[error("{event_type} v{from} to v{}: {problem}", from + 1)]
    Refused {
        /// The event type.
        event_type: String,
        /// The version it refused to leave.
        from: u32,
        /// What it said.
        problem: String,
    },
}

/// Upcasters by event type and version.
#[derive(Clone, Default)]
pub struct Upcasters {
    chains: HashMap<String, BTreeMap<u32, Upcaster>>,
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let steps: BTreeMap<&str, Vec<u32>> =
            self.chains.iter().map(|(t, chain)| (t.as_str(), chain.keys().copied().collect())).collect();
        f.debug_struct("Upcasters").field("steps", &steps).finish()
    }
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the step from version `from` to `from + 1` of `event_type`.
    pub fn register(
        mut self,
        event_type: &str,
        from: u32,
        step: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        self.chains.entry(event_type.to_string()).or_default().insert(from, Arc::new(step));
        self
    }

    /// Whether `event_type` has any upcaster (if not, reads skip the JSON round trip).
    pub fn covers(&self, event_type: &str) -> bool {
        self.chains.contains_key(event_type)
    }

    /// The envelope `payload` of `event_type` brought to the newest version: `None` when
    /// it already is (or no upcaster applies), else the new envelope and its version.
    pub fn upcast(&self, event_type: &str, payload: &[u8]) -> Result<Option<(Vec<u8>, u32)>, UpcastError> {
        let Some(chain) = self.chains.get(event_type) else { return Ok(None) };
        let bad = |problem: String| UpcastError::NotAnEnvelope { event_type: event_type.to_string(), problem };
        let mut envelope: Value = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
        let object = envelope.as_object_mut().ok_or_else(|| bad("not an object".into()))?;
        let mut version = object
            .get("eventVersion")
            .and_then(Value::as_str)
            .and_then(|v| v.split('.').next())
            .and_then(|major| major.parse::<u32>().ok())
            .ok_or_else(|| bad("no eventVersion like \"1.0.0\"".into()))?;
        if !chain.contains_key(&version) {
            return Ok(None);
        }
        let mut data = object.remove("data").ok_or_else(|| bad("no data".into()))?;
        while let Some(step) = chain.get(&version) {
            data = step(data).map_err(|problem| UpcastError::Refused {
                event_type: event_type.to_string(),
                from: version,
                problem,
            })?;
            version += 1;
        }
        object.insert("data".into(), data);
        object.insert("eventVersion".into(), Value::String(format!("{version}.0.0")));
        let bytes = serde_json::to_vec(&envelope).map_err(|e| bad(e.to_string()))?;
        Ok(Some((bytes, version)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn envelope(version: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"eventId": "x", "eventType": "user.created", "eventVersion": version, "data": data}))
            .expect("json")
    }

    fn upcasters() -> Upcasters {
        Upcasters::new()
            .register("user.created", 1, |mut data| {
                let name = data["name"].take();
                data["full_name"] = name;
                Ok(data)
            })
            .register("user.created", 2, |mut data| {
                data["locale"] = json!("en");
                Ok(data)
            })
    }

    #[test]
    fn a_chain_takes_any_old_version_to_the_newest() {
        let (bytes, version) = upcasters()
            .upcast("user.created", &envelope("1.0.0", json!({"name": "Ada"})))
            .expect("ok")
            .expect("upcast");
        assert_eq!(version, 3);
        let read: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(read["eventVersion"], "3.0.0");
        assert_eq!(read["data"], json!({"name": null, "full_name": "Ada", "locale": "en"}));
        assert_eq!(read["eventId"], "x", "the rest of the envelope is kept");
        let from_two = upcasters().upcast("user.created", &envelope("2.0.0", json!({"full_name": "Ada"}))).expect("ok");
        assert_eq!(from_two.expect("upcast").1, 3);
    }

    #[test]
    fn the_newest_version_and_other_types_pass_untouched() {
        assert!(upcasters().upcast("user.created", &envelope("3.0.0", json!({}))).expect("ok").is_none());
        assert!(upcasters().upcast("order.placed", b"not even json").expect("ok").is_none());
    }

    #[test]
    fn garbage_and_refusals_are_errors_not_panics() {
        let up = upcasters().register("user.created", 1, |_| Err("no name".into()));
        assert!(matches!(up.upcast("user.created", &envelope("1.0.0", json!({}))), Err(UpcastError::Refused { .. })));
        for bad in [&b"[]"[..], b"{", br#"{"eventVersion": 1}"#, br#"{"eventVersion": "1.0.0"}"#] {
            assert!(upcasters().upcast("user.created", bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
