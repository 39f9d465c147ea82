//! The web console in a real browser: `herald serve` (the binary), headless Chromium over
//! WebDriver, kcat and the herald CLI as the other clients. A topic created in the UI is
//! listed by kcat, records from kcat reach the live tail, group lag matches `herald
//! groups describe`, a previewed reset changes nothing until applied, a redrive from the
//! UI puts the letters back with the loop-guard header, and every page loads without a
//! console error or a failed request. Screenshots go to `target/tmp/console-screenshots`.

mod common;
#[path = "../../herald/examples/order_saga/saga.rs"]
mod saga;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::webdriver::{Browser, tool};
use serde_json::{Value, json};

/// Waits for the log line containing `marker` and returns the address after `field=`.
fn address(lines: &mpsc::Receiver<String>, marker: &str, field: &str) -> String {
    loop {
        let line = lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no line {marker:?}"));
        if line.contains(marker) {
            let rest = line.split(&format!("{field}=")).nth(1).expect("address field");
            return rest.split_whitespace().next().expect("address").to_string();
        }
    }
}

fn run(program: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("stdin");
    let output = child.wait_with_output().expect("exits");
    assert!(output.status.success(), "{program:?} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

/// `herald groups describe <group> --json`: lag (none without a commit) and committed
/// offset per (topic, partition).
fn described(brokers: &str, group: &str) -> BTreeMap<(String, i64), (Option<i64>, Option<i64>)> {
    let herald = Path::new(env!("CARGO_BIN_EXE_herald"));
    let output = run(herald, &["groups", "describe", group, "--json"], "", &[("KAFKA_BROKERS", brokers)]);
    let parsed: Value = serde_json::from_slice(&output.stdout).expect("json");
    parsed["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            let at = (o["topic"].as_str().unwrap_or("").to_string(), o["partition"].as_i64().unwrap_or(-1));
            (at, (o["lag"].as_i64(), o["committed"].as_i64()))
        })
        .collect()
}

/// The lag table of the open group page: (topic, partition) -> lag (none: no commit).
fn lag_in_page(browser: &Browser) -> BTreeMap<(String, i64), Option<i64>> {
    let script = "return [...document.querySelectorAll('#lag tbody tr')].map(r => [r.dataset.topic, Number(r.dataset.partition), r.dataset.lag === '' ? null : Number(r.dataset.lag)]);";
    let rows = browser.eval(script, json!([]));
    rows.as_array()
        .expect("rows")
        .iter()
        .map(|r| ((r[0].as_str().unwrap_or("").to_string(), r[1].as_i64().unwrap_or(-1)), r[2].as_i64()))
        .collect()
}

fn post_json(url: &str, body: &Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(10))).build().into();
    agent
        .post(url)
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .send(body.to_string())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
}

/// The seeds' order saga run through herald's saga store in a service's SQLite file: one
/// order completed, one still running.
fn seed_sagas(file: &Path) {
    use herald::saga::{Incoming, SagaConfig, SagaRunner, SqliteSagas};
    use saga::*;
    fn incoming<E: herald::Event>(event: E) -> Incoming {
        Incoming::new(&event, None).expect("encode")
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let options = herald::outbox::sqlite_options(file);
        let pool =
            sqlx::sqlite::SqlitePoolOptions::new().max_connections(2).connect_with(options).await.expect("sqlite");
        let runner = SagaRunner::new(
            SqliteSagas::new(pool.clone()).await.expect("sagas"),
            OrderSaga::default(),
            SagaConfig::default(),
        );
        let o1 = || "o1".to_string();
        let events = [
            incoming(OrderPlaced { order_id: o1(), customer: "ada".into(), amount_cents: 4200 }),
            incoming(InventoryReserved { order_id: o1() }),
            incoming(PaymentSucceeded { order_id: o1() }),
            incoming(OrderShipped { order_id: o1() }),
            incoming(OrderPlaced { order_id: "o2".into(), customer: "bob".into(), amount_cents: 100 }),
        ];
        for event in &events {
            runner.handle(event).await.expect("handled");
        }
        pool.close().await;
    });
}

/// Counts `order.placed` events: a projection with one table.
struct Placed;

const PLACED_TABLES: [herald::projection::Table; 1] =
    [herald::projection::Table { name: "placed", create: "CREATE TABLE {table} (order_id TEXT NOT NULL)" }];

impl herald::projection::Projection<herald::projection::SqliteProjections> for Placed {
    fn name(&self) -> &str {
        "placed"
    }

    fn event_types(&self) -> &[&str] {
        &["order.placed"]
    }

    fn tables(&self) -> &[herald::projection::Table] {
        &PLACED_TABLES
    }

    fn apply<'a>(
        &'a self,
        event: &'a herald::store::StoredEvent,
        tx: &'a mut sqlx::Transaction<'static, sqlx::Sqlite>,
    ) -> herald::projection::ApplyFuture<'a> {
        Box::pin(async move {
            let insert = format!("INSERT INTO {} (order_id) VALUES (?)", herald::projection::versioned("placed", 1));
            let query = sqlx::query(sqlx::AssertSqlSafe(insert)).bind(&event.stream_id);
            query.execute(&mut **tx).await.map(|_| ()).map_err(|e| e.to_string())
        })
    }
}

/// Three orders placed and projected, then two more appended: `placed` is 2 behind.
fn seed_projection(file: &Path) {
    use herald::projection::{ProjectionRunner, RunnerConfig, SqliteProjections};
    use herald::store::{EventStore, ExpectedVersion, NewEvent, SqliteEventStore};
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let options = herald::outbox::sqlite_options(file);
        let pool =
            sqlx::sqlite::SqlitePoolOptions::new().max_connections(2).connect_with(options).await.expect("sqlite");
        let store = SqliteEventStore::new(pool.clone()).await.expect("store");
        let append = async |n: u32| {
            let placed = saga::OrderPlaced { order_id: format!("p{n}"), customer: "ada".into(), amount_cents: 1 };
            let event = NewEvent::new(&herald::Envelope::new("shop", placed)).expect("encode");
            store.append(&format!("p{n}"), ExpectedVersion::Any, vec![event]).await.expect("append");
        };
        for n in 0..3 {
            append(n).await;
        }
        let projections = SqliteProjections::new(pool.clone()).await.expect("projections");
        let runner = ProjectionRunner::new(store.clone(), projections, Placed, RunnerConfig::default());
        runner.catch_up().await.expect("caught up");
        for n in 3..5 {
            append(n).await;
        }
        pool.close().await;
    });
}

#[test]
fn the_console_works_in_a_real_browser() {
    let Some(chromedriver) = tool("chromedriver", "HERALD_REQUIRE_CHROMIUM") else { return };
    let Some(kcat) = tool("kcat", "HERALD_REQUIRE_KCAT") else { return };
    let dir = tempfile::tempdir().expect("dir");
    seed_sagas(&dir.path().join("service.db"));
    seed_projection(&dir.path().join("service.db"));
    let database = format!("sqlite:{}?mode=rwc", dir.path().join("service.db").display());
    let served = common::serve(&dir.path().join("data"), &["--database-url", &database]);
    let registry = address(&served.lines, "herald schema registry ready", "schema_registry");
    let http = address(&served.lines, "herald gateway ready", "http");
    let (b, site) = (served.addr.clone(), format!("http://{http}"));
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let browser = Browser::start(&chromedriver, &[]);

    // A topic created in the UI is listed by kcat.
    browser.open(&format!("{site}/topics"));
    browser.fill("#create-topic input[name=name]", "web-orders");
    browser.fill("#create-topic input[name=partitions]", "2");
    browser.click("#create-topic button");
    browser.find("#partitions"); // the topic's page
    assert!(browser.url().ends_with("/topics/web-orders"), "{}", browser.url());
    let listed = run(&kcat, &["-b", &b, "-L", "-t", "web-orders"], "", &[]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("topic \"web-orders\" with 2 partitions"), "{listed}");

    // Records produced with kcat reach the live tail.
    browser.open(&format!("{site}/topics/web-orders/tail"));
    assert!(
        browser
            .wait_for("return document.getElementById('tail-status').textContent === 'live';", Duration::from_secs(10))
    );
    let produced = Instant::now();
    run(
        &kcat,
        &["-b", &b, "-P", "-t", "web-orders", "-K", ":", "-H", "correlation-id=flow-7"],
        "a:{\"n\":1}\nb:{\"n\":2}\nc:{\"n\":3}\n",
        &[],
    );
    let kcat_done = produced.elapsed();
    let rows = "return document.querySelectorAll('#tail tbody tr').length >= 3;";
    assert!(browser.wait_for(rows, Duration::from_secs(10)), "the tail shows kcat's records");
    eprintln!(
        "live tail: kcat took {kcat_done:?}; the rows were on the page {:?} after kcat returned",
        produced.elapsed() - kcat_done
    );
    browser.screenshot(&shots.join("tail.png"));

    // Group lag in the UI equals `herald groups describe`.
    let herald = Path::new(env!("CARGO_BIN_EXE_herald"));
    let env = [("KAFKA_BROKERS", b.as_str())];
    run(
        herald,
        &["consume", "web-orders", "--from-beginning", "--group", "console-g", "--max", "3", "--format", "raw"],
        "",
        &env,
    );
    run(&kcat, &["-b", &b, "-P", "-t", "web-orders", "-K", ":"], "d:{\"n\":4}\ne:{\"n\":5}\n", &[]);
    let before = described(&b, "console-g");
    browser.open(&format!("{site}/groups/console-g"));
    let shown = lag_in_page(&browser);
    let expected: BTreeMap<_, _> = before.iter().map(|(at, (lag, _))| (at.clone(), *lag)).collect();
    assert_eq!(shown, expected, "the console's lag is the CLI's");
    assert_eq!(expected.len(), 2, "both partitions: {expected:?}");
    browser.screenshot(&shots.join("group.png"));

    // A previewed reset changes nothing; applying it does.
    browser.click("#reset button[value=preview]");
    assert!(browser.wait_for("return !!document.getElementById('reset-preview');", Duration::from_secs(10)));
    assert_eq!(described(&b, "console-g"), before, "a dry run changes nothing");
    browser.click("#apply-reset button");
    assert!(browser.wait_for("return !!document.getElementById('reset-applied');", Duration::from_secs(10)));
    let after = described(&b, "console-g");
    assert_eq!(after.values().filter_map(|(lag, _)| *lag).sum::<i64>(), 5, "back to the beginning: {after:?}");
    browser.open(&format!("{site}/groups/console-g"));
    let expected: BTreeMap<_, _> = after.iter().map(|(at, (lag, _))| (at.clone(), *lag)).collect();
    assert_eq!(lag_in_page(&browser), expected, "after the reset too");

    // A redrive from the UI puts the letters back with the loop-guard header.
    let letter = [
        "-H",
        "dlq-original-topic=web-orders",
        "-H",
        "dlq-original-partition=0",
        "-H",
        "dlq-error-class=permanent",
        "-H",
        "dlq-error-message=card declined",
    ];
    let mut args = vec!["-b", b.as_str(), "-P", "-t", "web-orders.dlq", "-K", ":"];
    args.extend(letter);
    run(&kcat, &args, "x:{\"n\":10}\ny:{\"n\":11}\n", &[]);
    browser.open(&format!("{site}/dead-letters/web-orders.dlq"));
    browser.click("#redrive button[value=preview]");
    assert!(browser.wait_for("return !!document.getElementById('redrive-preview');", Duration::from_secs(10)));
    browser.screenshot(&shots.join("redrive-preview.png"));
    let headers = |topic: &str| {
        let out = run(&kcat, &["-b", &b, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k %h\n"], "", &[]);
        String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect::<Vec<_>>()
    };
    assert!(headers("web-orders").iter().all(|l| !l.contains("herald-redrive-count")), "a preview sends nothing");
    browser.click("#redrive-send button");
    assert!(browser.wait_for("return !!document.getElementById('redrive-done');", Duration::from_secs(10)));
    let back: Vec<String> =
        headers("web-orders").into_iter().filter(|l| l.contains("herald-redrive-count=1")).collect();
    assert_eq!(back.len(), 2, "both letters are back, marked: {back:?}");
    assert!(back.iter().all(|l| !l.contains("dlq-")), "{back:?}");
    // One chosen letter goes back again, whatever the progress says.
    browser.open(&format!("{site}/dead-letters/web-orders.dlq"));
    browser.click("#letters tbody tr input[name=pick]");
    browser.click("#redrive button[value=preview]");
    browser.find("#redrive-preview");
    let preview = browser.eval("return document.getElementById('redrive-preview').textContent;", json!([]));
    assert!(preview.as_str().is_some_and(|p| p.starts_with("Dry run: 1 would")), "{preview}");
    browser.click("#redrive-send button");
    assert!(browser.wait_for("return !!document.getElementById('redrive-done');", Duration::from_secs(10)));
    let back: Vec<String> =
        headers("web-orders").into_iter().filter(|l| l.contains("herald-redrive-count=1")).collect();
    assert_eq!(back.iter().filter(|l| l.starts_with("x ")).count(), 2, "the chosen letter (key x) twice: {back:?}");
    assert_eq!(back.len(), 3, "{back:?}");

    // A schema with two versions, for the schema pages.
    let subject = format!("http://{registry}/subjects/web-orders-value/versions");
    let v1 = json!({"type": "object", "properties": {"n": {"type": "integer"}}});
    let v2 = json!({"type": "object", "properties": {"n": {"type": "number"}}, "description": "n widened"});
    for schema in [v1, v2] {
        post_json(&subject, &json!({ "schemaType": "JSON", "schema": schema.to_string() }));
    }

    // Every page loads without a console error or a failed request.
    let pages = [
        ("overview", "/".to_string()),
        ("topics", "/topics".to_string()),
        ("topic", "/topics/web-orders".to_string()),
        ("messages", "/topics/web-orders/messages?partition=0&where=n%20%3E%200".to_string()),
        ("flow", "/flows/flow-7".to_string()),
        ("groups", "/groups".to_string()),
        ("group-after-reset", "/groups/console-g".to_string()),
        ("dead-letters", "/dead-letters".to_string()),
        ("dead-letter-topic", "/dead-letters/web-orders.dlq".to_string()),
        ("dead-letter", "/dead-letters/web-orders.dlq/0/0".to_string()),
        ("schemas", "/schemas".to_string()),
        ("schema-diff", "/schemas/web-orders-value?old=1&new=2".to_string()),
        ("sagas", "/sagas".to_string()),
        ("projections", "/projections".to_string()),
        ("tail", "/topics/web-orders/tail".to_string()),
    ];
    let _ = browser.log();
    for (name, path) in &pages {
        browser.open(&format!("{site}{path}"));
        assert_eq!(browser.status(), 200, "{path}");
        browser.screenshot(&shots.join(format!("{name}.png")));
        let problems: Vec<_> =
            browser.log().into_iter().filter(|(level, _)| level == "SEVERE" || level == "WARNING").collect();
        assert!(problems.is_empty(), "{path}: {problems:?}");
    }
    // The service's sagas: counts by state, then one saga's timeline.
    browser.open(&format!("{site}/sagas"));
    let counts = browser.eval(
        "return [...document.querySelectorAll('#saga-counts tbody tr')].map(r => r.innerText.split('\\t').join(' '));",
        json!([]),
    );
    let counts: Vec<&str> = counts.as_array().expect("rows").iter().filter_map(Value::as_str).collect();
    assert!(
        counts.iter().any(|r| r.ends_with("completed 1")) && counts.iter().any(|r| r.ends_with("running 1")),
        "{counts:?}"
    );
    browser.click("#saga-counts tbody tr a");
    browser.click("#saga-instances a");
    browser.find("#saga-timeline");
    let timeline = browser.eval("return document.querySelectorAll('#saga-timeline tbody tr').length;", json!([]));
    assert!(timeline.as_i64().unwrap_or(0) >= 2, "a timeline: {timeline} at {}", browser.url());
    browser.screenshot(&shots.join("saga.png"));
    assert!(browser.log().is_empty());

    // The projection is two events behind; a rebuild waits for its runner.
    browser.open(&format!("{site}/projections"));
    let row = browser.eval("return document.querySelector('#projections tbody tr').innerText;", json!([]));
    assert!(row.as_str().is_some_and(|r| r.starts_with("placed\t1\tyes\t2\t")), "{row}");
    browser.click("#projections tbody tr button");
    browser.accept_alert();
    assert!(browser.wait_for(
        "return (document.querySelector('#projections tbody tr') || {}).innerText.includes('reset');",
        Duration::from_secs(10)
    ));
    browser.screenshot(&shots.join("projections-rebuild.png"));

    // The keyboard: the first Tab reaches the skip link, Enter moves focus to the content.
    browser.open(&format!("{site}/"));
    browser.keys(&["\u{E004}"]);
    assert_eq!(browser.eval("return document.activeElement.className;", json!([])), json!("skip"));
    browser.keys(&["\u{E007}"]);
    assert_eq!(browser.eval("return document.activeElement.id;", json!([])), json!("main"));

    browser.open(&format!("{site}/flows/flow-7"));
    let flow = browser.eval("return document.querySelectorAll('table.messages > tbody > tr').length;", json!([]));
    assert_eq!(flow, json!(3), "the flow lists kcat's three records");
    drop(browser);

    // Dark, as a system set to dark mode shows it.
    let dark = Browser::start(&chromedriver, &["--force-dark-mode"]);
    dark.open(&format!("{site}/groups/console-g"));
    assert_eq!(dark.eval("return matchMedia('(prefers-color-scheme: dark)').matches;", json!([])), json!(true));
    let background = dark.eval("return getComputedStyle(document.body).backgroundColor;", json!([]));
    assert_eq!(background, json!("rgb(21, 24, 28)"), "the dark palette");
    dark.screenshot(&shots.join("group-dark.png"));
    drop(dark);
    drop(served);
}
