//! JSON Schema for the registry: a schema is valid if it compiles (draft 7 or 2020-12, as
//! its `$schema` says; no remote references are fetched), and a reader schema can read
//! what a writer schema wrote when every instance the writer accepts, the reader accepts
//! too. That inclusion is decided structurally and conservatively: a keyword the rules do
//! not understand must be equal on both sides. The cases are Confluent's documented ones:
//! properties added or removed under open and closed content models, `required`
//! changes, type widening and narrowing, enum changes, length and range bounds.

use serde_json::{Map, Value};

/// Parses and compiles `text`; the JSON value on success.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    if !value.is_object() && !value.is_boolean() {
        return Err("a JSON Schema is an object or a boolean".into());
    }
    jsonschema::validator_for(&value).map_err(|e| format!("not a valid JSON Schema: {e}"))?;
    Ok(value)
}

/// Why `reader` cannot read everything `writer` accepts (empty: it can).
pub(crate) fn can_read(reader: &Value, writer: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    includes(reader, writer, "#", &mut problems);
    problems
}

/// Keywords the rules below decide; any other must be equal on both sides.
const DECIDED: [&str; 18] = [
    "type",
    "properties",
    "required",
    "additionalProperties",
    "enum",
    "const",
    "items",
    "maxLength",
    "minLength",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "maxItems",
    "minItems",
    "multipleOf",
    "format",
    "pattern",
];

/// Keywords that describe and never constrain.
const ANNOTATIONS: [&str; 9] =
    ["$schema", "$id", "title", "description", "default", "examples", "$comment", "readOnly", "writeOnly"];

fn includes(reader: &Value, writer: &Value, at: &str, problems: &mut Vec<String>) {
    let (r, w) = match (reader, writer) {
        (Value::Bool(true), _) => return,
        (_, Value::Bool(false)) => return,
        (Value::Bool(false), _) => return problems.push(format!("{at}: the reader accepts nothing")),
        (Value::Object(r), Value::Bool(true)) if constrains(r) => {
            return problems.push(format!("{at}: the writer accepts anything; the reader constrains it"));
        }
        (Value::Object(_), Value::Bool(true)) => return,
        (Value::Object(r), Value::Object(w)) => (r, w),
        _ => return problems.push(format!("{at}: not a schema")),
    };
    types(r, w, at, problems);
    values(r, w, at, problems);
    bounds(r, w, at, problems);
    object(r, w, at, problems);
    if let (Some(ri), wi) = (r.get("items"), w.get("items")) {
        includes(ri, wi.unwrap_or(&Value::Bool(true)), &format!("{at}/items"), problems);
    }
    for (keyword, value) in r {
        let decided = DECIDED.contains(&keyword.as_str()) || ANNOTATIONS.contains(&keyword.as_str());
        if !decided && w.get(keyword) != Some(value) {
            problems.push(format!("{at}: {keyword} differs (not a change these rules can judge)"));
        }
    }
}

/// Whether an object schema constrains anything.
fn constrains(schema: &Map<String, Value>) -> bool {
    schema.keys().any(|k| !ANNOTATIONS.contains(&k.as_str()))
}

/// The types a schema allows (`None`: any). `integer` is inside `number`.
fn type_set(schema: &Map<String, Value>) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

fn types(r: &Map<String, Value>, w: &Map<String, Value>, at: &str, problems: &mut Vec<String>) {
    let Some(reader) = type_set(r) else { return };
    let Some(writer) = type_set(w) else {
        return problems.push(format!("{at}: the reader restricts the type to {reader:?}; the writer did not"));
    };
    for t in writer {
        let covered = reader.contains(&t) || (t == "integer" && reader.contains(&"number"));
        if !covered {
            problems.push(format!("{at}: type {t} is no longer accepted (narrowed or changed)"));
        }
    }
}

fn values(r: &Map<String, Value>, w: &Map<String, Value>, at: &str, problems: &mut Vec<String>) {
    let writer_values =
        w.get("enum").and_then(Value::as_array).cloned().or_else(|| w.get("const").map(|c| vec![c.clone()]));
    let reader_values =
        r.get("enum").and_then(Value::as_array).cloned().or_else(|| r.get("const").map(|c| vec![c.clone()]));
    match (reader_values, writer_values) {
        (None, _) => {}
        (Some(_), None) => problems.push(format!("{at}: the reader adds an enum the writer did not have")),
        (Some(reader), Some(writer)) => {
            let missing: Vec<&Value> = writer.iter().filter(|v| !reader.contains(v)).collect();
            if !missing.is_empty() {
                problems.push(format!("{at}: enum values {missing:?} are no longer accepted (narrowed)"));
            }
        }
    }
}

/// Upper bounds may grow or go, lower bounds may shrink or go; added or tightened ones
/// refuse what the writer accepted.
fn bounds(r: &Map<String, Value>, w: &Map<String, Value>, at: &str, problems: &mut Vec<String>) {
    for keyword in ["maxLength", "maximum", "exclusiveMaximum", "maxItems"] {
        if let Some(reader) = r.get(keyword).and_then(Value::as_f64) {
            match w.get(keyword).and_then(Value::as_f64) {
                Some(writer) if reader >= writer => {}
                Some(writer) => problems.push(format!("{at}: {keyword} decreased from {writer} to {reader}")),
                None => problems.push(format!("{at}: {keyword} {reader} added")),
            }
        }
    }
    for keyword in ["minLength", "minimum", "exclusiveMinimum", "minItems"] {
        if let Some(reader) = r.get(keyword).and_then(Value::as_f64) {
            match w.get(keyword).and_then(Value::as_f64) {
                Some(writer) if reader <= writer => {}
                Some(writer) => problems.push(format!("{at}: {keyword} increased from {writer} to {reader}")),
                None => problems.push(format!("{at}: {keyword} {reader} added")),
            }
        }
    }
    for keyword in ["multipleOf", "format", "pattern"] {
        if let Some(reader) = r.get(keyword)
            && w.get(keyword) != Some(reader)
        {
            problems.push(format!("{at}: {keyword} added or changed"));
        }
    }
}

/// `additionalProperties` as a schema (absent: anything).
fn additional(schema: &Map<String, Value>) -> Value {
    schema.get("additionalProperties").cloned().unwrap_or(Value::Bool(true))
}

fn object(r: &Map<String, Value>, w: &Map<String, Value>, at: &str, problems: &mut Vec<String>) {
    let empty = Map::new();
    let reader_props = r.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let writer_props = w.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let (reader_more, writer_more) = (additional(r), additional(w));
    for (name, writer_schema) in writer_props {
        let here = format!("{at}/properties/{name}");
        match reader_props.get(name) {
            Some(reader_schema) => includes(reader_schema, writer_schema, &here, problems),
            // Removed: the reader treats it as an additional property.
            None => includes(&reader_more, writer_schema, &here, problems),
        }
    }
    for (name, reader_schema) in reader_props {
        if !writer_props.contains_key(name) {
            // Added: the writer may have written it as an additional property.
            let here = format!("{at}/properties/{name}");
            let before = problems.len();
            includes(reader_schema, &writer_more, &here, problems);
            if problems.len() > before && writer_more != Value::Bool(false) {
                problems.truncate(before);
                problems.push(format!(
                    "{here}: added to an open content model (the writer could have written it with any value)"
                ));
            }
        }
    }
    if !matches!(reader_more, Value::Bool(true)) && reader_more != writer_more {
        let before = problems.len();
        includes(&reader_more, &writer_more, &format!("{at}/additionalProperties"), problems);
        if problems.len() > before {
            problems.truncate(before);
            problems.push(format!("{at}: additionalProperties narrowed (the content model closed)"));
        }
    }
    let required = |s: &Map<String, Value>| -> Vec<String> {
        s.get("required")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
    };
    let writer_required = required(w);
    for name in required(r) {
        if !writer_required.contains(&name) {
            problems.push(format!("{at}: property {name} became required"));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object_schema(props: Value, required: &[&str], open: bool) -> Value {
        json!({ "type": "object", "properties": props, "required": required, "additionalProperties": open })
    }

    /// (case, reader (new), writer (old), can the reader read the writer's data)
    fn cases() -> Vec<(&'static str, Value, Value, bool)> {
        let a = json!({ "a": { "type": "string" } });
        let ab = json!({ "a": { "type": "string" }, "b": { "type": "integer" } });
        vec![
            ("the same schema", object_schema(a.clone(), &["a"], true), object_schema(a.clone(), &["a"], true), true),
            (
                "optional property added, closed model",
                object_schema(ab.clone(), &[], false),
                object_schema(a.clone(), &[], false),
                true,
            ),
            (
                "optional property added, open model",
                object_schema(ab.clone(), &[], true),
                object_schema(a.clone(), &[], true),
                false,
            ),
            (
                "property removed, open model",
                object_schema(a.clone(), &[], true),
                object_schema(ab.clone(), &[], true),
                true,
            ),
            (
                "property removed, closed model",
                object_schema(a.clone(), &[], false),
                object_schema(ab.clone(), &[], false),
                false,
            ),
            (
                "required property added",
                object_schema(ab.clone(), &["a", "b"], false),
                object_schema(ab.clone(), &["a"], false),
                false,
            ),
            (
                "required property removed",
                object_schema(ab.clone(), &["a"], false),
                object_schema(ab.clone(), &["a", "b"], false),
                true,
            ),
            ("integer widened to number", json!({"type": "number"}), json!({"type": "integer"}), true),
            ("number narrowed to integer", json!({"type": "integer"}), json!({"type": "number"}), false),
            ("type changed", json!({"type": "string"}), json!({"type": "integer"}), false),
            ("null added to the types", json!({"type": ["string", "null"]}), json!({"type": "string"}), true),
            ("enum extended", json!({"enum": ["a", "b", "c"]}), json!({"enum": ["a", "b"]}), true),
            ("enum narrowed", json!({"enum": ["a"]}), json!({"enum": ["a", "b"]}), false),
            (
                "maxLength increased",
                json!({"type": "string", "maxLength": 10}),
                json!({"type": "string", "maxLength": 5}),
                true,
            ),
            (
                "maxLength decreased",
                json!({"type": "string", "maxLength": 5}),
                json!({"type": "string", "maxLength": 10}),
                false,
            ),
            ("minimum added", json!({"type": "integer", "minimum": 0}), json!({"type": "integer"}), false),
            ("minimum removed", json!({"type": "integer"}), json!({"type": "integer", "minimum": 0}), true),
            ("content model opened", object_schema(a.clone(), &[], true), object_schema(a.clone(), &[], false), true),
            ("content model closed", object_schema(a.clone(), &[], false), object_schema(a.clone(), &[], true), false),
            (
                "nested property narrowed",
                json!({"type": "object", "properties": {"o": {"type": "object", "properties": {"n": {"type": "integer"}}}}}),
                json!({"type": "object", "properties": {"o": {"type": "object", "properties": {"n": {"type": "number"}}}}}),
                false,
            ),
            (
                "array items widened",
                json!({"type": "array", "items": {"type": "number"}}),
                json!({"type": "array", "items": {"type": "integer"}}),
                true,
            ),
            (
                "an unknown keyword changed",
                json!({"type": "object", "propertyNames": {"maxLength": 3}}),
                json!({"type": "object"}),
                false,
            ),
            (
                "description changed",
                json!({"type": "string", "description": "new"}),
                json!({"type": "string", "description": "old"}),
                true,
            ),
        ]
    }

    #[test]
    fn the_rule_table() {
        for (case, reader, writer, compatible) in cases() {
            let problems = can_read(&reader, &writer);
            assert_eq!(problems.is_empty(), compatible, "{case}: {problems:?}");
        }
    }

    #[test]
    fn invalid_schemas_are_refused() {
        assert!(parse("{").is_err());
        assert!(parse("42").is_err());
        assert!(parse(r#"{"type": 12}"#).is_err());
        assert!(parse(r#"{"type": "object", "properties": {"a": {"type": "string"}}}"#).is_ok());
    }

    proptest::proptest! {
        /// Every schema reads what it wrote, and a schema accepting anything reads all.
        #[test]
        fn a_schema_reads_itself(names in proptest::collection::vec("[a-d]", 0..4), open: bool, kind in 0..3usize) {
            let kinds = ["string", "integer", "number"];
            let props: Map<String, Value> = names.iter().map(|n| (n.clone(), json!({"type": kinds[kind]}))).collect();
            let schema = object_schema(Value::Object(props), &[], open);
            proptest::prop_assert!(can_read(&schema, &schema).is_empty());
            proptest::prop_assert!(can_read(&json!(true), &schema).is_empty());
            let anything = json!({});
            proptest::prop_assert!(can_read(&anything, &schema).is_empty());
        }
    }
}
