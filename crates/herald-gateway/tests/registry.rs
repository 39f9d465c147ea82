//! The schema registry's Confluent REST API on a real listener and a real data directory:
//! register, evolve under levels, look up, delete, configure, bad input with Confluent's
//! codes, tokens. (A Confluent client drives it too: `tests/registry_client.rs`.)

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{Reply, call};
use herald_gateway::{GatewayConfig, RunningRegistry, Tokens};
use herald_registry::Registry;
use serde_json::{Value, json};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

struct Served {
    serving: RunningRegistry,
    at: SocketAddr,
    _dir: tempfile::TempDir,
}

async fn serve(config: GatewayConfig) -> Served {
    let dir = tempfile::tempdir().expect("dir");
    let registry = Registry::open_in(dir.path()).expect("registry");
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let serving = RunningRegistry::start(listen, &config, Arc::new(registry)).await.expect("listener");
    Served { at: serving.local_addr(), serving, _dir: dir }
}

async fn send(at: SocketAddr, method: &str, path: &str, body: Option<&Value>, token: Option<&str>) -> Reply {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", CONTENT_TYPE), ("accept", CONTENT_TYPE)];
    if let Some(bearer) = &bearer {
        headers.push(("authorization", bearer.as_str()));
    }
    let body = body.map(Value::to_string);
    call(at, method, path, &headers, body.as_deref().map(str::as_bytes)).await
}

/// (status, JSON body), checking Confluent's content type.
async fn request(at: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let reply = send(at, method, path, body.as_ref(), None).await;
    assert_eq!(reply.header("content-type"), Some(CONTENT_TYPE), "{method} {path}");
    (reply.status, reply.json())
}

fn avro(fields: Value) -> Value {
    json!({ "schema": json!({ "type": "record", "name": "Order", "namespace": "shop", "fields": fields }).to_string() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_confluent_api_end_to_end() {
    let served = serve(GatewayConfig::default()).await;
    let at = served.at;
    let id_field = json!({ "name": "id", "type": "string" });
    let v1 = avro(json!([id_field]));
    assert_eq!(
        request(at, "POST", "/subjects/orders-value/versions", Some(v1.clone())).await,
        (200, json!({ "id": 1 }))
    );
    assert_eq!(request(at, "POST", "/subjects/orders-value/versions", Some(v1.clone())).await.1, json!({ "id": 1 }));
    assert_eq!(request(at, "GET", "/subjects", None).await.1, json!(["orders-value"]));
    let latest = request(at, "GET", "/subjects/orders-value/versions/latest", None).await.1;
    assert_eq!((latest["version"].clone(), latest["id"].clone(), latest.get("schemaType")), (json!(1), json!(1), None));

    // A field without a default: BACKWARD (the default) refuses it.
    let breaking = avro(json!([id_field, { "name": "qty", "type": "int" }]));
    let (status, refused) = request(at, "POST", "/subjects/orders-value/versions", Some(breaking.clone())).await;
    assert_eq!((status, refused["error_code"].clone()), (409, json!(409)), "{refused}");
    let check = "/compatibility/subjects/orders-value/versions/latest?verbose=true";
    let verdict = request(at, "POST", check, Some(breaking.clone())).await.1;
    assert_eq!(verdict["is_compatible"], false);
    assert!(verdict["messages"].as_array().is_some_and(|m| !m.is_empty()), "{verdict}");
    let evolved = avro(json!([id_field, { "name": "qty", "type": "int", "default": 0 }]));
    assert_eq!(request(at, "POST", check, Some(evolved.clone())).await.1["is_compatible"], true);
    assert_eq!(
        request(at, "POST", "/subjects/orders-value/versions", Some(evolved.clone())).await.1,
        json!({ "id": 2 })
    );

    // By id, lookups, and one schema under two subjects.
    let by_id = request(at, "GET", "/schemas/ids/2", None).await.1;
    assert!(by_id["schema"].as_str().is_some_and(|s| s.contains("qty")), "{by_id}");
    assert_eq!(request(at, "POST", "/subjects/audit-value/versions", Some(v1.clone())).await.1, json!({ "id": 1 }));
    let uses = request(at, "GET", "/schemas/ids/1/versions", None).await.1;
    assert_eq!(uses, json!([{ "subject": "audit-value", "version": 1 }, { "subject": "orders-value", "version": 1 }]));
    assert_eq!(request(at, "GET", "/subjects/orders-value/versions/1/referencedby", None).await, (200, json!([])));
    let found = request(at, "POST", "/subjects/orders-value", Some(evolved.clone())).await.1;
    assert_eq!((found["version"].clone(), found["id"].clone()), (json!(2), json!(2)));

    // Levels and JSON Schema.
    assert_eq!(request(at, "GET", "/config", None).await.1, json!({ "compatibilityLevel": "BACKWARD" }));
    let set = request(at, "PUT", "/config/orders-value", Some(json!({ "compatibility": "NONE" }))).await.1;
    assert_eq!(set, json!({ "compatibility": "NONE" }));
    assert_eq!(request(at, "GET", "/config/audit-value", None).await.1["error_code"], 40408);
    let typed = json!({ "schemaType": "JSON", "schema": json!({ "type": "object", "properties": { "n": { "type": "integer" } } }).to_string() });
    assert_eq!(request(at, "POST", "/subjects/orders-value/versions", Some(typed)).await.1, json!({ "id": 3 }));
    assert_eq!(request(at, "GET", "/schemas/ids/3", None).await.1["schemaType"], "JSON");

    // Deletes: soft, then permanent.
    assert_eq!(
        request(at, "DELETE", "/subjects/orders-value/versions/3?permanent=true", None).await.1["error_code"],
        40407
    );
    assert_eq!(request(at, "DELETE", "/subjects/orders-value/versions/3", None).await, (200, json!(3)));
    assert_eq!(request(at, "GET", "/subjects/orders-value/versions", None).await.1, json!([1, 2]));
    assert_eq!(request(at, "GET", "/subjects/orders-value/versions?deleted=true", None).await.1, json!([1, 2, 3]));
    assert_eq!(request(at, "DELETE", "/subjects/orders-value/versions/3?permanent=true", None).await, (200, json!(3)));
    let gone = request(at, "GET", "/schemas/ids/3", None).await;
    assert_eq!((gone.0, gone.1["error_code"].clone()), (404, json!(40403)), "no version names id 3 any more");
    assert_eq!(request(at, "DELETE", "/subjects/audit-value", None).await, (200, json!([1])));
    assert_eq!(request(at, "GET", "/subjects/audit-value/versions", None).await.1["error_code"], 40401);
    served.serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_confluents_codes() {
    let served = serve(GatewayConfig::default()).await;
    let at = served.at;
    let cases = [
        ("POST", "/subjects/s/versions", Some(json!({ "schema": "{\"type\":\"nope\"}" })), 422, 42201),
        ("POST", "/subjects/s/versions", Some(json!({ "schema": "not json" })), 422, 42201),
        ("POST", "/subjects/s/versions", Some(json!({ "schema": "{}", "schemaType": "XML" })), 422, 42201),
        ("GET", "/subjects/nobody/versions", None, 404, 40401),
        ("GET", "/subjects/nobody/versions/abc", None, 422, 42202),
        ("GET", "/schemas/ids/999", None, 404, 40403),
        ("PUT", "/config", Some(json!({ "compatibility": "SIDEWAYS" })), 422, 42203),
        ("PUT", "/mode", Some(json!({ "mode": "SOMETIMES" })), 422, 42204),
    ];
    for (method, path, body, status, code) in cases {
        let (got, error) = request(at, method, path, body).await;
        assert_eq!((got, error["error_code"].clone()), (status, json!(code)), "{method} {path}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // A 10 MB schema: refused with Confluent's invalid-schema code, not a dropped connection.
    let huge = json!({ "schema": format!("\"{}\"", "x".repeat(10 << 20)) });
    let (status, error) = request(at, "POST", "/subjects/s/versions", Some(huge)).await;
    assert_eq!((status, error["error_code"].clone()), (422, json!(42201)), "{error}");
    // The registry still works, and took none of it.
    assert_eq!(request(at, "GET", "/subjects", None).await.1, json!([]));
    served.serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_scopes() {
    let tokens = Tokens::parse("read reader-token-0123456789\nadmin admin-token-0123456789").expect("tokens");
    let served = serve(GatewayConfig::default().tokens(tokens)).await;
    let at = served.at;
    let v1 = avro(json!([{ "name": "id", "type": "string" }]));
    let anonymous = send(at, "GET", "/subjects", None, None).await;
    assert_eq!((anonymous.status, anonymous.json()["error_code"].clone()), (401, json!(401)));
    let reader = send(at, "POST", "/subjects/s/versions", Some(&v1), Some("reader-token-0123456789")).await;
    assert_eq!((reader.status, reader.json()["error_code"].clone()), (403, json!(403)));
    let admin = send(at, "POST", "/subjects/s/versions", Some(&v1), Some("admin-token-0123456789")).await;
    assert_eq!((admin.status, admin.json()), (200, json!({ "id": 1 })));
    let read = send(at, "GET", "/subjects", None, Some("reader-token-0123456789")).await;
    assert_eq!((read.status, read.json()), (200, json!(["s"])));
    served.serving.shutdown().await;
}
