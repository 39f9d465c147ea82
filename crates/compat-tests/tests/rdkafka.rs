//! The broker against librdkafka (through rdkafka): idempotent keyed produce, every
//! compression codec, manual-assignment consume, ListOffsets, restart, retries through a
//! proxy that cuts connections, and a compacted topic cleaned under a producer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald_broker::BrokerConfig;
use herald_compat_tests::{TestBroker, create_topic};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

use herald_compat_tests::proxy::CuttingProxy;

/// One consumed record.
#[derive(Debug, Clone)]
struct Consumed {
    partition: i32,
    offset: i64,
    key: String,
    value: u64,
}

fn producer(bootstrap: &str, compression: &str) -> FutureProducer {
    producer_with(bootstrap, compression, &[])
}

fn producer_with(bootstrap: &str, compression: &str, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = rdkafka::ClientConfig::new();
    for (key, value) in extra {
        config.set(*key, *value);
    }
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .set("compression.codec", compression)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// Sends `count` messages keyed `key-<i % keys>` with value `i`; returns each delivery's
/// (partition, offset) by message index.
async fn produce_keyed(producer: &FutureProducer, topic: &str, count: u64, keys: u64) -> Vec<(i32, i64)> {
    produce_keyed_range(producer, topic, 0..count, keys).await
}

/// [`produce_keyed`] for the message indexes in `range`.
async fn produce_keyed_range(
    producer: &FutureProducer,
    topic: &str,
    range: std::ops::Range<u64>,
    keys: u64,
) -> Vec<(i32, i64)> {
    let mut pending = Vec::with_capacity((range.end - range.start) as usize);
    for i in range {
        let key = format!("key-{}", i % keys);
        let value = i.to_string();
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("queued"));
    }
    let mut placed = Vec::with_capacity(pending.len());
    for delivery in pending {
        let delivery = delivery.await.expect("delivery reported").map_err(|(e, _)| e).expect("delivered");
        placed.push((delivery.partition, delivery.offset));
    }
    placed
}

/// Reads every partition of `topic` from the beginning until `expected` records arrived.
fn consume_all(bootstrap: &str, topic: &str, partitions: i32, expected: usize) -> Vec<Consumed> {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // librdkafka wants a group id even for manual assignment; nothing is committed.
        .set("group.id", "herald-compat-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        assert!(Instant::now() < deadline, "only {} of {expected} records arrived", out.len());
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.expect("consume");
        let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf8 key");
        let value = std::str::from_utf8(message.payload().expect("payload")).expect("utf8").parse().expect("number");
        out.push(Consumed { partition: message.partition(), offset: message.offset(), key, value });
    }
    // Nothing beyond what was produced shows up.
    let extra = consumer.poll(Duration::from_millis(500));
    assert!(extra.is_none(), "an unexpected extra record: {:?}", extra.map(|m| m.map(|m| m.offset())));
    out
}

/// Every value exactly once; per key, values in increasing order, all on one partition.
fn check_exactly_once_in_key_order(records: &[Consumed], count: u64) {
    let mut seen = vec![false; count as usize];
    let mut last_per_key: HashMap<&str, (i32, u64)> = HashMap::new();
    for r in records {
        assert!(!std::mem::replace(&mut seen[r.value as usize], true), "value {} delivered twice", r.value);
        if let Some(&(partition, previous)) = last_per_key.get(r.key.as_str()) {
            assert_eq!(partition, r.partition, "key {} moved partitions", r.key);
            assert!(previous < r.value, "key {}: {} after {}", r.key, r.value, previous);
        }
        last_per_key.insert(&r.key, (r.partition, r.value));
    }
    assert!(seen.iter().all(|s| *s), "some values never arrived");
}

fn latest_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("consumer");
    (0..partitions)
        .map(|p| consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("ListOffsets").1)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_keyed_produce_of_200k_reads_back_exactly_in_key_order() {
    let broker = TestBroker::start().await;
    let topic = "user.created";
    create_topic(&broker.bootstrap(), topic, 6).await;
    let count = 200_000;
    let placed = produce_keyed(&producer(&broker.bootstrap(), "none"), topic, count, 1000).await;
    let records = consume_all(&broker.bootstrap(), topic, 6, count as usize);
    check_exactly_once_in_key_order(&records, count);
    // The consumer saw each message where the producer was told it went.
    for r in &records {
        assert_eq!(placed[r.value as usize], (r.partition, r.offset), "value {}", r.value);
    }
    // ListOffsets(latest) is the last offset + 1 on every partition.
    let mut last = [-1i64; 6];
    for &(p, o) in &placed {
        last[p as usize] = last[p as usize].max(o);
    }
    let latest = latest_offsets(&broker.bootstrap(), topic, 6);
    assert_eq!(latest, last.iter().map(|o| o + 1).collect::<Vec<_>>());
    assert!(last.iter().all(|o| *o > 0), "murmur2 spread keys over all partitions: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_compression_codec_round_trips() {
    let broker = TestBroker::start().await;
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("compressed-{codec}");
        create_topic(&broker.bootstrap(), &topic, 3).await;
        let count = 20_000;
        produce_keyed(&producer(&broker.bootstrap(), codec), &topic, count, 100).await;
        let records = consume_all(&broker.bootstrap(), &topic, 3, count as usize);
        check_exactly_once_in_key_order(&records, count);
        let latest: i64 = latest_offsets(&broker.bootstrap(), &topic, 3).iter().sum();
        assert_eq!(latest, count as i64, "{codec}: ListOffsets(latest) sums to the record count");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_latest_is_last_offset_plus_one_after_every_produce_pattern() {
    let broker = TestBroker::start().await;
    let topic = "patterns";
    create_topic(&broker.bootstrap(), topic, 2).await;
    let producer = producer(&broker.bootstrap(), "none");
    let mut expected_next = [0i64; 2];
    // Single records, small bursts, a large burst, then single records again.
    for burst in [1u64, 1, 7, 100, 1, 5_000, 33, 1, 50_000, 2] {
        let mut pending = Vec::new();
        for i in 0..burst {
            let value = i.to_string();
            let partition = (i % 2) as i32;
            let record = FutureRecord::<(), _>::to(topic).partition(partition).payload(&value);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).expect("queued"));
        }
        for delivery in pending {
            let d = delivery.await.expect("reported").map_err(|(e, _)| e).expect("delivered");
            assert_eq!(d.offset, expected_next[d.partition as usize], "offsets are dense and in order");
            expected_next[d.partition as usize] += 1;
        }
        assert_eq!(latest_offsets(&broker.bootstrap(), topic, 2), expected_next.to_vec(), "after a burst of {burst}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_record_and_offsets_continue() {
    let mut broker = TestBroker::start().await;
    let topic = "orders";
    create_topic(&broker.bootstrap(), topic, 3).await;
    let first = produce_keyed(&producer(&broker.bootstrap(), "lz4"), topic, 10_000, 50).await;
    broker.restart().await;
    let latest = latest_offsets(&broker.bootstrap(), topic, 3);
    assert_eq!(latest.iter().sum::<i64>(), 10_000);
    let records = consume_all(&broker.bootstrap(), topic, 3, 10_000);
    check_exactly_once_in_key_order(&records, 10_000);
    // A new producer after the restart appends after the old records.
    let more = produce_keyed(&producer(&broker.bootstrap(), "none"), topic, 100, 50).await;
    for (p, o) in more {
        assert!(o >= latest[p as usize], "offset {o} on partition {p} reuses an old offset");
    }
    assert_eq!(first.len(), 10_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_cut_connections_leave_no_duplicate_and_no_gap() {
    // Clients must reach the broker only through the proxy, so it advertises the proxy.
    let proxy = CuttingProxy::bind().await;
    let config = BrokerConfig {
        advertised_host: "127.0.0.1".into(),
        advertised_port: proxy.addr().port(),
        ..BrokerConfig::default()
    };
    let broker = TestBroker::start_with(config, Default::default()).await;
    proxy.start(broker.addr(), 5, 10);
    let topic = "payments";
    create_topic(&broker.bootstrap(), topic, 3).await;
    let count = 30_000;
    // Small batches, so there are many produce requests to cut; quick reconnects, so the
    // cuts do not run into the message timeout.
    let quick = [("batch.num.messages", "200"), ("reconnect.backoff.ms", "10"), ("reconnect.backoff.max.ms", "100")];
    let producer = producer_with(&proxy.addr().to_string(), "none", &quick);
    let placed = produce_keyed(&producer, topic, count, 200).await;
    assert!(proxy.cuts() > 0, "the proxy cut no connection, so nothing was retried");
    let records = consume_all(&broker.bootstrap(), topic, 3, count as usize);
    check_exactly_once_in_key_order(&records, count);
    // No gap: each partition holds offsets 0..n exactly.
    let mut per_partition: HashMap<i32, Vec<i64>> = HashMap::new();
    for r in &records {
        per_partition.entry(r.partition).or_default().push(r.offset);
    }
    for (p, mut offsets) in per_partition {
        offsets.sort_unstable();
        assert!(offsets.iter().enumerate().all(|(i, o)| i as i64 == *o), "partition {p} has a gap");
    }
    assert_eq!(placed.len(), count as usize);
}

/// librdkafka fetches by topic id (Fetch v13 and later) once Metadata hands out ids. A
/// topic deleted and created again under its name gets a new id, and a new reader sees
/// only the new topic's records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_created_again_under_its_name_has_a_new_id_and_only_its_records() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    let id = || broker.running().broker().topic("again").map(|meta| meta.id);
    create_topic(&b, "again", 2).await;
    let first = id().expect("created");
    assert!(!first.is_nil());
    produce_keyed(&producer(&b, "none"), "again", 100, 10).await;
    check_exactly_once_in_key_order(&consume_all(&b, "again", 2, 100), 100);

    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &b).create().expect("admin");
    let deleted = admin.delete_topics(&["again"], &AdminOptions::new()).await.expect("DeleteTopics");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    create_topic(&b, "again", 2).await;
    let second = id().expect("created again");
    assert_ne!(second, first, "a new topic, a new id");
    produce_keyed(&producer(&b, "none"), "again", 10, 10).await;
    check_exactly_once_in_key_order(&consume_all(&b, "again", 2, 10), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_is_cleaned_under_a_producer_and_a_consumer_crosses_its_gaps() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let config = BrokerConfig { cleaner_backoff: Duration::from_millis(100), ..BrokerConfig::default() };
    let broker = TestBroker::start_with(config, Default::default()).await;
    let bootstrap = broker.bootstrap();
    let topic = "changelog";
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().expect("admin client");
    let new_topic = NewTopic::new(topic, 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "4096")
        .set("min.cleanable.dirty.ratio", "0.01");
    let created = admin.create_topics(&[new_topic], &AdminOptions::new()).await.expect("CreateTopics answered");
    created.into_iter().for_each(|r| r.map(drop).expect("a compacted topic is created"));

    // lz4 batches of idempotent records: the cleaner re-encodes what it keeps of them.
    let producer = producer(&bootstrap, "lz4");
    let keys = 20;
    for start in (0..3_000).step_by(100) {
        produce_keyed_range(&producer, topic, start..start + 100, keys).await;
    }
    // The broker keeps the last few batches of each producer whole (a restart rebuilds
    // the producer's state from them): end with small ones, so those are small.
    let last_batches_small = |producer: &FutureProducer, from: u64| {
        let (producer, topic) = (producer.clone(), topic);
        async move {
            for i in from..from + 5 {
                produce_keyed_range(&producer, topic, i..i + 1, keys).await;
            }
        }
    };
    last_batches_small(&producer, 3_000).await;
    let partition = broker.running().broker().partition(topic, 0).expect("partition");
    let full = partition.log().size_bytes();
    // The producer goes on while the cleaner works, now uncompressed (batches the cleaner
    // rewrites in place); the log shrinks at times even as it is written.
    let producer = self::producer(&bootstrap, "none");
    let (mut produced, mut largest, mut shrank) = (3_005, full, false);
    let deadline = Instant::now() + Duration::from_secs(60);
    while produced < 23_005 || !shrank {
        assert!(Instant::now() < deadline, "the log never shrank while written");
        produce_keyed_range(&producer, topic, produced..produced + 100, keys).await;
        produced += 100;
        let size = partition.log().size_bytes();
        shrank |= size < largest;
        largest = largest.max(size);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    last_batches_small(&producer, produced).await;
    produced += 5;
    // Then it catches up.
    while partition.log().size_bytes() > largest / 4 {
        assert!(Instant::now() < deadline, "not cleaned: {} of {largest} bytes", partition.log().size_bytes());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let end = latest_offsets(&bootstrap, topic, 1)[0];
    assert_eq!(end as u64, produced, "every record got an offset");

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "herald-compat-compacted")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, Offset::Beginning).expect("assign");
    consumer.assign(&assignment).expect("assign");
    let mut latest: HashMap<String, u64> = HashMap::new();
    let (mut read, mut last_offset) = (0u64, -1i64);
    while last_offset < end - 1 {
        assert!(Instant::now() < deadline, "stuck after offset {last_offset} of {end}");
        let Some(message) = consumer.poll(Duration::from_millis(200)) else { continue };
        let message = message.expect("consume");
        assert!(message.offset() > last_offset, "offsets go forward");
        last_offset = message.offset();
        read += 1;
        let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf8 key");
        let value: u64 = std::str::from_utf8(message.payload().expect("payload")).expect("utf8").parse().expect("n");
        latest.insert(key, value);
    }
    assert!(read < produced / 2, "read {read} of {produced}: the consumer crossed gaps");
    for k in 0..keys {
        let newest = (0..produced).rev().find(|i| i % keys == k).expect("produced");
        assert_eq!(latest.get(&format!("key-{k}")), Some(&newest), "key-{k} ends at its newest value");
    }
}
