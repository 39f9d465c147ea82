//! Sagas: the seeds' order saga (`examples/order_saga/saga.rs`) in the test kit, and
//! through `SagaRunner` on SQLite files and PostgreSQL — duplicated and reordered events
//! leave the same final states as in order; with two runners, each deadline fires once;
//! compensations go out last step first.

mod outbox_common;
#[path = "../examples/order_saga/saga.rs"]
mod saga;

use std::collections::BTreeMap;
use std::time::Duration;

use herald::saga::{
    End, Handled, Incoming, PostgresSagas, SagaConfig, SagaControl, SagaDb, SagaRunner, SagaTest, SqliteSagas,
};
use saga::*;

fn incoming<E: herald::Event>(event: E) -> Incoming {
    Incoming::new(&event, None).expect("encode")
}

fn placed(order_id: &str, amount_cents: u64) -> Incoming {
    incoming(OrderPlaced { order_id: order_id.into(), customer: "ada".into(), amount_cents })
}

#[test]
fn the_kit_walks_the_happy_path_and_both_compensations() {
    let saga = || OrderSaga::default();
    SagaTest::new(saga())
        .when(placed("o1", 100))
        .then_sends(&["inventory.reserve"])
        .when(incoming(InventoryReserved { order_id: "o1".into() }))
        .then_sends(&["payment.process"])
        .when(incoming(PaymentSucceeded { order_id: "o1".into() }))
        .then_sends(&["shipping.ship"])
        .when(incoming(OrderShipped { order_id: "o1".into() }))
        .then_sends(&[])
        .then_ended(Some(End::Completed));

    let declined = SagaTest::new(saga())
        .given([placed("o2", 100), incoming(InventoryReserved { order_id: "o2".into() })])
        .when(incoming(PaymentDeclined { order_id: "o2".into(), reason: "no".into() }))
        .then_sends(&["inventory.release", "order.cancel"])
        .then_ended(Some(End::Compensated));
    assert!(declined.deadlines().is_empty(), "the payment deadline went with the end");

    let timed_out =
        SagaTest::new(saga()).given([placed("o3", 100), incoming(InventoryReserved { order_id: "o3".into() })]);
    assert_eq!(timed_out.deadlines(), [("payment".to_string(), PAYMENT_TIMEOUT_MS)]);
    timed_out
        .advance(Duration::from_millis(PAYMENT_TIMEOUT_MS as u64 - 1))
        .then_sends(&[])
        .then_ended(None)
        .advance(Duration::from_millis(1))
        .then_sends(&["inventory.release", "order.cancel"])
        .then_ended(Some(End::Compensated))
        .when(incoming(PaymentSucceeded { order_id: "o3".into() }))
        .then_sends(&[])
        .then_ended(Some(End::Compensated));
}

#[test]
fn the_kit_waits_for_events_that_overtook_others() {
    SagaTest::new(OrderSaga::default())
        .when(incoming(PaymentSucceeded { order_id: "o1".into() }))
        .then_sends(&[])
        .when(placed("o1", 100))
        .then_sends(&["inventory.reserve"])
        .when(incoming(InventoryReserved { order_id: "o1".into() }))
        .then_sends(&["payment.process", "shipping.ship"])
        .when(incoming(OrderShipped { order_id: "o1".into() }))
        .then_ended(Some(End::Completed));
}

/// The events of `orders` orders, each in order; every third payment is declined.
fn flows(run: &str, orders: usize) -> Vec<Vec<Incoming>> {
    (0..orders)
        .map(|n| {
            let order_id = format!("o{n}-{run}");
            let mut events =
                vec![placed(&order_id, 100 + n as u64), incoming(InventoryReserved { order_id: order_id.clone() })];
            if n % 3 == 2 {
                events.push(incoming(PaymentDeclined { order_id, reason: "declined".into() }));
            } else {
                events.push(incoming(PaymentSucceeded { order_id: order_id.clone() }));
                events.push(incoming(OrderShipped { order_id }));
            }
            events
        })
        .collect()
}

/// Hands `events` to the runner until each was taken (an event its instance is not
/// ready for goes to the back); returns how often one was not.
async fn deliver<D: SagaDb>(runner: &SagaRunner<D, OrderSaga>, events: Vec<Incoming>) -> usize {
    let (mut queue, mut waited) = (std::collections::VecDeque::from(events), 0);
    while let Some(event) = queue.pop_front() {
        match runner.handle(&event).await.expect("handled") {
            Handled::NotStarted | Handled::NotYet | Handled::Conflict => {
                waited += 1;
                assert!(waited < 10_000, "events still waiting: {}", queue.len() + 1);
                queue.push_back(event);
            }
            _ => {}
        }
    }
    waited
}

/// Final (status, state) per instance.
async fn finals<D: SagaDb>(db: D) -> BTreeMap<String, (String, String)> {
    let all = SagaControl::new(db).list("order", "", 1000).await.expect("list");
    all.into_iter().map(|s| (s.id, (s.status, s.state))).collect()
}

/// One run in order; the same events shuffled with a third of them repeated on another
/// database: the same final states, and each command in each outbox once per order.
async fn duplicated_and_reordered<D: SagaDb>(in_order: D, shuffled: D, outbox: impl Fn(D) -> Outboxed) {
    let run = uuid::Uuid::now_v7().simple().to_string()[24..].to_string();
    let flows = flows(&run, 30);
    let saga = || OrderSaga { suffix: run.clone() };
    let a = SagaRunner::new(in_order.clone(), saga(), SagaConfig::default());
    assert_eq!(deliver(&a, flows.iter().flatten().cloned().collect()).await, 0, "in order, nothing waits");
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut random = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut events: Vec<Incoming> = flows.iter().flatten().cloned().collect();
    let repeats: Vec<Incoming> = events.iter().step_by(3).cloned().collect();
    events.extend(repeats);
    for i in (1..events.len()).rev() {
        events.swap(i, random(i + 1));
    }
    let b = SagaRunner::new(shuffled.clone(), saga(), SagaConfig::default());
    let waited = deliver(&b, events).await;
    assert!(waited > 0, "the shuffle put some reply before its turn");
    let (want, got) = (finals(in_order.clone()).await, finals(shuffled.clone()).await);
    assert_eq!(want.len(), 30);
    assert_eq!(got, want, "the same final states");
    assert_eq!(want.values().filter(|(status, _)| status == "compensated").count(), 10);
    for db in [in_order, shuffled] {
        let sent = outbox(db).await;
        assert_eq!(sent.len(), 30, "commands for every order: {sent:?}");
        assert!(sent.values().all(|count| *count == 1), "each command once per order: {sent:?}");
    }
}

/// Commands in the outbox: (order, type) -> count, as a future.
type Outboxed = std::pin::Pin<Box<dyn std::future::Future<Output = BTreeMap<String, usize>>>>;

/// (order id, event type) counts from the outbox, keyed "order type".
macro_rules! outboxed {
    () => {
        |db| {
            Box::pin(async move {
                let rows: Vec<(Option<String>, String)> = sqlx::query_as("SELECT key, headers FROM herald_outbox")
                    .fetch_all(db.pool())
                    .await
                    .expect("outbox");
                let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
                for (key, headers) in rows {
                    let kind =
                        headers.split("\"event-type\",\"").nth(1).and_then(|s| s.split('"').next()).unwrap_or("?");
                    *counts.entry(key.unwrap_or_default()).or_default().entry(kind.to_string()).or_default() += 1;
                }
                counts.into_iter().map(|(order, kinds)| (order, kinds.values().copied().max().unwrap_or(0))).collect()
            }) as Outboxed
        }
    };
}

/// Forty orders left waiting for payment; two runners fire the deadlines at once: each
/// order is compensated once, the inventory released before the order is cancelled.
async fn deadlines_fire_once<D: SagaDb>(db: D) {
    let run = uuid::Uuid::now_v7().simple().to_string()[24..].to_string();
    let saga = || OrderSaga { suffix: run.clone() };
    let config =
        |owner: &str| SagaConfig::default().owner(owner).deadline_poll(Duration::from_millis(10)).deadline_batch(7);
    let first = SagaRunner::new(db.clone(), saga(), config("a"));
    let second = SagaRunner::new(db.clone(), saga(), config("b"));
    let events: Vec<Incoming> = flows(&run, 40).into_iter().flat_map(|f| f.into_iter().take(2)).collect();
    deliver(&first, events).await;
    let control = SagaControl::new(db.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|s| *s).await;
    };
    let both = tokio::spawn({
        let (s1, s2) = (stopped.clone(), stopped);
        async move {
            let (a, b) = tokio::join!(first.run_deadlines(wait(s1)), second.run_deadlines(wait(s2)));
            a.and(b)
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while control.counts("order").await.expect("counts") != [("compensated".to_string(), 40)] {
        assert!(std::time::Instant::now() < deadline, "{:?}", control.counts("order").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    both.await.expect("task").expect("runners");
    for view in control.list("order", "", 100).await.expect("list") {
        let shown = control.show("order", &view.id).await.expect("show").expect("instance");
        let kinds: Vec<(&str, &str)> = shown.history.iter().map(|h| (h.kind.as_str(), h.what.as_str())).collect();
        let tail: Vec<(&str, &str)> = kinds.iter().skip_while(|(kind, _)| *kind != "deadline").copied().collect();
        assert_eq!(
            tail,
            [
                ("deadline", "payment"),
                ("note", "payment timed out"),
                ("undo", "inventory.release"),
                ("out", "order.cancel"),
                ("end", "compensated")
            ],
            "fired once, compensated last step first: {kinds:?}"
        );
        assert!(shown.deadlines.is_empty());
    }
}

async fn sqlite(dir: &std::path::Path, name: &str) -> SqliteSagas {
    let options = herald::outbox::sqlite_options(dir.join(format!("{name}.db")));
    let pool = sqlx::sqlite::SqlitePoolOptions::new().max_connections(4).connect_with(options).await.expect("sqlite");
    SqliteSagas::new(pool).await.expect("sagas")
}

async fn postgres(test: &str) -> Option<PostgresSagas> {
    let pool = outbox_common::postgres_pool(test, 8).await?;
    Some(PostgresSagas::new(pool).await.expect("sagas"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_duplicated_and_reordered_events_end_the_same() {
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = (sqlite(dir.path(), "a").await, sqlite(dir.path(), "b").await);
    duplicated_and_reordered(a, b, outboxed!()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_duplicated_and_reordered_events_end_the_same() {
    let Some(a) = postgres("saga_in_order").await else { return };
    let Some(b) = postgres("saga_shuffled").await else { return };
    duplicated_and_reordered(a.clone(), b.clone(), outboxed!()).await;
    outbox_common::drop_schema(a.pool().clone()).await;
    outbox_common::drop_schema(b.pool().clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_runners_fire_each_deadline_once() {
    let dir = tempfile::tempdir().expect("dir");
    deadlines_fire_once(sqlite(dir.path(), "deadlines").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_runners_fire_each_deadline_once() {
    let Some(db) = postgres("saga_deadlines").await else { return };
    deadlines_fire_once(db.clone()).await;
    outbox_common::drop_schema(db.pool().clone()).await;
}
