//! The runnable examples (`cargo run -p herald --example ...`) against a real broker,
//! to completion, with assertions on what they print. `cargo test` builds the examples
//! before it runs tests; they sit next to this test's binary in `target/<profile>/examples`.

use std::process::Command;

use herald::testkit::TestBroker;

/// Runs example `name` against `brokers`; returns its standard output.
fn run_example(name: &str, brokers: &str) -> String {
    let test_binary = std::env::current_exe().expect("test binary path");
    let profile_dir = test_binary.parent().and_then(|deps| deps.parent()).expect("target/<profile>");
    let example = profile_dir.join("examples").join(name);
    assert!(example.exists(), "{} is missing: cargo test builds examples; run it via cargo", example.display());
    let output =
        Command::new(&example).env("KAFKA_BROKERS", brokers).env("RUST_BACKTRACE", "0").output().expect("runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "example {name} failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_created_reaches_both_services() {
    let broker = TestBroker::start().await;
    let out = run_example("user_created", &broker.bootstrap());
    assert!(
        out.contains("user-created: 5 published, notification-service handled 5, analytics-service handled 5"),
        "{out}"
    );
    assert_eq!(out.lines().filter(|l| l.starts_with("notification-service: welcome email to")).count(), 5, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("analytics-service: counted signup of")).count(), 5, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_flow_confirms_paid_orders_and_cancels_the_declined_one() {
    let broker = TestBroker::start().await;
    let out = run_example("order_flow", &broker.bootstrap());
    let status = |order: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(order) && l.contains(" cents "))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string)
    };
    assert_eq!(status("o-1-").as_deref(), Some("confirmed"), "{out}");
    assert_eq!(status("o-2-").as_deref(), Some("confirmed"), "{out}");
    assert_eq!(status("o-3-").as_deref(), Some("cancelled"), "{out}");
    assert!(out.contains("is cancelled (card declined)"), "the customer heard why: {out}");
    assert!(out.contains("order.cancelled written with the update"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_sourced_order_keeps_its_rules_and_publishes_its_events() {
    let broker = TestBroker::start().await;
    let out = run_example("order", &broker.bootstrap());
    let line = |needle: &str| out.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle}: {out}"));
    assert!(line("Ship -> [\"order.shipped\"]").contains("now Shipped"), "{out}");
    assert!(line("Pay { amount_cents: 900 }").contains("refused: 900 cents offered, 1000 due"), "{out}");
    assert!(line("Cancel {").contains("now Cancelled"), "{out}");
    assert!(out.contains("refused: a cancelled order cannot change"), "a cancelled order cannot ship: {out}");
    assert!(out.contains("refused: there is no such order"), "{out}");
    assert!(out.contains("as of version 1: Paid, paid 4200 cents"), "time travel: {out}");
    assert!(out.contains("published 5 events to order.events for 2 orders"), "{out}");
}

#[test]
fn the_order_summary_read_model_agrees_with_the_orders() {
    let out = run_example("order_summary", "127.0.0.1:1");
    assert!(out.contains("12 orders, 30 events appended"), "{out}");
    let row = |customer: &str, status: &str| {
        out.lines()
            .find(|l| l.starts_with(customer) && l.contains(&format!(" {status} ")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row("bob", "shipped").ends_with("2         5500"), "{out}");
    assert!(row("cy", "cancelled").ends_with("1         3750"), "{out}");
    assert!(out.contains("order_summary agrees with the 12 orders' own states"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_saga_completes_four_orders_and_compensates_two() {
    let broker = TestBroker::start().await;
    let out = run_example("order_saga", &broker.bootstrap());
    assert_eq!(out.lines().filter(|l| l.contains(": completed via ")).count(), 4, "{out}");
    let declined = out.lines().find(|l| l.starts_with("saga o4-")).unwrap_or_default();
    assert!(
        declined.contains("compensated via")
            && declined.contains("<payment.declined undo>inventory.release >order.cancel"),
        "{out}"
    );
    let slow = out.lines().find(|l| l.starts_with("saga o5-slow-")).unwrap_or_default();
    assert!(slow.contains("deadline:payment undo>inventory.release >order.cancel end:compensated"), "{out}");
}
