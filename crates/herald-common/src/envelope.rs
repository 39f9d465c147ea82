//! The seeds' standard envelope around JSON data that is not a Rust type: what
//! `herald produce --envelope` and the gateway's `"envelope"` produce option send. The
//! framework's typed `herald::Envelope` writes the same fields and the same headers.

use serde_json::{Value, json};

/// Who wraps the data and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrap<'a> {
    /// `eventType`, e.g. `order.placed`.
    pub event_type: &'a str,
    /// The major version: `eventVersion` is `<version>.0.0`.
    pub version: u32,
    /// `source`: the service (or tool) that published it.
    pub source: &'a str,
    /// `correlationId`, when the event belongs to a flow.
    pub correlation_id: Option<&'a str>,
}

/// `data` in a fresh envelope (a new UUID v7 `eventId`, `timestamp` now), and the headers
/// herald's publisher sends with it.
pub fn wrap(data: Value, how: &Wrap<'_>) -> (Vec<u8>, Vec<(&'static str, String)>) {
    let event_id = uuid::Uuid::now_v7();
    let mut envelope = json!({
        "eventId": event_id,
        "eventType": how.event_type,
        "eventVersion": format!("{}.0.0", how.version),
        "timestamp": crate::time::rfc3339_now(),
        "source": how.source,
        "data": data,
    });
    let mut headers = vec![
        ("event-type", how.event_type.to_string()),
        ("event-version", how.version.to_string()),
        ("content-type", "application/json".to_string()),
        ("event-id", event_id.to_string()),
    ];
    if let (Some(id), Some(fields)) = (how.correlation_id, envelope.as_object_mut()) {
        fields.insert("correlationId".into(), id.into());
        headers.push(("correlation-id", id.to_string()));
    }
    (envelope.to_string().into_bytes(), headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_wrapped_with_the_publishers_headers() {
        let how = Wrap { event_type: "order.placed", version: 2, source: "web", correlation_id: Some("flow-1") };
        let (bytes, headers) = wrap(json!({"orderId": "o1"}), &how);
        let envelope: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(envelope["eventVersion"], "2.0.0");
        assert_eq!(
            (envelope["data"]["orderId"].as_str(), envelope["correlationId"].as_str()),
            (Some("o1"), Some("flow-1"))
        );
        let id = envelope["eventId"].as_str().expect("id").to_string();
        assert!(headers.contains(&("event-id", id)) && headers.contains(&("correlation-id", "flow-1".into())));
        assert!(headers.contains(&("event-type", "order.placed".into())));
    }
}
