//! `herald schemas` against the registry of a real `herald serve`: register, list, check
//! (exit 1 when incompatible), config, get; the schemas survive a restart.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::serve;

/// The registry's address, from the log lines after the broker's ready line.
fn registry_url(lines: &std::sync::mpsc::Receiver<String>) -> String {
    loop {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect("the registry's ready line");
        if let Some(rest) = line.split("schema_registry=").nth(1) {
            return format!("http://{}", rest.split_whitespace().next().unwrap_or_default());
        }
    }
}

fn schemas(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("schemas")
        .args(args)
        .env("SCHEMA_REGISTRY_URL", url)
        .output()
        .expect("runs")
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn register_list_check_config_get_and_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let files = tempfile::tempdir().expect("files");
    let v1 = files.path().join("v1.avsc");
    let breaking = files.path().join("breaking.avsc");
    let record = |fields: &str| format!(r#"{{"type":"record","name":"Order","fields":[{fields}]}}"#);
    std::fs::write(&v1, record(r#"{"name":"id","type":"string"}"#)).expect("write");
    std::fs::write(&breaking, record(r#"{"name":"id","type":"string"},{"name":"qty","type":"int"}"#)).expect("write");
    let (v1, breaking) = (v1.to_string_lossy().to_string(), breaking.to_string_lossy().to_string());

    let common::Served { process: mut child, lines, .. } = serve(dir.path(), &[]);
    let url = registry_url(&lines);
    assert_eq!(ok(&schemas(&url, &["register", "orders-value", &v1])), "1");
    let listed: serde_json::Value = serde_json::from_str(&ok(&schemas(&url, &["list", "--json"]))).expect("json");
    assert_eq!(listed[0]["subject"], "orders-value");
    assert_eq!(listed[0]["versions"], serde_json::json!([1]));
    let check = schemas(&url, &["check", "orders-value", &breaking]);
    assert_eq!(check.status.code(), Some(1), "incompatible exits 1");
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("incompatible"), "{check:?}");
    assert_eq!(ok(&schemas(&url, &["config"])), "BACKWARD");
    assert_eq!(ok(&schemas(&url, &["config", "orders-value", "--set", "none"])), "NONE");
    assert_eq!(ok(&schemas(&url, &["check", "orders-value", &breaking])), "compatible");
    let refused = schemas(&url, &["get", "nobody"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("40401"), "{refused:?}");
    assert!(child.terminate().success());

    // Durable: the next start serves the same schema under the same id.
    let common::Served { process: mut child, lines, .. } = serve(dir.path(), &[]);
    let url = registry_url(&lines);
    let got = ok(&schemas(&url, &["get", "--id", "1"]));
    assert!(got.contains("\"Order\""), "{got}");
    assert_eq!(ok(&schemas(&url, &["config", "orders-value"])), "NONE");
    assert!(child.terminate().success());
}
