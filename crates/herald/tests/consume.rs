//! The consumer runtime against a real in-process broker: the seeds' user.created flow to
//! two groups, and poison messages (permanent failures dead-lettered with their story in
//! the headers, transient ones retried until handled), with offsets committed on shutdown.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Running, UserCreated, wait};
use herald::backoff::Backoff;
use herald::consumer::{Consumer, ConsumerConfig, HandlerError, RetryPolicy};
use herald::testkit::TestBroker;
use herald::{Envelope, Publisher, PublisherConfig};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientConfig, Message};
use serde::{Deserialize, Serialize};

async fn publish(bootstrap: &str, count: u32) {
    common::publish(bootstrap, count, 50).await;
}

type HeaderLookup = Box<dyn Fn(&str) -> Option<String>>;

fn header_lookup(message: &BorrowedMessage<'_>) -> HeaderLookup {
    let headers: HashMap<String, String> = message
        .headers()
        .map(|h| {
            h.iter().filter_map(|h| Some((h.key.to_string(), String::from_utf8_lossy(h.value?).into_owned()))).collect()
        })
        .unwrap_or_default();
    Box::new(move |name| headers.get(name).cloned())
}

/// Reads `count` dead letters from `topic` (from the beginning), failing after 60 s.
fn read_dead_letters(bootstrap: &str, topic: &str, count: usize) -> Vec<(Envelope<UserCreated>, HeaderLookup)> {
    common::read_from_start(bootstrap, topic, count, |message| {
        let envelope =
            Envelope::from_json(message.payload().expect("payload"), 1 << 20).expect("the original envelope");
        (envelope, header_lookup(message))
    })
}

/// The headers of `count` dead letters whose payloads need not be envelopes.
fn read_dead_letters_raw(bootstrap: &str, topic: &str, count: usize) -> Vec<HeaderLookup> {
    common::read_from_start(bootstrap, topic, count, header_lookup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_handle_every_user_created_event() {
    common::log_if_asked();
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
    let backoff = Backoff::default().initial_delay(Duration::from_millis(2)).max_delay(Duration::from_millis(20));
    let config = ConsumerConfig::new(b.clone(), "notification-service", &["user.created"])
        .retry(RetryPolicy::default().backoff(backoff).max_attempts(6));
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
    let expected_dead: BTreeSet<u32> = (0..total).filter(|n| permanent(*n)).collect();
    let mut dead = BTreeSet::new();
    for (envelope, get) in read_dead_letters(&b, "user.created.dlq", expected_dead.len()) {
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

/// A handler that panics, before or after its first wait, costs its own message (dead-
/// lettered as `panicked`), not the consumer: the others are handled, everything is
/// committed, and a graceful stop still finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_dead_letters_its_message_and_the_consumer_carries_on() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    publish(&b, 40).await;
    let handled: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let h = Arc::clone(&handled);
    let consumer = Consumer::new(ConsumerConfig::new(&b, "panicky", &["user.created"])).on(
        move |event: herald::Envelope<UserCreated>, _ctx| {
            let handled = Arc::clone(&h);
            async move {
                let n = event.data.n;
                if n == 7 {
                    panic!("event {n} panics before waiting"); // on the run loop's inline poll
                }
                tokio::task::yield_now().await;
                if n == 19 {
                    panic!("event {n} panics after waiting"); // on its own task
                }
                handled.lock().expect("lock").insert(n);
                Ok(())
            }
        },
    );
    let running = Running::start(consumer);
    let expected: BTreeSet<u32> = (0..40).filter(|n| ![7, 19].contains(n)).collect();
    let h = Arc::clone(&handled);
    wait("every other event handled", move || *h.lock().expect("lock") == expected).await;
    let mut dead = BTreeSet::new();
    for (envelope, get) in read_dead_letters(&b, "user.created.dlq", 2) {
        assert_eq!(get("dlq-error-class").as_deref(), Some("panicked"));
        let n = envelope.data.n;
        assert!(get("dlq-error-message").is_some_and(|m| m.contains(&format!("event {n} panics"))));
        dead.insert(n);
    }
    assert_eq!(dead, BTreeSet::from([7, 19]));
    running.stop().await;
    let lag = broker.running().broker().group_lag("panicky");
    assert_eq!(lag.iter().map(|l| l.lag).sum::<i64>(), 0, "everything committed: {lag:?}");
}

/// A stop waits for messages in flight only up to `shutdown_grace`: a handler that never
/// finishes is cancelled (its future dropped) and its message left uncommitted, while
/// everything before and beside it is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_cancels_what_outlives_the_grace_and_commits_the_rest() {
    struct DropFlag(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    publish(&b, 30).await;
    let handled: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (h, d) = (Arc::clone(&handled), Arc::clone(&dropped));
    let mut config = ConsumerConfig::new(&b, "hung", &["user.created"]);
    config.shutdown_grace = Duration::from_millis(500);
    let consumer = Consumer::new(config).on(move |event: herald::Envelope<UserCreated>, _ctx| {
        let handled = Arc::clone(&h);
        // Only the hanging call carries the flag: set when its future is dropped.
        let flag = (event.data.n == 3).then(|| DropFlag(Arc::clone(&d)));
        async move {
            if let Some(_flag) = flag {
                std::future::pending::<()>().await; // hangs, as a call without a timeout would
            }
            handled.lock().expect("lock").insert(event.data.n);
            Ok(())
        }
    });
    let running = Running::start(consumer);
    let h = Arc::clone(&handled);
    wait("the 29 other events handled", move || h.lock().expect("lock").len() == 29).await;
    let started = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(30), running.stop()).await;
    assert!(stopped.is_ok(), "the stop waited past the grace");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped after {:?}", started.elapsed());
    let d = Arc::clone(&dropped);
    wait("the hung handler's future dropped", move || d.load(std::sync::atomic::Ordering::SeqCst)).await;
    let lag: i64 = broker.running().broker().group_lag("hung").iter().map(|l| l.lag).sum();
    assert!(lag >= 1, "the cancelled message stays uncommitted: lag {lag}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_key_sends_its_later_events_after_its_dead_letter() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    // Published one at a time so n follows offset order within each key.
    let publisher =
        Publisher::new(PublisherConfig::default().brokers(&b).client_id("auth-service")).expect("publisher");
    for n in 0..500 {
        publisher.publish(UserCreated { user_id: format!("user-{}", n % 50), n }).await.expect("published");
    }
    // user-7's event 107 fails for good; its later events (157, 207, ...) are parked.
    let poisoned = 107u32;
    let handled: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let mut config = ConsumerConfig::new(&b, "parking", &["user.created"]);
    config.park_keys_after_dead_letter = true;
    let h = Arc::clone(&handled);
    let running = Running::start(Consumer::new(config).on(move |event: Envelope<UserCreated>, _ctx| {
        let handled = Arc::clone(&h);
        async move {
            if event.data.n == poisoned {
                return Err(HandlerError::Permanent("bad address".into()));
            }
            handled.lock().expect("lock").insert(event.data.n);
            Ok(())
        }
    }));
    let parked: BTreeSet<u32> = (0..500).filter(|n| n % 50 == poisoned % 50 && *n > poisoned).collect();
    let expected: BTreeSet<u32> = (0..500).filter(|n| *n != poisoned && !parked.contains(n)).collect();
    let h = Arc::clone(&handled);
    wait("every unparked event handled", move || *h.lock().expect("lock") == expected).await;
    let letters = read_dead_letters(&b, "user.created.dlq", 1 + parked.len());
    // Within the key, in offset order (the publisher sent concurrently, so offsets, not n,
    // give the key's order): the failure first, then every later event, parked.
    let offsets: Vec<i64> = letters
        .iter()
        .map(|(_, get)| get("dlq-original-offset").and_then(|o| o.parse().ok()).expect("offset header"))
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "the key's dead letters keep its order: {offsets:?}");
    let lettered: BTreeSet<u32> = letters.iter().map(|(e, _)| e.data.n).collect();
    assert_eq!(letters[0].0.data.n, poisoned, "the failure comes first");
    assert_eq!(lettered.len(), letters.len(), "no duplicates");
    assert!(lettered.iter().all(|n| *n == poisoned || parked.contains(n)));
    assert_eq!(letters[0].1("dlq-error-class").as_deref(), Some("permanent"));
    assert!(letters[1..].iter().all(|(_, get)| get("dlq-error-class").as_deref() == Some("parked")));
    running.stop().await;
    let handled = handled.lock().expect("lock");
    assert!(parked.iter().all(|n| !handled.contains(n)), "parked events were not handled");
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WelcomeMailSent {
    user_id: String,
}
herald::event!(WelcomeMailSent, type = "notification.welcome_sent", version = 1, key = user_id);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_from_a_handler_carry_correlation_and_causation() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let publisher =
        Publisher::new(PublisherConfig::default().brokers(&b).client_id("auth-service")).expect("publisher");
    let with_flow =
        Envelope::new("auth-service", UserCreated { user_id: "u1".into(), n: 1 }).with_correlation_id("signup-flow-1");
    let without_flow = Envelope::new("auth-service", UserCreated { user_id: "u2".into(), n: 2 });
    publisher.publish_envelope(&with_flow).await.expect("published");
    publisher.publish_envelope(&without_flow).await.expect("published");

    // notification-service reacts to user.created with a follow-up event.
    let notifications =
        Running::start(Consumer::new(ConsumerConfig::new(&b, "notification-service", &["user.created"])).on(
            |event: Envelope<UserCreated>, ctx: herald::consumer::Context| async move {
                ctx.publish(WelcomeMailSent { user_id: event.data.user_id }).await?;
                Ok(())
            },
        ));
    // analytics-service records the follow-ups' envelopes.
    let followups: Arc<Mutex<Vec<Envelope<WelcomeMailSent>>>> = Arc::default();
    let f = Arc::clone(&followups);
    let analytics =
        Running::start(Consumer::new(ConsumerConfig::new(&b, "analytics-service", &["notification.welcome_sent"])).on(
            move |event: Envelope<WelcomeMailSent>, _ctx| {
                let followups = Arc::clone(&f);
                async move {
                    followups.lock().expect("lock").push(event);
                    Ok(())
                }
            },
        ));
    let f = Arc::clone(&followups);
    wait("both follow-ups", move || f.lock().expect("lock").len() == 2).await;
    notifications.stop().await;
    analytics.stop().await;
    let followups = followups.lock().expect("lock");
    let of = |user: &str| followups.iter().find(|e| e.data.user_id == user).expect("follow-up").clone();
    let (one, two) = (of("u1"), of("u2"));
    assert_eq!(one.correlation_id.as_deref(), Some("signup-flow-1"), "the flow's correlation id carries over");
    assert_eq!(one.causation_id, Some(with_flow.event_id.to_string()), "caused by the handled event");
    assert_eq!(two.correlation_id, Some(without_flow.event_id.to_string()), "a flow starts at its first event");
    assert_eq!(two.causation_id, Some(without_flow.event_id.to_string()));
    assert_eq!(one.source, "notification-service", "published under the consuming service's name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_unknown_events_are_dead_lettered_once_or_skipped() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &b).create().expect("producer");
    let send = |event_type: &'static str, payload: &'static [u8]| {
        let producer = producer.clone();
        async move {
            let headers = OwnedHeaders::new().insert(Header { key: "event-type", value: Some(event_type) });
            let record = FutureRecord::to("user.created").key("k").payload(payload).headers(headers);
            producer.send(record, Duration::from_secs(10)).await.expect("sent");
        }
    };
    send("user.created", b"{not json").await;
    send("user.deleted", br#"{"whatever":1}"#).await;
    common::publish(&b, 1, 1).await; // one good event after them

    let calls: Arc<Mutex<u32>> = Arc::default();
    let consumer_for = |group: &str, unknown: herald::consumer::UnknownTypes| {
        let mut config = ConsumerConfig::new(&b, group, &["user.created"]);
        config.unknown_types = unknown;
        let calls = Arc::clone(&calls);
        Consumer::new(config).on(move |_event: Envelope<UserCreated>, _ctx| {
            let calls = Arc::clone(&calls);
            async move {
                *calls.lock().expect("lock") += 1;
                Ok(())
            }
        })
    };
    let lag = |group: &str| broker.running().broker().group_lag(group).iter().map(|l| l.lag).sum::<i64>();

    // Default: the unknown type is skipped; the undecodable one is dead-lettered, not retried.
    let running = Running::start(consumer_for("skipper", herald::consumer::UnknownTypes::Skip));
    let c = Arc::clone(&calls);
    wait("the good event handled", move || *c.lock().expect("lock") == 1).await;
    running.stop().await;
    assert_eq!(lag("skipper"), 0, "everything committed, skipped and dead-lettered included");
    let letters = read_dead_letters_raw(&b, "user.created.dlq", 1);
    assert_eq!(letters[0]("dlq-error-class").as_deref(), Some("undecodable"));
    assert_eq!(letters[0]("dlq-attempts").as_deref(), Some("1"), "never retried");

    // With UnknownTypes::DeadLetter, the unknown type goes to the DLQ too.
    let running = Running::start(consumer_for("strict", herald::consumer::UnknownTypes::DeadLetter));
    let c = Arc::clone(&calls);
    wait("the good event handled again", move || *c.lock().expect("lock") == 2).await;
    running.stop().await;
    assert_eq!(lag("strict"), 0);
    let letters = read_dead_letters_raw(&b, "user.created.dlq", 3);
    let classes: BTreeSet<String> = letters.iter().filter_map(|get| get("dlq-error-class")).collect();
    assert_eq!(classes, ["undecodable".to_string(), "unknown-type".to_string()].into_iter().collect());
}
