//! The consumer runtime against a real in-process broker: the seeds' user.created flow to
//! two groups, and poison messages (permanent failures dead-lettered with their story in
//! the headers, transient ones retried until handled), with offsets committed on shutdown.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald::consumer::{Consumer, ConsumerConfig, HandlerError, RetryPolicy};
use herald::testkit::TestBroker;
use herald::{Publisher, PublisherConfig};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserCreated {
    user_id: String,
    n: u32,
}
herald::event!(UserCreated, type = "user.created", version = 1, key = user_id);

async fn publish(bootstrap: &str, count: u32) {
    let publisher =
        Publisher::new(PublisherConfig::default().brokers(bootstrap).client_id("auth-service")).expect("publisher");
    let mut sends = Vec::new();
    for n in 0..count {
        let publisher = publisher.clone();
        sends.push(tokio::spawn(async move {
            publisher.publish(UserCreated { user_id: format!("user-{}", n % 50), n }).await
        }));
    }
    for send in sends {
        send.await.expect("task").expect("published");
    }
}

fn wait(what: &str, mut done: impl FnMut() -> bool) -> impl std::future::Future<Output = ()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut ok = done();
    let what = what.to_string();
    async move {
        while !ok {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
            ok = done();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_handle_every_user_created_event() {
    if let Ok(filter) = std::env::var("HERALD_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    publish(&b, 200).await;
    let mut stops = Vec::new();
    let mut runs = Vec::new();
    let seen: HashMap<&str, Arc<Mutex<BTreeSet<u32>>>> =
        [("notification-service", Arc::default()), ("analytics-service", Arc::default())].into_iter().collect();
    for (group, set) in &seen {
        let set = Arc::clone(set);
        let consumer = Consumer::new(ConsumerConfig::new(b.clone(), *group, &["user.created"])).on(
            move |event: herald::Envelope<UserCreated>, _ctx| {
                let set = Arc::clone(&set);
                async move {
                    set.lock().expect("lock").insert(event.data.n);
                    Ok(())
                }
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        runs.push(tokio::spawn(consumer.run(async move {
            let _ = stopped.await;
        })));
    }
    for set in seen.values() {
        let set = Arc::clone(set);
        wait("every event in each group", move || set.lock().expect("lock").len() == 200).await;
    }
    for stop in stops {
        let _ = stop.send(());
    }
    for run in runs {
        run.await.expect("task").expect("consumer ran");
    }
    for group in seen.keys() {
        let lag = broker.running().broker().group_lag(group);
        assert_eq!(lag.iter().map(|l| l.lag).sum::<i64>(), 0, "{group} committed everything on shutdown: {lag:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_are_dead_lettered_and_transient_failures_retried() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let total = 1_000u32;
    publish(&b, total).await;
    let permanent = |n: u32| n % 100 == 7; // 1%
    let transient_failures = |n: u32| if n % 20 == 3 { n % 4 + 1 } else { 0 }; // 5%, 1-4 failures
    let handled: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let attempts: Arc<Mutex<HashMap<u32, u32>>> = Arc::default();
    let mut config = ConsumerConfig::new(b.clone(), "notification-service", &["user.created"]);
    config.retry = RetryPolicy {
        initial_delay: Duration::from_millis(2),
        multiplier: 2.0,
        max_delay: Duration::from_millis(20),
        max_attempts: 6,
    };
    let (h, a) = (Arc::clone(&handled), Arc::clone(&attempts));
    let consumer =
        Consumer::new(config).on(move |event: herald::Envelope<UserCreated>, ctx: herald::consumer::Context| {
            let (handled, attempts) = (Arc::clone(&h), Arc::clone(&a));
            async move {
                let n = event.data.n;
                attempts.lock().expect("lock").insert(n, ctx.attempt);
                if permanent(n) {
                    return Err(HandlerError::Permanent(format!("user {n} is invalid")));
                }
                if ctx.attempt <= transient_failures(n) {
                    return Err(HandlerError::Retryable("database busy".into()));
                }
                handled.lock().expect("lock").insert(n);
                Ok(())
            }
        });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    let expected_handled: BTreeSet<u32> = (0..total).filter(|n| !permanent(*n)).collect();
    {
        let handled = Arc::clone(&handled);
        let expected = expected_handled.clone();
        wait("every good event handled", move || *handled.lock().expect("lock") == expected).await;
    }

    // Exactly the permanent failures are in user.created.dlq, with their story.
    let dlq: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", "dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dlq reader");
    dlq.subscribe(&["user.created.dlq"]).expect("subscribe");
    let expected_dead: BTreeSet<u32> = (0..total).filter(|n| permanent(*n)).collect();
    let mut dead = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while dead.len() < expected_dead.len() {
        assert!(Instant::now() < deadline, "only {} dead letters arrived", dead.len());
        let Some(message) = tokio::task::block_in_place(|| dlq.poll(Duration::from_millis(200))) else { continue };
        let message = message.expect("dlq message");
        let envelope: herald::Envelope<UserCreated> =
            herald::Envelope::from_json(message.payload().expect("payload"), 1 << 20).expect("the original envelope");
        let headers = message.headers().expect("headers");
        let get = |name: &str| {
            headers
                .iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get("dlq-original-topic").as_deref(), Some("user.created"));
        assert_eq!(get("dlq-error-class").as_deref(), Some("permanent"));
        assert_eq!(get("dlq-attempts").as_deref(), Some("1"), "permanent errors are not retried");
        assert_eq!(get("dlq-consumer-group").as_deref(), Some("notification-service"));
        assert!(get("dlq-error-message").is_some_and(|m| m.contains("is invalid")));
        assert_eq!(get("dlq-original-key").as_deref(), Some(envelope.data.user_id.as_str()));
        assert!(get("dlq-original-offset").and_then(|o| o.parse::<i64>().ok()).is_some());
        assert!(get("dlq-failed-at").is_some());
        assert_eq!(get("event-type").as_deref(), Some("user.created"), "original headers kept");
        assert!(dead.insert(envelope.data.n), "dead-lettered twice: {}", envelope.data.n);
    }
    assert_eq!(dead, expected_dead);

    let _ = stop.send(());
    run.await.expect("task").expect("consumer ran");
    // Transient failures took exactly their failures + 1 attempts.
    let attempts = attempts.lock().expect("lock");
    for n in (0..total).filter(|n| transient_failures(*n) > 0 && !permanent(*n)) {
        assert_eq!(attempts.get(&n).copied(), Some(transient_failures(n) + 1), "event {n}");
    }
    let lag = broker.running().broker().group_lag("notification-service");
    assert_eq!(lag.iter().map(|l| l.lag).sum::<i64>(), 0, "everything committed, dead letters included: {lag:?}");
}
