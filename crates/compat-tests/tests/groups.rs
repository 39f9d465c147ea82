//! Consumer groups against rdkafka and kcat: independent groups, members coming and
//! going (one frozen with SIGSTOP past its session timeout), commits surviving a restart,
//! a zombie commit refused at the wire, and kcat's balanced consumer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_broker::BrokerConfig;
use herald_broker::GroupConfig;
use herald_compat_tests::{TestBroker, create_topic, group_reader};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

/// Quick rebalances for tests: a short initial delay and short sessions allowed.
fn group_broker_config() -> BrokerConfig {
    BrokerConfig {
        groups: GroupConfig {
            min_session_timeout_ms: 1_000,
            initial_rebalance_delay_ms: 200,
            ..GroupConfig::default()
        },
        ..BrokerConfig::default()
    }
}

async fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<u64>) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .create()
        .expect("producer");
    let mut pending = Vec::new();
    for i in range {
        let key = format!("user-{}", i % 97);
        let value = i.to_string();
        pending.push(
            producer
                .send_result(FutureRecord::to(topic).key(&key).payload(&value))
                .map_err(|(e, _)| e)
                .expect("queued"),
        );
    }
    for d in pending {
        d.await.expect("reported").map_err(|(e, _)| e).expect("delivered");
    }
}

fn consumer_config(bootstrap: &str, group: &str, strategy: &str) -> ClientConfig {
    let mut config = group_reader(bootstrap, group);
    config
        .set("session.timeout.ms", "3000")
        .set("heartbeat.interval.ms", "300")
        .set("partition.assignment.strategy", strategy);
    config
}

/// Per generation, each member id and the partitions it was seen holding.
type Owners = Arc<Mutex<BTreeMap<i32, HashMap<String, BTreeSet<i32>>>>>;

/// (partition, offset, value) as one member consumed them.
type Seen = Arc<Mutex<Vec<(i32, i64, u64)>>>;

/// A group member polling on its own thread until told to stop; then it commits and
/// closes (which leaves the group).
struct Member {
    stop: Arc<AtomicBool>,
    seen: Seen,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(bootstrap: &str, group: &str, topic: &str, strategy: &str) -> Self {
        let consumer: BaseConsumer = consumer_config(bootstrap, group, strategy).create().expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Seen = Arc::default();
        let (stop_flag, sink) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = std::thread::spawn(move || {
            while !stop_flag.load(Ordering::SeqCst) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                    let value = std::str::from_utf8(m.payload().unwrap_or_default()).ok().and_then(|v| v.parse().ok());
                    if let Some(value) = value {
                        sink.lock().expect("lock").push((m.partition(), m.offset(), value));
                    }
                }
            }
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
        });
        Self { stop, seen, thread: Some(thread) }
    }

    fn values(&self) -> BTreeSet<u64> {
        self.seen.lock().expect("lock").iter().map(|(_, _, v)| *v).collect()
    }

    fn stop(mut self) -> Vec<(i32, i64, u64)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("member thread");
        }
        self.seen.lock().expect("lock").clone()
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_group_receives_every_message() {
    let broker = TestBroker::start_with(group_broker_config(), Default::default()).await;
    let b = broker.bootstrap();
    create_topic(&b, "user.created", 6).await;
    produce(&b, "user.created", 0..3_000).await;
    let members: Vec<(&str, Member)> =
        ["notification-service", "notification-service", "analytics-service", "analytics-service"]
            .into_iter()
            .map(|g| (g, Member::start(&b, g, "user.created", "range")))
            .collect();
    let all: BTreeSet<u64> = (0..3_000).collect();
    tokio::task::block_in_place(|| {
        wait_until("both groups to see every message", Duration::from_secs(60), || {
            ["notification-service", "analytics-service"].iter().all(|g| {
                let seen: BTreeSet<u64> =
                    members.iter().filter(|(n, _)| n == g).flat_map(|(_, m)| m.values()).collect();
                seen == all
            })
        });
    });
    for (_, m) in members {
        m.stop();
    }
    // Both groups committed everything: ListOffsets(latest) equals each committed sum.
    let lag = broker.running().broker().group_lag("notification-service");
    assert_eq!(lag.iter().map(|l| l.lag).sum::<i64>(), 0, "{lag:?}");
    assert_eq!(lag.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_offsets_survive_a_restart_and_consumption_resumes_there() {
    let mut broker = TestBroker::start_with(group_broker_config(), Default::default()).await;
    let b = broker.bootstrap();
    create_topic(&b, "orders", 3).await;
    produce(&b, "orders", 0..1_000).await;
    let first = Member::start(&b, "billing", "orders", "roundrobin");
    tokio::task::block_in_place(|| {
        wait_until("the first 1000", Duration::from_secs(60), || first.values().len() == 1_000);
    });
    let consumed = first.stop();
    assert_eq!(consumed.len(), 1_000, "no duplicates within one member");
    let before = broker.running().broker().group_lag("billing");
    assert!(before.iter().all(|l| l.lag == 0 && l.committed.is_some()), "{before:?}");

    broker.restart().await;
    let after = broker.running().broker().group_lag("billing");
    assert_eq!(before, after, "commits survive the restart");
    produce(&b, "orders", 1_000..1_500).await;
    let second = Member::start(&b, "billing", "orders", "roundrobin");
    tokio::task::block_in_place(|| {
        wait_until("the next 500", Duration::from_secs(60), || second.values().len() >= 500);
        std::thread::sleep(Duration::from_millis(500));
    });
    let resumed = second.stop();
    let values: BTreeSet<u64> = resumed.iter().map(|(_, _, v)| *v).collect();
    assert_eq!(values, (1_000..1_500).collect(), "resumed exactly at the committed offsets");
}

/// The frozen member of the churn test: a child process (this test binary again) that
/// consumes and prints what it saw until the parent stops or kills it.
#[test]
fn churn_child_member() {
    let Ok(bootstrap) = std::env::var("HERALD_CHURN_CHILD") else { return };
    let consumer: BaseConsumer =
        consumer_config(&bootstrap, "notification-service", "range").create().expect("consumer");
    consumer.subscribe(&["churn"]).expect("subscribe");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let value = std::str::from_utf8(m.payload().unwrap_or_default()).unwrap_or("0");
            println!("SEEN {} {} {value}", m.partition(), m.offset());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_come_and_go_while_producing_and_nothing_is_lost() {
    let broker = TestBroker::start_with(group_broker_config(), Default::default()).await;
    let b = broker.bootstrap();
    create_topic(&b, "churn", 6).await;
    let total = 12_000u64;

    // Watch the group from the broker: per generation, who holds which partition.
    let watching = Arc::new(AtomicBool::new(true));
    let generations: Owners = Arc::default();
    let watcher = {
        let (broker, watching, generations) =
            (Arc::clone(broker.running().broker()), Arc::clone(&watching), Arc::clone(&generations));
        std::thread::spawn(move || {
            while watching.load(Ordering::SeqCst) {
                if let Some(group) = broker.groups().describe("notification-service") {
                    let mut owned = HashMap::new();
                    for member in group.members().values() {
                        owned.insert(
                            member.id.clone(),
                            herald_compat_tests::assigned_partitions(&member.assignment, "churn"),
                        );
                    }
                    let mut map = generations.lock().expect("lock");
                    let entry = map.entry(group.generation()).or_default();
                    for (id, parts) in owned {
                        entry.entry(id).or_default().extend(parts);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "churn_child_member", "--nocapture", "--test-threads=1"])
        .env("HERALD_CHURN_CHILD", &b)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("child member");
    let child_seen: Seen = Arc::default();
    {
        let sink = Arc::clone(&child_seen);
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print "test churn_child_member ... " on the same line first.
                let Some(rest) = line.split("SEEN ").nth(1) else { continue };
                let f: Vec<&str> = rest.split_whitespace().collect();
                if let [p, o, v] = f[..]
                    && let (Ok(p), Ok(o), Ok(v)) = (p.parse(), o.parse(), v.parse())
                {
                    sink.lock().expect("lock").push((p, o, v));
                }
            }
        });
    }
    let m1 = Member::start(&b, "notification-service", "churn", "range");
    let m2 = Member::start(&b, "notification-service", "churn", "range");
    produce(&b, "churn", 0..total / 3).await;
    tokio::task::block_in_place(|| {
        wait_until("the child to consume", Duration::from_secs(60), || !child_seen.lock().expect("lock").is_empty());
    });
    // Freeze the child past its 3 s session: the broker must expire it, not wait for it.
    assert!(Command::new("kill").args(["-STOP", &child.id().to_string()]).status().expect("kill").success());
    produce(&b, "churn", total / 3..2 * total / 3).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m3 = Member::start(&b, "notification-service", "churn", "range");
    produce(&b, "churn", 2 * total / 3..total).await;
    let members = [m1, m2, m3];
    let all: BTreeSet<u64> = (0..total).collect();
    let deadline = Instant::now() + Duration::from_secs(90);
    let missing = tokio::task::block_in_place(|| {
        loop {
            let mut seen: BTreeSet<u64> = members.iter().flat_map(Member::values).collect();
            seen.extend(child_seen.lock().expect("lock").iter().map(|(_, _, v)| *v));
            let missing: Vec<u64> = all.difference(&seen).copied().collect();
            if missing.is_empty() || Instant::now() > deadline {
                break missing;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert!(
        missing.is_empty(),
        "{} messages never processed (first {:?}); lag {:?}; group {:?}",
        missing.len(),
        &missing[..missing.len().min(5)],
        broker.running().broker().group_lag("notification-service"),
        broker.running().broker().groups().describe("notification-service").map(|g| (
            g.state(),
            g.generation(),
            g.members().len()
        ))
    );
    let _ = child.kill();
    let _ = child.wait();
    let mut records: Vec<(i32, i64, u64)> = child_seen.lock().expect("lock").clone();
    for m in members {
        records.extend(m.stop());
    }
    watching.store(false, Ordering::SeqCst);
    watcher.join().expect("watcher");

    let distinct: BTreeSet<u64> = records.iter().map(|(_, _, v)| *v).collect();
    assert_eq!(distinct.len() as u64, total, "nothing lost");
    let duplicates = records.len() as u64 - total;
    // Duplicates come only from the uncommitted window of members that lost partitions
    // (auto-commit every 200 ms): far fewer than the stream.
    assert!(duplicates < total / 4, "{duplicates} duplicates");
    let generations = generations.lock().expect("lock");
    assert!(generations.len() >= 3, "joins, an expiry and a late join rebalance: {:?}", generations.keys());
    for (generation, owners) in generations.iter() {
        let mut owner_of: HashMap<i32, &String> = HashMap::new();
        for (member, partitions) in owners {
            for p in partitions {
                if let Some(other) = owner_of.insert(*p, member) {
                    panic!("generation {generation}: partition {p} owned by {other} and {member}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_balanced_consumer_reads_the_topic() {
    let Some(kcat) = herald_compat_tests::kcat() else { return };
    let broker = TestBroker::start_with(group_broker_config(), Default::default()).await;
    let b = broker.bootstrap();
    create_topic(&b, "kcat-group", 3).await;
    produce(&b, "kcat-group", 0..300).await;
    let output = tokio::task::block_in_place(|| {
        Command::new(kcat)
            .args([
                "-b",
                &b,
                "-G",
                "kcat-readers",
                "kcat-group",
                "-e",
                "-q",
                "-f",
                "%s\n",
                "-X",
                "auto.offset.reset=earliest",
            ])
            .output()
            .expect("kcat runs")
    });
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let values: BTreeSet<u64> =
        String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    assert_eq!(values, (0..300).collect(), "kcat -G read every message");
    let listed = broker.running().broker().groups().list();
    assert!(listed.iter().any(|g| g.group_id == "kcat-readers"), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_members_go_from_three_to_four_to_two_without_loss() {
    let broker = TestBroker::start_with(group_broker_config(), Default::default()).await;
    let b = broker.bootstrap();
    create_topic(&b, "coop", 6).await;
    let strategy = "cooperative-sticky";
    let mut members: Vec<Member> = (0..3).map(|_| Member::start(&b, "coop-readers", "coop", strategy)).collect();
    produce(&b, "coop", 0..3_000).await;
    let seen_all = |members: &[Member], stopped: &[Vec<(i32, i64, u64)>], upto: u64| {
        let mut seen: BTreeSet<u64> = members.iter().flat_map(Member::values).collect();
        seen.extend(stopped.iter().flatten().map(|(_, _, v)| *v));
        (0..upto).all(|v| seen.contains(&v))
    };
    let mut stopped = Vec::new();
    tokio::task::block_in_place(|| {
        wait_until("3 members to read 3000", Duration::from_secs(60), || seen_all(&members, &stopped, 3_000));
    });
    members.push(Member::start(&b, "coop-readers", "coop", strategy));
    produce(&b, "coop", 3_000..6_000).await;
    tokio::task::block_in_place(|| {
        wait_until("4 members to read 6000", Duration::from_secs(60), || seen_all(&members, &stopped, 6_000));
    });
    stopped.push(members.remove(0).stop());
    stopped.push(members.remove(0).stop());
    produce(&b, "coop", 6_000..9_000).await;
    tokio::task::block_in_place(|| {
        wait_until("2 members to read 9000", Duration::from_secs(60), || seen_all(&members, &stopped, 9_000));
    });
    let protocol =
        broker.running().broker().groups().describe("coop-readers").and_then(|g| g.protocol().map(String::from));
    assert_eq!(protocol.as_deref(), Some("cooperative-sticky"));
    for m in members {
        stopped.push(m.stop());
    }
    let total: usize = stopped.iter().map(Vec::len).sum();
    assert!(total < 9_000 + 9_000 / 4, "{total} deliveries for 9000 messages");
}
