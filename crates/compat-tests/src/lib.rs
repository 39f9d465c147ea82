//! Test support for running Herald's broker against real Kafka clients: the in-process
//! broker of `herald::testkit`, rdkafka client configs pointed at it, a connection-cutting
//! proxy, kcat discovery. It holds no test logic of its own; it refuses to mock anything
//! (the broker, the sockets and the clients are all real).

pub mod proxy;

use std::path::PathBuf;

use rdkafka::ClientConfig;

/// The in-process broker: the same one services use in their own tests.
pub use herald::testkit::TestBroker;

/// A client config pointed at `broker` (IPv4, as the broker listens on 127.0.0.1).
pub fn client(broker: &TestBroker) -> ClientConfig {
    init_logging();
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker.bootstrap()).set("broker.address.family", "v4");
    config
}

/// A consumer of `group` that starts at the beginning, commits every 200 ms and polls
/// with short fetch waits (tests add the group protocol's own settings).
pub fn group_reader(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "200")
        .set("fetch.wait.max.ms", "100");
    config
}

/// Creates `topic` with `partitions` partitions through the admin API (CreateTopics).
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("CreateTopics answered");
    for result in results {
        result.expect("topic created");
    }
}

/// `kcat`'s path, if it is installed. Tests that need it say they were skipped when not,
/// unless `HERALD_REQUIRE_KCAT` is set (as `.ci/run` does), in which case they fail.
pub fn kcat() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("kcat")).find(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var_os("HERALD_REQUIRE_KCAT").is_none(),
            "kcat is required (HERALD_REQUIRE_KCAT) but not on PATH"
        );
        eprintln!("SKIPPED: kcat is not installed (apt-get install kcat)");
    }
    found
}

/// Broker logs to the test output when `HERALD_TEST_LOG` holds a filter (e.g. `debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("HERALD_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// The partitions of `topic` in a consumer-protocol assignment (as SyncGroup carries it).
pub fn assigned_partitions(assignment: &bytes::Bytes, topic: &str) -> std::collections::BTreeSet<i32> {
    use kafka_protocol::messages::ConsumerProtocolAssignment;
    use kafka_protocol::protocol::Decodable;
    let mut bytes = assignment.clone();
    if bytes.len() < 2 {
        return Default::default();
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let _ = bytes::Buf::get_i16(&mut bytes);
    match ConsumerProtocolAssignment::decode(&mut bytes, version.clamp(0, 3)) {
        Ok(decoded) => decoded
            .assigned_partitions
            .iter()
            .filter(|tp| &*tp.topic.0 == topic)
            .flat_map(|tp| tp.partitions.iter().copied())
            .collect(),
        Err(_) => Default::default(),
    }
}
