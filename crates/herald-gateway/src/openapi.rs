//! `GET /api/v1/openapi.json`: the API described as OpenAPI 3.1.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

fn op(summary: &str, scope: &str) -> Value {
    json!({
        "summary": summary,
        "security": [{ "bearer": [scope] }],
        "responses": {
            "200": { "description": "OK" },
            "default": { "description": "A problem", "content": { "application/problem+json": {} } }
        }
    })
}

pub(crate) async fn document() -> Response {
    let topic = json!({ "name": "topic", "in": "path", "required": true, "schema": { "type": "string" } });
    let doc = json!({
        "openapi": "3.1.0",
        "info": { "title": "Herald gateway", "version": "1" },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": {
            "/api/v1/topics": { "get": op("List topics", "read"), "post": op("Create a topic {name, partitions, configs}", "admin") },
            "/api/v1/topics/{topic}": {
                "parameters": [topic],
                "get": op("Describe a topic: partitions, offsets, size, configs", "read"),
                "patch": op("Replace a topic's config overrides {configs}", "admin"),
                "delete": op("Delete a topic", "admin")
            },
            "/api/v1/topics/{topic}/partitions/{partition}/messages": {
                "get": op("A page of records from ?offset= or ?time= (ms or RFC 3339), ?limit=", "read")
            },
            "/api/v1/topics/{topic}/messages": {
                "post": op("Produce one record or {records: [...]}: key, value, valueEncoding (json, text, base64), headers, partition, envelope {type, version, source, correlationId}", "write")
            },
            "/api/v1/topics/{topic}/events": {
                "get": op("Server-Sent Events; Last-Event-ID or ?from=earliest|latest|<token>|<ms>|<RFC 3339>; ?key=, ?type=, ?partition=", "read")
            },
            "/api/v1/dead-letters": { "get": op("Dead-letter topics with their origin and depth", "read") },
            "/api/v1/topics/{topic}/dead-letters": {
                "get": op("A page of dead letters (topic or topic.dlq) with origin and error; ?from=earliest|<token>, ?limit=, ?key=", "read")
            },
            "/api/v1/topics/{topic}/dead-letters/redrive": {
                "post": op("Send dead letters back {dryRun (default true), rate, key, maxRedrives, group}; progress shared with `herald dlq redrive`", "admin")
            },
            "/api/v1/groups": { "get": op("List consumer groups", "read") },
            "/api/v1/groups/{group}/offsets": {
                "post": op("Move a stopped group's offsets on a topic {topic, partitions?, to: earliest|latest|{offset}|{time}, dryRun (default true)}", "admin")
            },
            "/api/v1/ws": { "get": op("WebSocket: subscribe, unsubscribe, publish (write scope)", "read") },
            "/api/v1/groups/{group}": {
                "get": op("Describe a group: members, lag per partition in offsets and seconds", "read"),
                "delete": op("Delete an empty group and its offsets", "admin")
            },
            "/metrics": { "get": op("Prometheus metrics", "read") },
            "/healthz": { "get": { "summary": "Alive", "responses": { "200": { "description": "OK" } } } },
            "/readyz": { "get": { "summary": "Ready", "responses": { "200": { "description": "OK" } } } }
        }
    });
    axum::Json(doc).into_response()
}
