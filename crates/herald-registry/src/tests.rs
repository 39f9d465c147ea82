//! The registry on real files and on `FaultStorage`: ids, versions, levels, deletes,
//! modes, bad input with Confluent's codes, restarts and a crash at every operation.

use std::path::PathBuf;
use std::sync::Arc;

use herald_log::{CrashMode, FaultStorage, FsStorage, LogConfig, Storage};

use crate::{Level, Mode, NewSchema, Registry, RegistryConfig, RegistryError, SchemaType, Which};

fn open(dir: &std::path::Path) -> Registry {
    Registry::open(Arc::new(FsStorage), dir.join(crate::SCHEMAS_DIR), LogConfig::default(), RegistryConfig::default())
        .expect("open")
}

fn json(schema: serde_json::Value) -> NewSchema {
    NewSchema { schema: schema.to_string(), kind: SchemaType::Json, references: Vec::new() }
}

fn order(extra: &[&str], open_model: bool) -> NewSchema {
    let mut props = serde_json::json!({ "id": { "type": "string" } });
    for name in extra {
        props[*name] = serde_json::json!({ "type": "integer" });
    }
    json(serde_json::json!({ "type": "object", "properties": props, "additionalProperties": open_model }))
}

fn code<T: std::fmt::Debug>(result: Result<T, RegistryError>) -> u32 {
    result.expect_err("refused").code()
}

#[test]
fn one_schema_one_id_across_subjects_and_versions_only_for_changes() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = open(dir.path());
    let v1 = registry.register("orders-value", &order(&[], false), None).expect("v1");
    assert_eq!(v1, 1);
    assert_eq!(registry.register("orders-value", &order(&[], false), None).expect("again"), v1, "no new version");
    // The same schema with other whitespace and key order is the same schema.
    let reordered = NewSchema {
        schema: r#"{ "additionalProperties": false, "properties": {"id": {"type": "string"}}, "type": "object" }"#
            .into(),
        ..order(&[], false)
    };
    assert_eq!(registry.register("audit-value", &reordered, None).expect("other subject"), v1, "one id");
    let v2 = registry.register("orders-value", &order(&["qty"], false), None).expect("v2");
    assert_eq!(v2, 2);
    assert_eq!(registry.versions("orders-value", false).expect("versions"), [1, 2]);
    assert_eq!(registry.version("orders-value", Which::Latest, false).expect("latest").id, v2);
    assert_eq!(
        registry.uses(v1, false).expect("uses"),
        [("audit-value".to_string(), 1), ("orders-value".to_string(), 1)]
    );
    assert_eq!(registry.lookup("orders-value", &order(&[], false), false).expect("lookup").version, 1);
    assert_eq!(code(registry.lookup("orders-value", &order(&["other"], false), false)), 40403);
    assert_eq!(code(registry.lookup("nobody", &order(&[], false), false)), 40401);
}

#[test]
fn levels_decide_what_may_follow() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = open(dir.path());
    registry.register("s", &order(&[], true), None).expect("v1");
    // Adding a property to an open model is not backward compatible (the default level).
    let refused = registry.register("s", &order(&["qty"], true), None).expect_err("incompatible");
    assert_eq!((refused.code(), refused.status()), (409, 409));
    registry.set_level(Some("s"), Some(Level::None)).expect("level");
    registry.register("s", &order(&["qty"], true), None).expect("anything goes under NONE");
    // Transitive levels check every version, not only the latest.
    registry.set_level(Some("s"), Some(Level::BackwardTransitive)).expect("level");
    let v2_again = order(&["qty"], true);
    assert!(!registry.check("s", None, &v2_again).expect("check").is_empty(), "version 1 cannot be read by it");
    registry.set_level(Some("s"), Some(Level::Backward)).expect("level");
    assert!(registry.check("s", None, &v2_again).expect("check").is_empty(), "the latest alone reads it");
    registry.set_level(Some("s"), Some(Level::BackwardTransitive)).expect("level");
    assert!(registry.check("s", Some(Which::Number(1)), &order(&[], true)).expect("check").is_empty());
    assert_eq!(registry.level(Some("s"), false).expect("own"), Level::BackwardTransitive);
    assert_eq!(code(registry.level(Some("t"), false)), 40408);
    assert_eq!(registry.level(Some("t"), true).expect("global"), Level::Backward);
    assert_eq!(code(Level::parse("SIDEWAYS")), 42203);
}

#[test]
fn soft_then_hard_deletes() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = open(dir.path());
    registry.set_level(None, Some(Level::None)).expect("level");
    let a = registry.register("s", &order(&[], false), None).expect("v1");
    registry.register("s", &order(&["b"], false), None).expect("v2");
    assert_eq!(code(registry.delete_version("s", Which::Number(1), true)), 40407, "soft first");
    assert_eq!(registry.delete_version("s", Which::Number(1), false).expect("soft"), 1);
    assert_eq!(code(registry.delete_version("s", Which::Number(1), false)), 40406);
    assert_eq!(registry.versions("s", false).expect("live"), [2]);
    assert_eq!(registry.versions("s", true).expect("all"), [1, 2]);
    assert_eq!(code(registry.version("s", Which::Number(1), false)), 40402);
    assert_eq!(registry.version("s", Which::Number(1), true).expect("deleted=true").id, a);
    assert_eq!(registry.schema(a).expect("by id, still named by a soft-deleted version").kind, SchemaType::Json);
    assert_eq!(code(registry.delete_subject("s", true)), 40405, "a live version is left");
    assert_eq!(registry.delete_subject("s", false).expect("soft subject"), [2]);
    assert_eq!(code(registry.delete_subject("s", false)), 40404);
    assert_eq!(code(registry.versions("s", false)), 40401);
    assert_eq!(registry.subjects(true), ["s"]);
    assert_eq!(registry.delete_subject("s", true).expect("hard"), [1, 2]);
    assert!(registry.subjects(true).is_empty());
    assert_eq!(code(registry.schema(a)), 40403, "no version names it any more");
    // Registered again, it starts at version 1 and keeps its id.
    assert_eq!(registry.register("s", &order(&[], false), None).expect("again"), a);
    assert_eq!(registry.versions("s", false).expect("versions"), [1]);
}

#[test]
fn modes_and_bad_input_get_confluents_codes() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = open(dir.path());
    assert_eq!(code(registry.register("s", &json(serde_json::json!({"type": 12})), None)), 42201);
    let avro_garbage = NewSchema { schema: "{\"type\":\"nope\"}".into(), ..NewSchema::default() };
    assert_eq!(code(registry.register("s", &avro_garbage, None)), 42201);
    let huge = NewSchema { schema: format!("\"{}\"", "x".repeat(10 << 20)), ..NewSchema::default() };
    assert_eq!(code(registry.register("s", &huge, None)), 42201, "a 10 MB schema");
    let proto = NewSchema { schema: "syntax = \"proto3\";".into(), kind: SchemaType::Protobuf, references: Vec::new() };
    assert_eq!(code(registry.register("s", &proto, None)), 42201);
    assert_eq!(code(Which::parse("0")), 42202);
    assert_eq!(code(Which::parse("one")), 42202);
    assert_eq!(code(registry.versions("nobody", false)), 40401);
    registry.set_mode(Some("s"), Some(Mode::Readonly)).expect("mode");
    assert_eq!(code(registry.register("s", &order(&[], false), None)), 42205);
    registry.set_mode(Some("s"), Some(Mode::Import)).expect("mode");
    assert_eq!(registry.register("s", &order(&[], false), Some((42, 7))).expect("import"), 42);
    assert_eq!(registry.versions("s", false).expect("versions"), [7]);
    registry.set_mode(Some("s"), None).expect("back to the registry's mode");
    assert_eq!(code(registry.register("s", &order(&["x"], false), Some((43, 8)))), 42205, "not in import mode");
    assert_eq!(registry.register("t", &order(&["y"], false), None).expect("next id"), 43, "ids continue after imports");
}

#[test]
fn references_resolve_are_listed_and_keep_what_they_name() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = open(dir.path());
    let address = NewSchema {
        schema: r#"{"type":"record","name":"Address","fields":[{"name":"city","type":"string"}]}"#.into(),
        ..NewSchema::default()
    };
    let address_id = registry.register("address", &address, None).expect("address");
    let user = |references| NewSchema {
        schema: r#"{"type":"record","name":"User","fields":[{"name":"home","type":"Address"}]}"#.into(),
        kind: SchemaType::Avro,
        references,
    };
    assert_eq!(code(registry.register("user", &user(Vec::new()), None)), 42201, "Address is unknown without it");
    let reference = crate::Reference { name: "Address".into(), subject: "address".into(), version: 1 };
    let user_id = registry.register("user", &user(vec![reference.clone()]), None).expect("user");
    assert_ne!(user_id, address_id);
    assert_eq!(registry.referenced_by("address", Which::Number(1)).expect("referrers"), [user_id]);
    assert_eq!(code(registry.delete_version("address", Which::Number(1), false)), 42206, "still referred to");
    let missing = crate::Reference { version: 9, ..reference };
    assert_eq!(code(registry.register("user2", &user(vec![missing]), None)), 42201, "a reference to nothing");
    assert_eq!(registry.version("user", Which::Latest, false).expect("user").schema.references.len(), 1);
}

#[test]
fn everything_survives_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let registry = open(dir.path());
    registry.register("s", &order(&[], false), None).expect("v1");
    registry.register("s", &order(&["b"], false), None).expect("v2");
    registry.delete_version("s", Which::Number(1), false).expect("soft");
    registry.set_level(Some("s"), Some(Level::Full)).expect("level");
    registry.set_mode(None, Some(Mode::Readonly)).expect("mode");
    registry.close().expect("close");
    let reopened = open(dir.path());
    assert_eq!(reopened.versions("s", true).expect("versions"), [1, 2]);
    assert_eq!(reopened.versions("s", false).expect("live"), [2]);
    assert_eq!(reopened.level(Some("s"), false).expect("level"), Level::Full);
    assert_eq!(reopened.mode(None, false).expect("mode"), Mode::Readonly);
    assert_eq!(reopened.version("s", Which::Latest, false).expect("latest").id, 2);
}

/// Power loss at every mutating storage operation of a run of registrations: after
/// reopening, every acknowledged registration is there with its id, and nothing is there
/// that was not attempted.
#[test]
fn a_crash_at_any_operation_keeps_every_acknowledged_registration() {
    let schemas: Vec<NewSchema> = (0..12).map(|n| order(&[&format!("f{n}")], false)).collect();
    let run = |crash_at: Option<u64>, mode: CrashMode| -> u64 {
        let storage = Arc::new(FaultStorage::new(crash_at.unwrap_or(0)));
        let shared: Arc<dyn Storage> = storage.clone();
        if let Some(op) = crash_at {
            storage.crash_at_op(op);
        }
        let mut acknowledged = Vec::new();
        let mut attempted = 0;
        let config = LogConfig { segment_bytes: 4096, ..LogConfig::default() };
        if let Ok(registry) =
            Registry::open(Arc::clone(&shared), PathBuf::from("/r"), config, RegistryConfig::default())
        {
            let _ = registry.set_level(None, Some(Level::None));
            for (n, schema) in schemas.iter().enumerate() {
                attempted = n + 1;
                match registry.register(&format!("s{}", n % 3), schema, None) {
                    Ok(id) => acknowledged.push((n, id)),
                    Err(_) => break,
                }
            }
        }
        let ops = storage.mutating_ops();
        storage.crash(mode);
        let reopened = Registry::open(shared, PathBuf::from("/r"), config, RegistryConfig::default())
            .unwrap_or_else(|e| panic!("crash at {crash_at:?} ({mode:?}): reopen failed: {e}"));
        for (n, id) in &acknowledged {
            let found = reopened.lookup(&format!("s{}", n % 3), &schemas[*n], false);
            assert_eq!(found.map(|v| v.id).ok(), Some(*id), "crash at {crash_at:?} ({mode:?}): registration {n} lost");
        }
        let present: usize = (0..3).map(|s| reopened.versions(&format!("s{s}"), true).map_or(0, |v| v.len())).sum();
        assert!(present >= acknowledged.len() && present <= attempted, "crash at {crash_at:?}: {present} versions");
        ops
    };
    let total = run(None, CrashMode::DropUnsynced);
    for op in 1..=total {
        for mode in [CrashMode::DropUnsynced, CrashMode::TearUnsynced] {
            run(Some(op), mode);
        }
    }
}
