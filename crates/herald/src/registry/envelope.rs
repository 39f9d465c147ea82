//! The JSON Schema of a whole record: the standard envelope around an event type's
//! `data` schema.

use serde_json::{Value, json};

/// The envelope's schema with `data` as the event's schema. Definitions the data schema
/// carries (`$defs`, `definitions`, as schemars writes them) move to the root, where
/// their `#/$defs/...` references point.
pub fn envelope_schema(event_type: &str, mut data: Value) -> Value {
    let mut root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": format!("{event_type} envelope"),
        "type": "object",
        "properties": {
            "eventId": { "type": "string" },
            "eventType": { "const": event_type },
            "eventVersion": { "type": "string" },
            "timestamp": { "type": "string" },
            "source": { "type": "string" },
            "correlationId": { "type": "string" },
            "causationId": { "type": "string" },
            "traceId": { "type": "string" },
        },
        "required": ["eventId", "eventType", "eventVersion", "timestamp", "source", "data"],
    });
    if let Some(fields) = data.as_object_mut() {
        fields.remove("$schema");
        for key in ["$defs", "definitions"] {
            if let Some(defs) = fields.remove(key) {
                root[key] = defs;
            }
        }
    }
    root["properties"]["data"] = data;
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_move_to_the_root() {
        let data = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": { "address": { "$ref": "#/$defs/Address" } },
            "$defs": { "Address": { "type": "object", "properties": { "city": { "type": "string" } } } },
        });
        let schema = envelope_schema("user.created", data);
        assert_eq!(schema["$defs"]["Address"]["type"], "object");
        assert!(schema["properties"]["data"].get("$defs").is_none());
        assert!(schema["properties"]["data"].get("$schema").is_none());
        let validator = jsonschema::validator_for(&schema).expect("compiles");
        let envelope = |city: Value| {
            json!({ "eventId": "e", "eventType": "user.created", "eventVersion": "1.0.0",
            "timestamp": "t", "source": "s", "data": { "address": { "city": city } } })
        };
        assert!(validator.is_valid(&envelope(json!("Oslo"))));
        assert!(!validator.is_valid(&envelope(json!(7))), "the nested definition is applied");
    }
}
