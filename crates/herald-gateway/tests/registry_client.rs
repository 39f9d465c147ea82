//! A real Confluent client against the registry and the broker: confluent-kafka-python's
//! `SchemaRegistryClient` with its Avro and JSON Schema serializers
//! (`registry_client.py`). The Python with that package comes from `HERALD_PYTHON`
//! (`.ci/run` makes a virtualenv); without it the test says so and passes, unless
//! `HERALD_REQUIRE_PYTHON_CLIENT=1`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::Served;
use herald_gateway::{GatewayConfig, RunningRegistry};
use herald_registry::Registry;

fn python() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("HERALD_PYTHON").map(std::path::PathBuf::from).filter(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var("HERALD_REQUIRE_PYTHON_CLIENT").is_err(),
            "HERALD_REQUIRE_PYTHON_CLIENT is set but HERALD_PYTHON names no Python"
        );
        eprintln!("skipped: set HERALD_PYTHON to a Python with confluent-kafka[schemaregistry,avro,json]");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_python_client_registers_evolves_and_serializes_through_the_broker() {
    let Some(python) = python() else { return };
    let served = Served::start(GatewayConfig::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let registry = Registry::open_in(dir.path()).expect("registry");
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let serving =
        RunningRegistry::start(listen, &GatewayConfig::default(), Arc::new(registry)).await.expect("listener");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/registry_client.py");
    let (url, bootstrap) = (format!("http://{}", serving.local_addr()), served.kafka.to_string());
    let run = move || std::process::Command::new(python).args([script, &url, &bootstrap]).output();
    let out = tokio::task::spawn_blocking(run).await.expect("joined").expect("python runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    serving.shutdown().await;
    served.stop().await;
    assert!(out.status.success() && stdout.trim() == "ok", "{stdout}\n{stderr}");
}
