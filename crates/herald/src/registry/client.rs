//! The two registry calls the publisher makes, over HTTP/1.1 with ureq (plain HTTP, no
//! TLS stack) on a blocking thread: register a schema under a subject, and read a
//! subject's latest schema.

use serde_json::{Value, json};

use super::RegistrySettings;

/// Longest registry answer read.
const ANSWER_BYTES_MAX: u64 = 16 << 20;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Registers `schema` (JSON Schema) under `subject`; its id.
pub(super) async fn register(settings: &RegistrySettings, subject: &str, schema: &Value) -> Result<u32, String> {
    let url = format!("{}/subjects/{}/versions", settings.url.trim_end_matches('/'), encode(subject));
    let body = json!({ "schemaType": "JSON", "schema": schema.to_string() });
    let answer = call(settings, url, Some(body)).await?;
    answer["id"].as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(|| format!("no id in {answer}"))
}

/// The latest schema of `subject`: its id and the schema.
pub(super) async fn latest(settings: &RegistrySettings, subject: &str) -> Result<(u32, Value), String> {
    let url = format!("{}/subjects/{}/versions/latest", settings.url.trim_end_matches('/'), encode(subject));
    let answer = call(settings, url, None).await?;
    if answer["schemaType"] != "JSON" {
        return Err(format!(
            "the latest schema is {}, not JSON Schema",
            answer["schemaType"].as_str().unwrap_or("AVRO")
        ));
    }
    let id = answer["id"].as_u64().and_then(|id| u32::try_from(id).ok()).ok_or_else(|| format!("no id in {answer}"))?;
    let schema = answer["schema"]
        .as_str()
        .and_then(|s| serde_json::from_str(s).ok())
        .ok_or_else(|| format!("no schema in {answer}"))?;
    Ok((id, schema))
}

/// The schema with `id`, if it is JSON Schema.
pub(super) async fn by_id(settings: &RegistrySettings, id: u32) -> Result<Value, String> {
    let url = format!("{}/schemas/ids/{id}", settings.url.trim_end_matches('/'));
    let answer = call(settings, url, None).await?;
    if answer["schemaType"] != "JSON" {
        return Err(format!("schema {id} is {}, not JSON Schema", answer["schemaType"].as_str().unwrap_or("AVRO")));
    }
    answer["schema"].as_str().and_then(|s| serde_json::from_str(s).ok()).ok_or_else(|| format!("no schema in {answer}"))
}

/// GET (or POST `body`) on a blocking thread.
async fn call(settings: &RegistrySettings, url: String, body: Option<Value>) -> Result<Value, String> {
    let timeout = settings.timeout;
    let method = if body.is_some() { "POST" } else { "GET" };
    tokio::task::spawn_blocking(move || request(method, &url, body.as_ref(), timeout))
        .await
        .map_err(|e| format!("a task failed: {e}"))?
}

/// One request to a Confluent-compatible schema registry (blocking): the JSON answer, or
/// the refusal with Confluent's error code and message. `method` is GET, POST, PUT or
/// DELETE; `body` is sent as JSON.
pub fn request(method: &str, url: &str, body: Option<&Value>, timeout: std::time::Duration) -> Result<Value, String> {
    let agent: ureq::Agent =
        ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
    let body = body.map(Value::to_string).unwrap_or_default();
    let sent = match method {
        "GET" => agent.get(url).header("accept", CONTENT_TYPE).call(),
        "DELETE" => agent.delete(url).header("accept", CONTENT_TYPE).call(),
        "PUT" => agent.put(url).header("content-type", CONTENT_TYPE).send(body),
        _ => agent.post(url).header("content-type", CONTENT_TYPE).send(body),
    };
    let mut response = sent.map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    let text = response
        .body_mut()
        .with_config()
        .limit(ANSWER_BYTES_MAX)
        .read_to_string()
        .map_err(|e| format!("{url}: reading the answer: {e}"))?;
    let answer: Value = serde_json::from_str(&text).map_err(|_| format!("{url}: HTTP {status}: {text}"))?;
    if !status.is_success() {
        let message = answer["message"].as_str().unwrap_or(&text);
        return Err(format!("error {}: {message}", answer["error_code"]));
    }
    Ok(answer)
}

/// `text` as one URL path segment.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
