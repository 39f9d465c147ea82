//! Where several brokers matter: librdkafka's mock cluster with three brokers, partition
//! leaders spread over all of them, the group coordinator on another, and a leader moved
//! while the consumer runs. The publisher and the consumer runtime (with dead letters) must
//! not care.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Running, UserCreated, wait};
use herald::backoff::Backoff;
use herald::consumer::{Consumer, ConsumerConfig, HandlerError, RetryPolicy};
use herald::{Envelope, Publisher, PublisherConfig};
use rdkafka::mocking::{MockCluster, MockCoordinator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_and_consumer_work_across_three_brokers_and_a_leader_move() {
    common::log_if_asked();
    let cluster = MockCluster::new(3).expect("mock cluster");
    cluster.create_topic("user.created", 6, 1).expect("topic");
    cluster.create_topic("user.created.dlq", 2, 1).expect("dlq topic");
    for partition in 0..6 {
        cluster.partition_leader("user.created", partition, Some(partition % 3 + 1)).expect("leader");
    }
    cluster.coordinator(MockCoordinator::Group("notification-service".into()), 3).expect("coordinator");
    let b = cluster.bootstrap_servers();

    let publisher =
        Publisher::new(PublisherConfig::default().brokers(&b).client_id("auth-service")).expect("publisher");
    let total = 300u32;
    let mut partitions = BTreeSet::new();
    for n in 0..total {
        let placed =
            publisher.publish(UserCreated { user_id: format!("user-{}", n % 30), n }).await.expect("published");
        partitions.insert(placed.partition);
    }
    assert!(partitions.len() > 3, "keys spread over partitions led by different brokers: {partitions:?}");

    let poisoned = |n: u32| n % 100 == 42;
    let handled: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
    let backoff = Backoff::default().initial_delay(Duration::from_millis(5));
    let config = ConsumerConfig::new(&b, "notification-service", &["user.created"])
        .retry(RetryPolicy::default().backoff(backoff));
    let h = Arc::clone(&handled);
    let running = Running::start(Consumer::new(config).on(move |event: Envelope<UserCreated>, _ctx| {
        let handled = Arc::clone(&h);
        async move {
            if poisoned(event.data.n) {
                return Err(HandlerError::Permanent("invalid".into()));
            }
            handled.lock().expect("lock").insert(event.data.n);
            Ok(())
        }
    }));
    let h = Arc::clone(&handled);
    wait("some events handled", move || h.lock().expect("lock").len() > 20).await;
    // Partition 0 moves from broker 1 to broker 2 mid-stream; more events follow.
    cluster.partition_leader("user.created", 0, Some(2)).expect("leader move");
    for n in total..total + 100 {
        publisher
            .publish(UserCreated { user_id: format!("user-{}", n % 30), n })
            .await
            .expect("published after the move");
    }
    let expected: BTreeSet<u32> = (0..total + 100).filter(|n| !poisoned(*n)).collect();
    let h = Arc::clone(&handled);
    wait("every good event handled", move || *h.lock().expect("lock") == expected).await;
    running.stop().await;
}
