//! Avro through apache-avro: a schema is valid if it parses (with the schemas it
//! references parsed first, so their named types resolve), and a reader reads a writer's
//! data when Avro's schema resolution says so (fields added with defaults, removed,
//! promoted types, enum symbols, union branches).

use apache_avro::Schema;
use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};

/// Parses `text` after its `references` (texts, in order).
pub(crate) fn parse(text: &str, references: &[String]) -> Result<Schema, String> {
    if references.is_empty() {
        return Schema::parse_str(text).map_err(|e| e.to_string());
    }
    let mut all: Vec<&str> = references.iter().map(String::as_str).collect();
    all.push(text);
    let mut parsed = Schema::parse_list(all).map_err(|e| e.to_string())?;
    parsed.pop().ok_or_else(|| "no schema".to_string())
}

/// Why data written with `writer` may not read with `reader` (empty: it reads).
pub(crate) fn can_read(reader: &Schema, writer: &Schema) -> Vec<String> {
    match SchemaCompatibility::can_read(writer, reader) {
        Ok(Compatibility::Full) => Vec::new(),
        // Some writer values would not resolve (an enum symbol or a union branch the
        // reader lacks): Avro's Java checker, which Confluent uses, refuses these too.
        Ok(Compatibility::Partial) => {
            vec!["some values would not resolve (a missing enum symbol or union branch)".into()]
        }
        Err(error) => vec![error.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &str) -> Schema {
        parse(&format!(r#"{{"type":"record","name":"Order","fields":[{fields}]}}"#), &[]).expect("parses")
    }

    #[test]
    fn the_rule_table() {
        let id = r#"{"name":"id","type":"string"}"#;
        let cases = [
            (
                "a field added with a default",
                format!(r#"{id},{{"name":"n","type":"int","default":0}}"#),
                id.to_string(),
                true,
            ),
            ("a field added without a default", format!(r#"{id},{{"name":"n","type":"int"}}"#), id.to_string(), false),
            ("a field removed", id.to_string(), format!(r#"{id},{{"name":"n","type":"int"}}"#), true),
            (
                "int promoted to long",
                r#"{"name":"n","type":"long"}"#.into(),
                r#"{"name":"n","type":"int"}"#.into(),
                true,
            ),
            (
                "long narrowed to int",
                r#"{"name":"n","type":"int"}"#.into(),
                r#"{"name":"n","type":"long"}"#.into(),
                false,
            ),
            ("a type changed", r#"{"name":"n","type":"string"}"#.into(), r#"{"name":"n","type":"int"}"#.into(), false),
            (
                "null added to a union",
                r#"{"name":"n","type":["null","int"],"default":null}"#.into(),
                r#"{"name":"n","type":"int"}"#.into(),
                true,
            ),
        ];
        for (case, reader, writer, compatible) in cases {
            let problems = can_read(&record(&reader), &record(&writer));
            assert_eq!(problems.is_empty(), compatible, "{case}: {problems:?}");
        }
    }

    proptest::proptest! {
        /// A record reads itself; a field added with a default keeps it backward
        /// compatible, and without one breaks it.
        #[test]
        fn fields_with_defaults_evolve(names in proptest::collection::btree_set("[a-h]", 1..5), kind in 0..3usize) {
            let types = ["int", "string", "boolean"];
            let fields: Vec<String> = names.iter().map(|n| format!(r#"{{"name":"{n}","type":"{}"}}"#, types[kind])).collect();
            let old = record(&fields.join(","));
            proptest::prop_assert!(can_read(&old, &old).is_empty());
            let with_default = format!(r#"{},{{"name":"zz","type":"long","default":7}}"#, fields.join(","));
            proptest::prop_assert!(can_read(&record(&with_default), &old).is_empty());
            let without = format!(r#"{},{{"name":"zz","type":"long"}}"#, fields.join(","));
            proptest::prop_assert!(!can_read(&record(&without), &old).is_empty());
        }
    }

    #[test]
    fn invalid_schemas_and_references() {
        assert!(parse(r#"{"type":"record","name":"X"}"#, &[]).is_err(), "no fields");
        assert!(parse(r#"{"type":"nope"}"#, &[]).is_err());
        let address = r#"{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}"#.to_string();
        let user = r#"{"type":"record","name":"User","fields":[{"name":"home","type":"Address"}]}"#;
        assert!(parse(user, &[]).is_err(), "an unresolved name");
        assert!(parse(user, &[address]).is_ok(), "resolved through the reference");
    }
}
