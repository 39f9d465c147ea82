//! The next-generation consumer group protocol (KIP-848) with librdkafka's
//! `group.protocol=consumer`: members come and go (3, then 4, then 2) and no partition is
//! ever held by two of them; every record is read; a classic group reads the same topic
//! alongside.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use herald_broker::{BrokerConfig, GroupConfig};
use herald_compat_tests::{TestBroker, create_topic, group_reader};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

const TOPIC: &str = "kip848";
const PARTITIONS: i32 = 6;
const RECORDS: usize = 600;

/// A member polling on its own thread, counting what it reads.
struct Member {
    consumer: Arc<BaseConsumer>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, protocol: &str, read: Arc<AtomicUsize>) -> Self {
        let mut config = group_reader(bootstrap, group);
        config.set("group.protocol", protocol);
        if protocol == "classic" {
            config.set("session.timeout.ms", "6000").set("heartbeat.interval.ms", "300");
        }
        let consumer: Arc<BaseConsumer> = Arc::new(config.create().expect("consumer"));
        consumer.subscribe(&[TOPIC]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let (polling, stopping) = (Arc::clone(&consumer), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                if let Some(Ok(message)) = polling.poll(Duration::from_millis(50)) {
                    let _ = message.payload();
                    read.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Self { consumer, stop, thread: Some(thread) }
    }

    fn partitions(&self) -> BTreeSet<i32> {
        self.consumer.assignment().map(|a| a.elements().iter().map(|e| e.partition()).collect()).unwrap_or_default()
    }

    fn close(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("poller");
        }
        self.consumer.unsubscribe();
        drop(self.consumer);
    }
}

/// A partition two members hold at once, looking twice at the first holder so a
/// hand-over that happened between two looks is not taken for one.
fn held_twice(members: &[Member]) -> Option<i32> {
    let views: Vec<BTreeSet<i32>> = members.iter().map(Member::partitions).collect();
    for (i, a) in views.iter().enumerate() {
        for b in &views[i + 1..] {
            if let Some(p) = a.intersection(b).next()
                && members[i].partitions().contains(p)
            {
                return Some(*p);
            }
        }
    }
    None
}

/// Waits until `members` hold every partition between them, checking all the while that
/// none is held twice.
fn settle(members: &[Member], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert_eq!(held_twice(members), None, "{what}: a partition held by two members");
        let all: BTreeSet<i32> = members.iter().flat_map(Member::partitions).collect();
        let everyone_has_some = members.iter().all(|m| !m.partitions().is_empty());
        if all.len() == PARTITIONS as usize && everyone_has_some {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not settled in 60 s: {:?}",
            members.iter().map(Member::partitions).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_come_and_go_and_no_partition_is_ever_held_twice() {
    let config = BrokerConfig {
        groups: GroupConfig { consumer_heartbeat_interval_ms: 250, ..GroupConfig::default() },
        ..BrokerConfig::default()
    };
    herald_compat_tests::init_logging();
    let broker = TestBroker::start_with(config, Default::default()).await;
    let b = broker.bootstrap();
    create_topic(&b, TOPIC, PARTITIONS).await;
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &b).create().expect("producer");
    for i in 0..RECORDS {
        let (key, value) = (format!("k{i}"), i.to_string());
        producer.send(FutureRecord::to(TOPIC).key(&key).payload(&value), Duration::from_secs(10)).await.expect("sent");
    }

    let read = Arc::new(AtomicUsize::new(0));
    let classic_read = Arc::new(AtomicUsize::new(0));
    let classic = tokio::task::spawn_blocking({
        let (b, read) = (b.clone(), Arc::clone(&classic_read));
        move || Member::start(&b, "classic-readers", "classic", read)
    })
    .await
    .expect("classic member");
    let members = tokio::task::spawn_blocking(move || {
        let mut members: Vec<Member> =
            (0..3).map(|_| Member::start(&b, "new-protocol", "consumer", Arc::clone(&read))).collect();
        settle(&members, "3 members");
        members.push(Member::start(&b, "new-protocol", "consumer", Arc::clone(&read)));
        settle(&members, "4 members");
        members.pop().expect("one").close();
        members.pop().expect("another").close();
        settle(&members, "2 members");
        let deadline = Instant::now() + Duration::from_secs(60);
        while read.load(Ordering::Relaxed) < RECORDS {
            assert!(Instant::now() < deadline, "the group read {} of {RECORDS}", read.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(50));
        }
        members
    })
    .await
    .expect("members");
    let deadline = Instant::now() + Duration::from_secs(60);
    while classic_read.load(Ordering::Relaxed) < RECORDS {
        assert!(
            Instant::now() < deadline,
            "the classic group read {} of {RECORDS}",
            classic_read.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listing = broker.running().broker().groups().list();
    let kind = |id: &str| listing.iter().find(|g| g.group_id == id).map(|g| g.group_type);
    assert_eq!((kind("new-protocol"), kind("classic-readers")), (Some("consumer"), Some("classic")));
    tokio::task::spawn_blocking(move || {
        members.into_iter().for_each(Member::close);
        classic.close();
    })
    .await
    .expect("closed");
}
