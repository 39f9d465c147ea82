//! The publisher against a real in-process Herald broker (`herald::testkit`) and a raw
//! rdkafka consumer: where events land, what the record carries, and clear failures.

use std::collections::BTreeSet;
use std::time::Duration;

use herald::testkit::TestBroker;
use herald::{Envelope, PublishError, Publisher, PublisherConfig};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct UserCreated {
    user_id: String,
    email: String,
}
herald::event!(UserCreated, type = "user.created", version = 1, key = user_id);

fn user(i: u32) -> UserCreated {
    UserCreated { user_id: format!("user-{i}"), email: format!("user{i}@example.com") }
}

fn consumer(bootstrap: &str, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["user.created"]).expect("subscribe");
    consumer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_carry_the_envelope_key_and_headers_to_every_group() {
    let broker = TestBroker::start().await;
    let publisher = Publisher::new(PublisherConfig::default().brokers(broker.bootstrap()).client_id("auth-service"))
        .expect("publisher");
    let mut placed = Vec::new();
    for i in 0..100 {
        let envelope = Envelope::new("auth-service", user(i)).with_correlation_id(format!("signup-{i}"));
        placed.push(publisher.publish_envelope(&envelope).await.expect("published"));
    }
    let first = publisher.publish(user(100)).await.expect("published");
    assert!(first.offset >= 0 && (0..3).contains(&first.partition), "{first:?}");

    // The seeds' diagram: both services' groups receive every event.
    for group in ["notification-service", "analytics-service"] {
        let consumer = consumer(&broker.bootstrap(), group);
        let mut seen = BTreeSet::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while seen.len() < 101 {
            assert!(std::time::Instant::now() < deadline, "{group} saw only {} events", seen.len());
            let Some(message) = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(200))) else {
                continue;
            };
            let message = message.expect("consume");
            let envelope: Envelope<UserCreated> =
                Envelope::from_json(message.payload().expect("payload"), 1 << 20).expect("an envelope");
            assert_eq!(message.key(), Some(envelope.data.user_id.as_bytes()), "keyed by the entity id");
            let headers = message.headers().expect("headers");
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            assert_eq!(header("event-type").as_deref(), Some("user.created"));
            assert_eq!(header("event-version").as_deref(), Some("1"));
            assert_eq!(header("content-type").as_deref(), Some("application/json"));
            assert_eq!(header("event-id"), Some(envelope.event_id.to_string()));
            assert_eq!(header("correlation-id"), envelope.correlation_id);
            assert_eq!(envelope.source, "auth-service");
            seen.insert(envelope.data.user_id);
        }
    }
    assert_eq!(placed.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_and_an_oversized_event_are_clear_errors() {
    // Nothing listens on port 1.
    let mut config = PublisherConfig::default().brokers("127.0.0.1:1");
    config.timeout = Duration::from_secs(2);
    let publisher = Publisher::new(config).expect("publisher");
    let error = publisher.publish(user(1)).await.expect_err("nothing to publish to");
    assert!(matches!(error, PublishError::Delivery { .. }), "{error}");
    assert!(error.to_string().contains("user.created"), "{error}");

    let broker = TestBroker::start().await;
    let mut config = PublisherConfig::default().brokers(broker.bootstrap());
    config.envelope_max_bytes = 1_000;
    let publisher = Publisher::new(config).expect("publisher");
    let big = UserCreated { user_id: "u".into(), email: "x".repeat(5_000) };
    let error = publisher.publish(big).await.expect_err("too large");
    assert!(matches!(error, PublishError::Envelope(_)), "{error}");
}
