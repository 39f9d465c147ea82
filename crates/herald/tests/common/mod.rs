//! Shared by the consumer tests: the seeds' user.created event, a publisher loop, a
//! consumer running in the background, and polling waits.

#![allow(dead_code, unreachable_pub)] // each test file uses part of it

use std::time::{Duration, Instant};

use herald::consumer::{Consumer, ConsumerError};
use herald::{Publisher, PublisherConfig};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::BorrowedMessage;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserCreated {
    pub user_id: String,
    pub n: u32,
}
herald::event!(UserCreated, type = "user.created", version = 1, key = user_id);

pub fn log_if_asked() {
    if let Ok(filter) = std::env::var("HERALD_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// Publishes `count` events `n = 0..count`, keyed over `keys` users, all concurrently.
pub async fn publish(bootstrap: &str, count: u32, keys: u32) {
    let publisher =
        Publisher::new(PublisherConfig::default().brokers(bootstrap).client_id("auth-service")).expect("publisher");
    let mut sends = Vec::new();
    for n in 0..count {
        let publisher = publisher.clone();
        sends.push(tokio::spawn(async move {
            publisher.publish(UserCreated { user_id: format!("user-{}", n % keys), n }).await
        }));
    }
    for send in sends {
        send.await.expect("task").expect("published");
    }
}

/// Polls `done` every 20 ms; fails the test after 90 s.
pub async fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A consumer running on its own task.
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), ConsumerError>>,
}

impl Running {
    pub fn start(consumer: Consumer) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(consumer.run(async move {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    /// Graceful shutdown: finish, commit, leave.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.expect("consumer task").expect("consumer ran");
    }

    /// A crash: the task is dropped wherever it is; nothing more is committed.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    /// The consumer's own result, for consumers that are expected to refuse to start.
    pub async fn into_task(self) -> Result<(), ConsumerError> {
        self.task.await.expect("consumer task")
    }
}

/// Rewinds `group` on `topic` (partitions `0..partitions`) to offset 0, as an admin tool
/// would while the group is empty.
pub fn rewind(bootstrap: &str, group: &str, topic: &str, partitions: i32) {
    let admin: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", group).create().expect("client");
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p, Offset::Offset(0)).expect("offset");
    }
    admin.commit(&list, rdkafka::consumer::CommitMode::Sync).expect("rewind commit");
}

/// Reads `count` messages of `topic` from the beginning (in a fresh group), mapped by
/// `map`; fails after 60 s.
pub fn read_from_start<T>(
    bootstrap: &str,
    topic: &str,
    count: usize,
    map: impl Fn(&BorrowedMessage<'_>) -> T,
) -> Vec<T> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("dlq-reader-{}", uuid::Uuid::now_v7().simple()))
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("dlq reader");
    reader.subscribe(&[topic]).expect("subscribe");
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while read.len() < count {
        assert!(Instant::now() < deadline, "only {} of {count} messages arrived from {topic}", read.len());
        let Some(message) = tokio::task::block_in_place(|| reader.poll(Duration::from_millis(200))) else { continue };
        match message {
            Ok(message) => read.push(map(&message)),
            // A topic created after the subscription is reported missing until it exists.
            Err(error) => eprintln!("reading {topic}: {error}"),
        }
    }
    read
}
