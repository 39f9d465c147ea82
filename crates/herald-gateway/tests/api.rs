//! The REST side against a real broker: produce over HTTP read back with kcat; tokens and
//! scopes (401, 403) and CORS preflights; bad input answered with one problem document;
//! `/metrics` valid Prometheus text (promtool) whose lag equals the broker's and the
//! group view's; a non-loopback address refused without tokens.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use common::{Served, call, json, produce, tool};
use herald_broker::internals::{Committed, now_ms};
use herald_gateway::{GatewayConfig, GatewayError, RunningGateway, Tokens};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_over_http_reads_back_with_kcat() {
    let served = Served::start(GatewayConfig::default()).await;
    let created =
        json(served.http, "POST", "/api/v1/topics", &serde_json::json!({ "name": "http.in", "partitions": 2 })).await;
    assert_eq!(created.status, 201);
    let records = (0..6).map(
        |n| serde_json::json!({ "key": format!("k{n}"), "value": { "n": n }, "headers": { "event-type": "t.x" } }),
    );
    let placed = produce(served.http, "http.in", records.collect()).await;
    assert_eq!(placed.len(), 6);
    // Wrapped in the standard envelope, with the publisher's headers.
    let wrapped = serde_json::json!({ "key": "o1", "value": { "orderId": "o1" },
        "envelope": { "type": "order.placed", "version": 2, "correlationId": "flow-1" } });
    served.broker().create_topic("http.env", Some(1), BTreeMap::new(), false).expect("topic");
    produce(served.http, "http.env", vec![wrapped]).await;
    let page = call(served.http, "GET", "/api/v1/topics/http.env/partitions/0/messages", &[], None).await.json();
    let (value, headers) = (&page["messages"][0]["value"], &page["messages"][0]["headers"]);
    assert_eq!((value["eventType"].as_str(), value["eventVersion"].as_str()), (Some("order.placed"), Some("2.0.0")));
    assert_eq!((value["data"]["orderId"].as_str(), value["source"].as_str()), (Some("o1"), Some("herald-gateway")));
    assert_eq!(
        (headers["event-id"].as_str(), headers["correlation-id"].as_str()),
        (value["eventId"].as_str(), Some("flow-1"))
    );
    let Some(kcat) = tool("kcat", "HERALD_REQUIRE_KCAT") else { return served.stop().await };
    let out = std::process::Command::new(kcat)
        .args(["-b", &served.kafka.to_string(), "-C", "-t", "http.in", "-e", "-q", "-f", "%p %o %k %h %s\n"])
        .output()
        .expect("kcat runs");
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
    lines.sort();
    let mut want: Vec<String> =
        placed.iter().enumerate().map(|(n, (p, o))| format!("{p} {o} k{n} event-type=t.x {{\"n\":{n}}}")).collect();
    want.sort();
    assert_eq!(lines, want, "kcat reads what HTTP produced, where HTTP said it went");
    served.stop().await;
}

fn problem(reply: &common::Reply, status: u16) -> String {
    assert_eq!(reply.status, status, "{}", String::from_utf8_lossy(&reply.body));
    assert_eq!(reply.header("content-type"), Some("application/problem+json"));
    let doc = reply.json();
    assert_eq!(doc["status"], status);
    doc["detail"].as_str().expect("detail").to_string()
}

const READ: &str = "read-token-0123456789";
const WRITE: &str = "write-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

/// A JSON request with `token`.
async fn send(http: SocketAddr, token: &str, method: &str, path: &str, body: &[u8]) -> common::Reply {
    let bearer = format!("Bearer {token}");
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    call(http, method, path, &headers, Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_scopes_cors_and_bad_input() {
    let tokens = Tokens::parse(&format!("read {READ}\nwrite {WRITE}\nadmin {ADMIN}\n")).expect("tokens");
    let config =
        GatewayConfig::default().tokens(tokens).cors_origins(vec!["http://app.test".into()]).body_bytes_max(64 * 1024);
    let served = Served::start(config).await;
    let http = served.http;
    let bearer = |t: &str| format!("Bearer {t}");
    problem(&call(http, "GET", "/api/v1/topics", &[], None).await, 401);
    problem(&call(http, "GET", "/api/v1/topics", &[("authorization", "Basic abc")], None).await, 401);
    problem(
        &call(http, "GET", "/api/v1/topics", &[("authorization", &bearer("nope-nope-nope-nope"))], None).await,
        401,
    );
    assert_eq!(call(http, "GET", "/api/v1/topics", &[("authorization", &bearer(READ))], None).await.status, 200);
    let create = br#"{"name":"secured","partitions":1}"#;
    let send = |token: &'static str, method: &'static str, path: &'static str, body: &'static [u8]| {
        send(http, token, method, path, body)
    };
    problem(&send(WRITE, "POST", "/api/v1/topics", create).await, 403);
    assert_eq!(send(ADMIN, "POST", "/api/v1/topics", create).await.status, 201);
    let record = br#"{"value":{"a":1}}"#;
    problem(&send(READ, "POST", "/api/v1/topics/secured/messages", record).await, 403);
    assert_eq!(send(WRITE, "POST", "/api/v1/topics/secured/messages", record).await.status, 200);
    // An EventSource cannot set headers: the token may come in the query.
    let stream =
        common::Stream::open(http, &format!("/api/v1/topics/secured/events?from=earliest&access_token={READ}"), &[])
            .await;
    assert_eq!(stream.status, 200);

    // CORS: an allowed origin's preflight, and a refused one.
    let preflight = |origin: &'static str| async move {
        call(http, "OPTIONS", "/api/v1/topics", &[("origin", origin), ("access-control-request-method", "GET")], None)
            .await
    };
    let allowed = preflight("http://app.test").await;
    assert_eq!(allowed.status, 204);
    assert_eq!(allowed.header("access-control-allow-origin"), Some("http://app.test"));
    problem(&preflight("http://evil.test").await, 403);
    let marked =
        call(http, "GET", "/api/v1/topics", &[("origin", "http://app.test"), ("authorization", &bearer(READ))], None)
            .await;
    assert_eq!(marked.header("access-control-allow-origin"), Some("http://app.test"));

    // Bad input: each one problem document that says what is wrong.
    assert!(problem(&send(ADMIN, "GET", "/api/v1/topics/missing", b"").await, 404).contains("missing"));
    problem(&send(WRITE, "POST", "/api/v1/topics/missing/messages", record).await, 404);
    assert!(
        problem(&send(WRITE, "POST", "/api/v1/topics/secured/messages", b"{\"value\":").await, 400).contains("JSON")
    );
    let huge: &'static [u8] = Box::leak(vec![b' '; 200 * 1024].into_boxed_slice());
    problem(&send(WRITE, "POST", "/api/v1/topics/secured/messages", huge).await, 413);
    problem(&send(ADMIN, "GET", "/api/v1/nothing-here", b"").await, 404);
    problem(&send(ADMIN, "GET", "/api/v1/topics/secured/partitions/x/messages", b"").await, 400);
    problem(&send(ADMIN, "GET", "/api/v1/topics/secured/events?from=yesterday", b"").await, 400);
    problem(&send(ADMIN, "POST", "/api/v1/topics", br#"{"name":"bad name!"}"#).await, 400);
    problem(
        &send(WRITE, "POST", "/api/v1/topics/secured/messages", br#"{"value":"%%","valueEncoding":"base64"}"#).await,
        400,
    );
    served.stop().await;
}

/// The value of the sample `name{labels}` in Prometheus text.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_and_lag_matches_the_group_view() {
    let served = Served::start(GatewayConfig::default()).await;
    served.broker().create_topic("metered", Some(2), BTreeMap::new(), false).expect("topic");
    let records = (0..20).map(|n| serde_json::json!({ "value": { "n": n }, "partition": n % 2 }));
    produce(served.http, "metered", records.collect()).await;
    let committed = |offset| Committed { offset, leader_epoch: -1, metadata: String::new(), commit_ms: now_ms() };
    let entries = vec![("metered".to_string(), 0, committed(4)), ("metered".to_string(), 1, committed(10))];
    served.broker().groups().offsets().commit("billing", entries, now_ms()).expect("commit");

    // One Kafka request (ApiVersions v0, client id "t"), for the broker's request metrics.
    let mut kafka = tokio::net::TcpStream::connect(served.kafka).await.expect("kafka");
    let request = [0u8, 0, 0, 11, 0, 18, 0, 0, 0, 0, 0, 1, 0, 1, b't'];
    tokio::io::AsyncWriteExt::write_all(&mut kafka, &request).await.expect("send");
    let mut length = [0u8; 4];
    tokio::io::AsyncReadExt::read_exact(&mut kafka, &mut length).await.expect("answer");
    let mut answer = vec![0u8; u32::from_be_bytes(length) as usize];
    tokio::io::AsyncReadExt::read_exact(&mut kafka, &mut answer).await.expect("answer");
    // And one refused: DeleteGroups v0 of a group that does not exist (GROUP_ID_NOT_FOUND, 69).
    let request = [0u8, 0, 0, 21, 0, 42, 0, 0, 0, 0, 0, 2, 0, 1, b't', 0, 0, 0, 1, 0, 4, b'n', b'o', b'p', b'e'];
    tokio::io::AsyncWriteExt::write_all(&mut kafka, &request).await.expect("send");
    tokio::io::AsyncReadExt::read_exact(&mut kafka, &mut length).await.expect("answer");
    let reply = call(served.http, "GET", "/metrics", &[], None).await;
    assert_eq!(reply.status, 200);
    let text = String::from_utf8(reply.body).expect("utf-8");
    if let Some(promtool) = tool("promtool", "HERALD_REQUIRE_PROMTOOL") {
        let mut check = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("promtool runs");
        use std::io::Write as _;
        check.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
        let out = check.wait_with_output().expect("promtool");
        // promtool exits 3 for lint warnings only (names, help text), 1 for errors.
        assert_ne!(
            out.status.code(),
            Some(1),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let view = call(served.http, "GET", "/api/v1/groups/billing", &[], None).await.json();
    for lag in served.broker().group_lag("billing") {
        let labels = format!("herald_group_lag{{group=\"billing\",topic=\"metered\",partition=\"{}\"}}", lag.partition);
        assert_eq!(sample(&text, &labels), Some(lag.lag as f64), "{labels}");
        let shown = view["lag"].as_array().expect("lag").iter().find(|l| l["partition"] == lag.partition).expect("row");
        assert_eq!(shown["lag"], lag.lag);
        assert!(shown["lagSeconds"].as_f64().expect("seconds") >= 0.0);
    }
    assert_eq!(sample(&text, "herald_partition_high_watermark{topic=\"metered\",partition=\"0\"}"), Some(10.0));
    let api_versions = sample(&text, "herald_kafka_requests_total{api=\"ApiVersions\"}").expect("Kafka request counts");
    assert!(api_versions >= 1.0, "{api_versions}");
    assert!(sample(&text, "herald_kafka_connections").expect("the connection gauge") >= 1.0);
    assert!(text.contains("herald_kafka_request_seconds_bucket{api=\"ApiVersions\""), "request latency histogram");
    let refused = "herald_kafka_errors_total{api=\"DeleteGroups\",error_code=\"69\"}";
    assert_eq!(sample(&text, refused), Some(1.0), "errors by API and code");
    assert!(sample(&text, "herald_log_fsync_seconds_count").is_some_and(|n| n >= 1.0), "fsync latency");
    assert_eq!(call(served.http, "GET", "/healthz", &[], None).await.status, 200);
    assert_eq!(call(served.http, "GET", "/readyz", &[], None).await.status, 200);
    let openapi = call(served.http, "GET", "/api/v1/openapi.json", &[], None).await.json();
    assert!(openapi["paths"]["/api/v1/topics/{topic}/events"].is_object());
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_address_needs_tokens_or_insecure() {
    let served = Served::start(GatewayConfig::default()).await;
    let broker = std::sync::Arc::clone(served.broker.as_ref().expect("running").broker());
    let open = GatewayConfig::default().listen(SocketAddr::from(([0, 0, 0, 0], 0)));
    match RunningGateway::start(open, broker).await {
        Err(GatewayError::Insecure(_)) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reset_changes_nothing_and_an_executed_one_moves_the_offsets() {
    let served = Served::start(GatewayConfig::default()).await;
    served.broker().create_topic("reset.me", Some(2), BTreeMap::new(), false).expect("topic");
    let records = (0..10).map(|n| serde_json::json!({ "value": n, "partition": n % 2 }));
    produce(served.http, "reset.me", records.collect()).await;
    let committed = |offset| Committed { offset, leader_epoch: -1, metadata: String::new(), commit_ms: now_ms() };
    let entries = vec![("reset.me".to_string(), 0, committed(4)), ("reset.me".to_string(), 1, committed(2))];
    served.broker().groups().offsets().commit("audit", entries, now_ms()).expect("commit");
    let offsets = |served: &Served| {
        let store = served.broker().groups().offsets();
        (0..2).map(|p| store.get("audit", "reset.me", p).map(|c| c.offset)).collect::<Vec<_>>()
    };
    let path = "/api/v1/groups/audit/offsets";
    let dry = json(served.http, "POST", path, &serde_json::json!({ "topic": "reset.me", "to": "earliest" })).await;
    assert_eq!(dry.status, 200, "{}", String::from_utf8_lossy(&dry.body));
    let dry = dry.json();
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["offsets"][0], serde_json::json!({ "partition": 0, "current": 4, "new": 0 }));
    assert_eq!(offsets(&served), [Some(4), Some(2)], "a dry run changes nothing");
    let run = serde_json::json!({ "topic": "reset.me", "partitions": [1], "to": { "offset": 5 }, "dryRun": false });
    assert_eq!(json(served.http, "POST", path, &run).await.status, 200);
    assert_eq!(offsets(&served), [Some(4), Some(5)], "only partition 1 moved");
    let latest = serde_json::json!({ "topic": "reset.me", "to": "latest", "dryRun": false });
    assert_eq!(json(served.http, "POST", path, &latest).await.status, 200);
    assert_eq!(offsets(&served), [Some(5), Some(5)]);
    let bad = json(served.http, "POST", path, &serde_json::json!({ "topic": "reset.me", "to": "sometime" })).await;
    problem(&bad, 422);
    served.stop().await;
}

/// A few kilobytes of zstd that would inflate to 80 MiB: reading it is refused with a
/// problem (the decoder stops at 64 MiB), and the gateway goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decompression_bomb_is_refused_not_inflated() {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    let served = Served::start(GatewayConfig::default()).await;
    served.broker().create_topic("bomb", Some(1), BTreeMap::new(), false).expect("topic");
    let record = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms(),
        key: None,
        value: Some(bytes::Bytes::from(vec![0u8; 80 << 20])),
        headers: Default::default(),
    };
    let mut encoded = bytes::BytesMut::new();
    let options = RecordEncodeOptions { version: 2, compression: Compression::Zstd };
    RecordBatchEncoder::encode(&mut encoded, [record].iter(), &options).expect("encoded");
    assert!(encoded.len() < 1 << 20, "{} bytes compressed", encoded.len());
    let (partition, max_bytes) = served.broker().partition_for_produce("bomb", 0).expect("partition");
    let appended = partition.append(&mut encoded.to_vec(), max_bytes.max(2 << 20), now_ms()).expect("appended");
    partition.log().sync_through(appended.durable_at).expect("durable, so readable");

    let page = call(served.http, "GET", "/api/v1/topics/bomb/partitions/0/messages", &[], None).await;
    assert_eq!((page.status, page.body.len() < 4096), (500, true), "refused, not inflated");
    let detail = problem(&page, 500);
    assert!(detail.contains("more than"), "{detail}");
    assert_eq!(call(served.http, "GET", "/healthz", &[], None).await.status, 200, "still serving");
    served.stop().await;
}
