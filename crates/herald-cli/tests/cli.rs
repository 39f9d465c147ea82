//! The cluster commands as a user runs them, against a real broker (in-process, on an
//! ephemeral port): topics, produce, consume, and bad input that must be one clear line
//! and a failure exit.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use herald::testkit::TestBroker;

/// Runs `herald <args>` with `stdin`; returns its output.
fn herald(brokers: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(args)
        .env("KAFKA_BROKERS", brokers)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    child.wait_with_output().expect("herald exits")
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).expect("utf-8")
}

/// The one line a failing command printed.
fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "expected a failure, got {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    assert_eq!(stderr.lines().count(), 1, "one line, got: {stderr}");
    stderr
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text.trim()).expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_described_altered_listed_and_deleted() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    ok(&herald(&b, &["topics", "create", "orders", "--partitions", "3", "--config", "retention.ms=86400000"], ""));
    let listed = json(&ok(&herald(&b, &["topics", "list", "--json"], "")));
    assert_eq!(listed, serde_json::json!([{"name": "orders", "partitions": 3}]));
    ok(&herald(&b, &["topics", "alter", "orders", "--partitions", "4", "--config", "cleanup.policy=delete"], ""));
    let described = json(&ok(&herald(&b, &["topics", "describe", "orders", "--json"], "")));
    assert_eq!(described["partitions"].as_array().expect("partitions").len(), 4);
    assert_eq!(described["configs"]["retention.ms"], "86400000", "kept while another setting changed");
    assert_eq!(described["configs"]["cleanup.policy"], "delete");
    let table = ok(&herald(&b, &["topics", "describe", "orders"], ""));
    assert!(table.starts_with("topic orders: 4 partitions, 0 messages\nPARTITION"), "{table}");
    let again = failure(&herald(&b, &["topics", "create", "orders"], ""));
    assert!(again.starts_with("herald: cannot create topic orders: TopicAlreadyExists"), "{again}");
    ok(&herald(&b, &["topics", "delete", "orders"], ""));
    assert_eq!(failure(&herald(&b, &["topics", "describe", "orders"], "")), "herald: topic orders does not exist");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_lines_are_consumed_from_the_beginning_with_keys_and_envelope_headers() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    ok(&herald(&b, &["topics", "create", "users", "--partitions", "2"], ""));
    let input = "u-1:{\"user_id\":\"u-1\"}\nu-2:{\"user_id\":\"u-2\"}\nu-1:{\"user_id\":\"u-1\",\"again\":true}\n";
    let produced =
        ok(&herald(&b, &["produce", "users", "--parse-key", "--envelope", "--type", "user.created", "--json"], input));
    assert_eq!(json(&produced)["produced"], 3);
    let consumed = ok(&herald(&b, &["consume", "users", "--from-beginning", "--max", "3", "--format", "json"], ""));
    let records: Vec<serde_json::Value> = consumed.lines().map(json).collect();
    assert_eq!(records.len(), 3);
    let mut u1 = records.iter().filter(|r| r["key"] == "u-1");
    let (first, second) = (u1.next().expect("u-1"), u1.next().expect("u-1 again"));
    assert_eq!(first["partition"], second["partition"], "one key, one partition");
    assert!(first["offset"].as_i64() < second["offset"].as_i64(), "in the order produced");
    let envelope = json(first["value"].as_str().expect("value"));
    assert_eq!(
        (envelope["eventType"].as_str(), envelope["data"]["user_id"].as_str()),
        (Some("user.created"), Some("u-1"))
    );
    assert_eq!(first["headers"][0], serde_json::json!(["event-type", "user.created"]));
    assert_eq!(first["headers"][3][1], envelope["eventId"], "the event-id header matches the envelope");

    let pretty = ok(&herald(&b, &["consume", "users", "--from-beginning", "--max", "1"], ""));
    assert!(pretty.contains("  event-type: user.created\n"), "{pretty}");
    // A group remembers where it got to: a second run with the same group sees nothing new.
    let raw = ok(&herald(
        &b,
        &["consume", "users", "--from-beginning", "--group", "g", "--format", "raw", "--idle-exit-ms", "3000"],
        "",
    ));
    assert_eq!(raw.lines().count(), 3);
    let again = ok(&herald(
        &b,
        &["consume", "users", "--from-beginning", "--group", "g", "--format", "raw", "--idle-exit-ms", "3000"],
        "",
    ));
    assert_eq!(again.lines().count(), 0, "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_one_clear_line_and_a_failure_exit() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    assert_eq!(failure(&herald(&b, &["consume", "nope", "--max", "1"], "")), "herald: topic nope does not exist");
    let unreachable = failure(&herald("127.0.0.1:1", &["topics", "list", "--timeout-ms", "1500"], ""));
    assert!(unreachable.starts_with("herald: cannot reach the brokers at 127.0.0.1:1 within 1500 ms"), "{unreachable}");
    ok(&herald(&b, &["topics", "create", "t"], ""));
    let malformed = failure(&herald(&b, &["produce", "t", "--parse-key"], "a:1\nno separator\n"));
    assert_eq!(malformed, "herald: line 2: expected key:value, found no ':'");
    let described = json(&ok(&herald(&b, &["topics", "describe", "t", "--json"], "")));
    assert_eq!(described["partitions"][0]["messages"], 0, "nothing was sent");
    let not_json = failure(&herald(&b, &["produce", "t", "--envelope", "--type", "user.created"], "{oops\n"));
    assert!(not_json.starts_with("herald: line 1: --envelope needs JSON data"), "{not_json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_show_lag_and_reset_offsets_only_when_executed_and_stopped() {
    use rdkafka::consumer::{Consumer as _, StreamConsumer};

    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    ok(&herald(&b, &["topics", "create", "events", "--partitions", "2"], ""));
    let lines: String = (0..10).map(|n| format!("k{}:v{n}\n", n % 3)).collect();
    ok(&herald(&b, &["produce", "events", "--parse-key"], &lines));
    ok(&herald(&b, &["consume", "events", "--from-beginning", "--group", "g", "--max", "4", "--format", "raw"], ""));
    let lag = |group: &str| json(&ok(&herald(&b, &["groups", "describe", group, "--json"], "")))["lag"].as_i64();
    assert_eq!(lag("g"), Some(6), "10 produced, 4 consumed");
    let listed = ok(&herald(&b, &["groups", "list"], ""));
    assert!(listed.lines().any(|l| l.starts_with("g ") && l.contains("Empty")), "{listed}");

    let dry = herald(&b, &["groups", "reset-offsets", "g", "--to-earliest"], "");
    assert!(String::from_utf8_lossy(&dry.stderr).contains("dry run: nothing changed"), "{dry:?}");
    assert_eq!(lag("g"), Some(6), "a dry run changes nothing");
    ok(&herald(&b, &["groups", "reset-offsets", "g", "--to-earliest", "--execute"], ""));
    assert_eq!(lag("g"), Some(10), "back to the beginning");
    ok(&herald(&b, &["groups", "reset-offsets", "g", "--to-datetime", "2000-01-01T00:00:00Z", "--execute"], ""));
    assert_eq!(lag("g"), Some(10), "everything is later than 2000");

    // A group with a live member: shown with its assignment, and not reset under it.
    let live: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "live")
        .set("client.id", "live-member")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    live.subscribe(&["events"]).expect("subscribe");
    let _ =
        tokio::time::timeout(std::time::Duration::from_secs(20), live.recv()).await.expect("joined").expect("message");
    live.commit_consumer_state(rdkafka::consumer::CommitMode::Sync).expect("commit");
    let described = json(&ok(&herald(&b, &["groups", "describe", "live", "--json"], "")));
    assert_eq!(described["members"][0]["client_id"], "live-member", "{described}");
    assert!(described["members"][0]["assignment"].as_str().is_some_and(|a| a.starts_with("events[")), "{described}");
    let refused = failure(&herald(&b, &["groups", "reset-offsets", "live", "--to-latest", "--execute"], ""));
    assert_eq!(refused, "herald: group live has 1 active member(s); stop them before resetting its offsets");
    tokio::task::spawn_blocking(move || drop(live)).await.expect("close");

    ok(&herald(&b, &["groups", "delete", "g"], ""));
    assert_eq!(failure(&herald(&b, &["groups", "describe", "g"], "")), "herald: group g does not exist");
}

/// Dead letters `numbers` of `orders` as the consumer runtime writes them (key
/// `order-<n % 2>`, value `{"n":<n>}`); number 4 was already redriven three times.
async fn write_dead_letters(brokers: &str, numbers: std::ops::Range<u32>) {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().expect("producer");
    for n in numbers {
        let redrives = if n == 4 { "3" } else { "0" };
        let headers = OwnedHeaders::new()
            .insert(Header { key: "event-type", value: Some("order.placed") })
            .insert(Header { key: "dlq-original-topic", value: Some("orders") })
            .insert(Header { key: "dlq-original-partition", value: Some("0") })
            .insert(Header { key: "dlq-original-offset", value: Some(n.to_string().as_str()) })
            .insert(Header { key: "dlq-error-class", value: Some("permanent") })
            .insert(Header { key: "dlq-error-message", value: Some("card declined") })
            .insert(Header { key: "herald-redrive-count", value: Some(redrives) });
        let key = format!("order-{}", n % 2);
        let payload = format!("{{\"n\":{n}}}");
        let record = FutureRecord::to("orders.dlq").key(&key).payload(&payload).headers(headers);
        producer.send(record, std::time::Duration::from_secs(10)).await.expect("dead letter written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_redriven_once_with_a_loop_guard() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    ok(&herald(&b, &["topics", "create", "orders"], ""));
    write_dead_letters(&b, 0..5).await;
    let listed = json(&ok(&herald(&b, &["dlq", "list", "orders", "--json"], "")));
    assert_eq!(listed.as_array().map(Vec::len), Some(5));
    assert_eq!(listed[0]["error_class"], "permanent");

    let messages = |topic: &str| {
        json(&ok(&herald(&b, &["topics", "describe", topic, "--json"], "")))["partitions"]
            .as_array()
            .map(|ps| ps.iter().map(|p| p["messages"].as_i64().unwrap_or(0)).sum::<i64>())
    };
    let dry = herald(&b, &["dlq", "redrive", "orders.dlq", "--dry-run"], "");
    assert!(
        String::from_utf8_lossy(&dry.stderr).contains("dry run: would be 4 redriven, 1 refused at the loop guard"),
        "{dry:?}"
    );
    assert_eq!(messages("orders"), Some(0), "a dry run sends nothing");

    let only = json(&ok(&herald(&b, &["dlq", "redrive", "orders.dlq", "--key", "order-1", "--json"], "")));
    assert_eq!((only["redriven"].as_i64(), only["filtered"].as_i64()), (Some(2), Some(3)), "{only}");
    let all = json(&ok(&herald(&b, &["dlq", "redrive", "orders.dlq", "--json", "--rate", "100"], "")));
    assert_eq!((all["redriven"].as_i64(), all["refused_loop_guard"].as_i64()), (Some(4), Some(1)), "{all}");
    assert_eq!(messages("orders"), Some(6), "2 by key, then all 4");
    let again = json(&ok(&herald(&b, &["dlq", "redrive", "orders.dlq", "--json"], "")));
    assert_eq!(again["redriven"].as_i64(), Some(0), "progress was recorded: {again}");

    let back = ok(&herald(&b, &["consume", "orders", "--from-beginning", "--max", "1", "--format", "json"], ""));
    let record = json(&back);
    let headers: Vec<String> =
        record["headers"].as_array().expect("headers").iter().map(|h| h[0].to_string()).collect();
    assert!(headers.iter().all(|h| !h.contains("dlq-")), "dlq headers are dropped: {headers:?}");
    assert!(record["headers"].as_array().expect("headers").contains(&serde_json::json!(["herald-redrive-count", "1"])));
    assert!(headers.contains(&"\"event-type\"".to_string()), "the event's own headers stay: {headers:?}");
}

/// `method path` with a JSON `body` against the gateway at `http`: (status, JSON body).
fn http(http: std::net::SocketAddr, method: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    use std::io::Read as _;
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(http).expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {http}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    let status = reply.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_cli_redrives_share_one_progress() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let config = herald_gateway::GatewayConfig::default().listen(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let gateway = herald_gateway::RunningGateway::start(config, std::sync::Arc::clone(broker.running().broker()))
        .await
        .expect("gateway");
    let at = gateway.local_addr();
    ok(&herald(&b, &["topics", "create", "orders"], ""));
    write_dead_letters(&b, 0..5).await;
    let run = |method: &'static str, path: &'static str, body: serde_json::Value| {
        tokio::task::spawn_blocking(move || http(at, method, path, &body))
    };
    let none = serde_json::Value::Null;

    let (status, page) = run("GET", "/api/v1/topics/orders/dead-letters?limit=3", none.clone()).await.expect("page");
    assert_eq!((status, page["deadLetters"].as_array().map(Vec::len)), (200, Some(3)), "{page}");
    let first = &page["deadLetters"][0];
    assert_eq!(
        (first["deadLetter"]["errorClass"].as_str(), first["value"]["n"].as_i64()),
        (Some("permanent"), Some(0))
    );
    let path = "/api/v1/topics/orders/dead-letters/redrive";
    let (_, dry) = run("POST", path, serde_json::json!({})).await.expect("dry run");
    assert_eq!(
        (dry["dryRun"].as_bool(), dry["redriven"].as_i64(), dry["refusedLoopGuard"].as_i64()),
        (Some(true), Some(4), Some(1)),
        "{dry}"
    );
    assert_eq!(dry["plan"].as_array().map(Vec::len), Some(4), "{dry}");
    let (status, done) = run("POST", path, serde_json::json!({ "dryRun": false, "rate": 200 })).await.expect("redrive");
    assert_eq!(
        (status, done["redriven"].as_i64(), done["progressRecorded"].as_bool()),
        (200, Some(4), Some(true)),
        "{done}"
    );

    // The CLI starts where HTTP stopped, and the other way round.
    let cli = json(&ok(&herald(&b, &["dlq", "redrive", "orders", "--json"], "")));
    assert_eq!(cli["redriven"].as_i64(), Some(0), "{cli}");
    write_dead_letters(&b, 5..7).await;
    let cli = json(&ok(&herald(&b, &["dlq", "redrive", "orders", "--json"], "")));
    assert_eq!(cli["redriven"].as_i64(), Some(2), "{cli}");
    let (_, again) = run("POST", path, serde_json::json!({ "dryRun": false })).await.expect("redrive");
    assert_eq!(again["redriven"].as_i64(), Some(0), "{again}");

    let (_, back) =
        run("GET", "/api/v1/topics/orders/partitions/0/messages?limit=1000", none.clone()).await.expect("read");
    let back = back["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(back.len(), 6, "4 over HTTP, 2 by the CLI");
    for record in &back {
        let headers = record["headers"].as_object().expect("headers");
        assert!(headers.keys().all(|name| !name.starts_with("dlq-")), "{record}");
        assert_eq!(
            (headers["herald-redrive-count"].as_str(), headers["event-type"].as_str()),
            (Some("1"), Some("order.placed"))
        );
    }
    let (status, topics) = run("GET", "/api/v1/dead-letters", none).await.expect("topics");
    assert_eq!((status, &topics["deadLetterTopics"][0]["depth"]), (200, &serde_json::json!(7)), "{topics}");
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_e2e_reports_throughput_and_latency_as_json() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let out = ok(&herald(&b, &["bench", "e2e", "--messages", "2000", "--rate", "2000", "--json"], ""));
    let report = json(&out);
    assert_eq!((report["mode"].as_str(), report["messages"].as_u64()), (Some("e2e"), Some(2000)));
    let latency = &report["latency_us"];
    let (p50, p99, p999) = (latency["p50"].as_u64(), latency["p99"].as_u64(), latency["p999"].as_u64());
    assert!(p50 <= p99 && p99 <= p999 && p50.is_some_and(|p| p > 0), "{report}");
    let table = ok(&herald(&b, &["bench", "produce", "--messages", "1000", "--topic", "bp"], ""));
    assert!(table.starts_with("MODE     MESSAGES  SECONDS"), "{table}");
}

#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let output = herald("127.0.0.1:1", &["completions", shell], "");
        let script = ok(&output);
        assert!(script.contains("herald") && script.contains("reset-offsets"), "{shell}: {script}");
    }
}
