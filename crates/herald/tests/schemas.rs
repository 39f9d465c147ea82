//! The publisher with a schema registry (Herald's, served over HTTP on 127.0.0.1) and a
//! real broker: a derived schema registered once and its id on every record; an event
//! that breaks a given schema refused with nothing sent; the subject's latest schema used
//! when none is given; Confluent framing read back by a herald consumer.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::{Running, read_from_start, wait};
use herald::consumer::{Consumer, ConsumerConfig};
use herald::registry::{Framing, SchemaError};
use herald::testkit::TestBroker;
use herald::{Envelope, PublishError, Publisher, PublisherConfig};
use herald_gateway::{GatewayConfig, RunningRegistry};
use herald_registry::{Registry, Which};
use rdkafka::Message as _;
use rdkafka::message::Headers as _;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct OrderPlaced {
    order_id: String,
    qty: u32,
}
herald::event!(OrderPlaced, type = "order.placed", version = 2, key = order_id);

struct Served {
    registry: Arc<Registry>,
    serving: RunningRegistry,
    url: String,
    _dir: tempfile::TempDir,
}

async fn registry() -> Served {
    let dir = tempfile::tempdir().expect("dir");
    let registry = Registry::open_in(dir.path()).expect("registry");
    let registry = Arc::new(registry);
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let serving =
        RunningRegistry::start(listen, &GatewayConfig::default(), Arc::clone(&registry)).await.expect("listener");
    Served { url: format!("http://{}", serving.local_addr()), registry, serving, _dir: dir }
}

fn order(order_id: &str, qty: u32) -> OrderPlaced {
    OrderPlaced { order_id: order_id.into(), qty }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_validated_registered_once_and_carry_their_schema_id() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let served = registry().await;
    let config = PublisherConfig::default().brokers(&b).schema_registry(&served.url);
    let publisher = Publisher::new(config).expect("publisher");
    publisher.derive_schema::<OrderPlaced>();
    for n in 0..3 {
        publisher.publish_to("orders", &Envelope::new("shop", order(&format!("o{n}"), n))).await.expect("published");
    }
    // Registered once, as the envelope around the derived schema.
    assert_eq!(served.registry.versions("orders-value", false).expect("subject"), [1]);
    let registered = served.registry.version("orders-value", Which::Latest, false).expect("latest");
    let schema: serde_json::Value = serde_json::from_str(&registered.schema.schema).expect("json");
    assert_eq!(schema["properties"]["eventType"]["const"], "order.placed");
    assert!(schema["properties"]["data"]["properties"]["qty"].is_object(), "{schema}");
    let ids = read_from_start(&b, "orders", 3, |m| {
        m.headers().and_then(|h| h.iter().find(|h| h.key == "schema-id").and_then(|h| h.value).map(<[u8]>::to_vec))
    });
    let want = registered.id.to_string().into_bytes();
    assert!(ids.iter().all(|id| id.as_deref() == Some(want.as_slice())), "{ids:?}");

    // A stricter schema given for another topic's subject: the breaking event is refused
    // and nothing reaches the topic; the next good one does.
    let strict =
        Publisher::new(PublisherConfig::default().brokers(&b).schema_registry(&served.url)).expect("publisher");
    strict.schema::<OrderPlaced>(serde_json::json!({
        "type": "object",
        "properties": { "order_id": { "type": "string" }, "qty": { "type": "integer", "maximum": 10 } },
        "required": ["order_id", "qty"],
    }));
    let refused = strict.publish_to("small-orders", &Envelope::new("shop", order("big", 1000))).await;
    match refused {
        Err(PublishError::Schema(SchemaError::Invalid { errors, .. })) => {
            assert!(errors.iter().any(|e| e.contains("/data/qty")), "{errors:?}");
        }
        other => panic!("expected an invalid event, got {other:?}"),
    }
    strict.publish_to("small-orders", &Envelope::new("shop", order("small", 3))).await.expect("a valid one goes");
    let values = read_from_start(&b, "small-orders", 1, |m| m.payload().map(<[u8]>::to_vec));
    let only: Envelope<OrderPlaced> =
        serde_json::from_slice(values[0].as_deref().unwrap_or_default()).expect("envelope");
    assert_eq!(only.data.order_id, "small", "the refused event was never sent");

    // No schema given: the subject's latest one is looked up and enforced.
    let looked_up =
        Publisher::new(PublisherConfig::default().brokers(&b).schema_registry(&served.url)).expect("publisher");
    let refused = looked_up.publish_to("small-orders", &Envelope::new("shop", order("big", 99))).await;
    assert!(matches!(refused, Err(PublishError::Schema(SchemaError::Invalid { .. }))), "{refused:?}");
    served.serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_framing_is_written_and_read_by_a_herald_consumer() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let served = registry().await;
    let config = PublisherConfig::default().brokers(&b).schema_registry(&served.url).schema_framing(Framing::Confluent);
    let publisher = Publisher::new(config).expect("publisher");
    publisher.derive_schema::<OrderPlaced>();
    publisher.publish(order("o1", 2)).await.expect("published");
    let id = served
        .registry
        .version(&format!("{}-value", <OrderPlaced as herald::Event>::TOPIC), Which::Latest, false)
        .expect("latest")
        .id;
    let topic = <OrderPlaced as herald::Event>::TOPIC;
    let raw = read_from_start(&b, topic, 1, |m| m.payload().map(<[u8]>::to_vec).unwrap_or_default());
    assert_eq!(&raw[0][..5], &[0, (id >> 24) as u8, (id >> 16) as u8, (id >> 8) as u8, id as u8], "magic byte and id");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let consumer =
        Consumer::new(ConsumerConfig::new(&b, "framed", &[topic])).on(move |event: Envelope<OrderPlaced>, _ctx| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().expect("lock").push(event.data);
                Ok(())
            }
        });
    let running = Running::start(consumer);
    wait("the framed event handled", || !seen.lock().expect("lock").is_empty()).await;
    running.stop().await;
    assert_eq!(seen.lock().expect("lock").clone(), [order("o1", 2)]);
    served.serving.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_with_the_registry_dead_letters_a_record_that_breaks_its_schema() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let served = registry().await;
    let publisher =
        Publisher::new(PublisherConfig::default().brokers(&b).schema_registry(&served.url)).expect("publisher");
    publisher.schema::<OrderPlaced>(serde_json::json!({
        "type": "object",
        "properties": { "order_id": { "type": "string" }, "qty": { "type": "integer", "maximum": 10 } },
        "required": ["order_id", "qty"],
    }));
    publisher.publish_to("checked", &Envelope::new("shop", order("good", 1))).await.expect("published");
    let id = served.registry.version("checked-value", Which::Latest, false).expect("latest").id.to_string();
    // A writer that skips validation: qty 50 reads fine as the Rust type but breaks the
    // schema the record names (so only the schema check stops it).
    let raw: FutureProducer = rdkafka::ClientConfig::new().set("bootstrap.servers", &b).create().expect("producer");
    let bad = serde_json::to_value(Envelope::new("shop", order("bad", 50))).expect("json");
    let headers = OwnedHeaders::new()
        .insert(Header { key: "event-type", value: Some("order.placed") })
        .insert(Header { key: "event-version", value: Some("1") })
        .insert(Header { key: "schema-id", value: Some(id.as_str()) });
    let payload = bad.to_string();
    let record = FutureRecord::to("checked").key("bad").payload(&payload).headers(headers);
    raw.send(record, std::time::Duration::from_secs(10)).await.expect("sent");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let config = ConsumerConfig::new(&b, "checking", &["checked"]).schema_registry(&served.url);
    let consumer = Consumer::new(config).on(move |event: Envelope<OrderPlaced>, _ctx| {
        let sink = Arc::clone(&sink);
        async move {
            sink.lock().expect("lock").push(event.data.order_id);
            Ok(())
        }
    });
    let running = Running::start(consumer);
    let dead = read_from_start(&b, "checked.dlq", 1, |m| {
        let class = m.headers().and_then(|h| h.iter().find(|h| h.key == "dlq-error-class").and_then(|h| h.value));
        (m.key().map(<[u8]>::to_vec), class.map(<[u8]>::to_vec))
    });
    wait("the good record handled", || !seen.lock().expect("lock").is_empty()).await;
    running.stop().await;
    assert_eq!(dead, [(Some(b"bad".to_vec()), Some(b"undecodable".to_vec()))]);
    assert_eq!(seen.lock().expect("lock").clone(), ["good"], "the breaking record never reached the handler");
    served.serving.shutdown().await;
}

// `order.placed` as first published (v1) and as handlers know it now (v2).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
struct OrderPlacedV1 {
    order_id: String,
    count: u32,
}
herald::event!(OrderPlacedV1, type = "order.placed", version = 1, topic = "orders.versioned", key = order_id);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_version_is_checked_against_its_own_schema_then_reaches_the_handler_upcast() {
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let served = registry().await;
    let publisher =
        Publisher::new(PublisherConfig::default().brokers(&b).schema_registry(&served.url)).expect("publisher");
    publisher.derive_schema::<OrderPlacedV1>();
    publisher.publish(OrderPlacedV1 { order_id: "o1".into(), count: 4 }).await.expect("published as v1");

    let upcasters = herald::upcast::Upcasters::new().register("order.placed", 1, |mut data| {
        data["qty"] = data["count"].take();
        Ok(data)
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let config = ConsumerConfig::new(&b, "upcasting", &["orders.versioned"]).schema_registry(&served.url);
    let consumer =
        Consumer::new(config).upcasters(Arc::new(upcasters)).on(move |event: Envelope<OrderPlaced>, _ctx| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock().expect("lock").push(event.data);
                Ok(())
            }
        });
    let running = Running::start(consumer);
    wait("the v1 event handled as v2", || !seen.lock().expect("lock").is_empty()).await;
    running.stop().await;
    assert_eq!(seen.lock().expect("lock").clone(), [order("o1", 4)]);
    served.serving.shutdown().await;
}
