//! A storm of real clients against `herald serve`, each SIGKILLed at a random point, then
//! SIGTERM: the broker releases the dead clients' connections without being stopped, and
//! exits cleanly within its shutdown grace (plus 1 s) whatever the clients were doing
//! (parked JoinGroups mid-rebalance, long polls, idempotent produces, a transactional
//! producer it refuses).
//!
//! Each run is a seed: `HERALD_STORM_SEED=<n>` replays one, `HERALD_STORM_RUNS` sets how
//! many run (50 by default, four at a time). The clients are this test binary run again
//! with `HERALD_STORM_ROLE` set, so they are real librdkafka clients in their own process.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const GRACE: Duration = Duration::from_millis(3_000);
const TOPIC: &str = "storm";
const ROLES: &[&str] = &["producer", "idempotent", "consumer", "member", "produce-then-join", "transactional"];

#[test]
fn killed_clients_release_their_connections_and_sigterm_always_stops_the_broker() {
    if let Ok(role) = std::env::var("HERALD_STORM_ROLE") {
        let brokers = std::env::var("HERALD_STORM_BROKERS").expect("HERALD_STORM_BROKERS");
        let group = std::env::var("HERALD_STORM_GROUP").unwrap_or_default();
        run_client(&role, &brokers, &group);
    }
    let seeds: Vec<u64> = match std::env::var("HERALD_STORM_SEED") {
        Ok(seed) => vec![seed.parse().expect("HERALD_STORM_SEED is a number")],
        Err(_) => {
            let runs: u64 = std::env::var("HERALD_STORM_RUNS").map_or(50, |n| n.parse().expect("a number"));
            let base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            (0..runs).map(|i| base.wrapping_mul(1_000).wrapping_add(i)).collect()
        }
    };
    let queue = Mutex::new(seeds.clone());
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    // The guard must not live through the run, or the workers take turns.
                    let Some(seed) = queue.lock().expect("queue").pop() else { break };
                    if let Err(failure) = storm(seed) {
                        failures.lock().expect("failures").push(format!("seed {seed}: {failure}"));
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("failures");
    assert!(
        failures.is_empty(),
        "{} of {} runs failed (replay with HERALD_STORM_SEED):\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n\n")
    );
}

/// A client process of the storm, killed when its time comes.
struct Client {
    role: &'static str,
    process: Child,
    kill_at: Duration,
}

/// One run: clients, kills, then SIGTERM. `Err` says what went wrong, with the log.
fn storm(seed: u64) -> Result<(), String> {
    let mut rng = SplitMix(seed);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let delay = ["0", "300", "3000"][rng.below(3) as usize];
    let grace = GRACE.as_millis().to_string();
    let args = ["--shutdown-grace-ms", &grace, "--group-initial-rebalance-delay-ms", delay];
    let log_filter = "info,herald_broker::connections=debug";
    let mut served = common::serve(dir.path(), &[&args[..], &["--log", log_filter]].concat());
    let mut log = Log::default();
    let started = Instant::now();
    let mut clients: Vec<Client> = (0..3 + rng.below(5))
        .map(|_| {
            let role = ROLES[rng.below(ROLES.len() as u64) as usize];
            let group = format!("g{}", rng.below(2));
            let kill_at = Duration::from_millis(200 + rng.below(3_300));
            Client { role, process: client(role, &served.addr, &group), kill_at }
        })
        .collect();
    // Sometimes a group member lives on through the SIGTERM.
    let survivor = (rng.below(4) == 0).then(|| client("member", &served.addr, "g0"));
    let roles: Vec<(&str, Duration)> = clients.iter().map(|c| (c.role, c.kill_at)).collect();
    while !clients.is_empty() {
        log.drain(&served.lines);
        let now = started.elapsed();
        for client in clients.iter_mut().filter(|c| c.kill_at <= now) {
            let _ = client.process.kill();
            let _ = client.process.wait();
        }
        clients.retain(|c| c.kill_at > now);
        std::thread::sleep(Duration::from_millis(10));
    }
    let roles =
        format!("roles {roles:?}, rebalance delay {delay} ms, a member alive at SIGTERM: {}", survivor.is_some());
    if survivor.is_none() && rng.below(2) == 0 {
        // Without a shutdown, every connection of the dead clients is released.
        let deadline = Instant::now() + Duration::from_secs(2);
        while log.open != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            log.drain(&served.lines);
        }
        if log.open != 0 {
            return Err(format!(
                "{roles}: {:?} connections still open 2 s after the last kill\n{}",
                log.open,
                log.tail()
            ));
        }
    } else {
        std::thread::sleep(Duration::from_millis(rng.below(1_000)));
    }
    let terminated = Instant::now();
    served.process.sigterm();
    let status = served.process.wait_for_exit(GRACE + Duration::from_secs(1));
    let took = terminated.elapsed();
    if let Some(mut survivor) = survivor {
        let _ = survivor.kill();
        let _ = survivor.wait();
    }
    match status {
        Some(_) => log.lines.extend(common::rest(&served.lines)),
        None => log.drain(&served.lines),
    }
    match status {
        None => Err(format!("{roles}: still running {took:?} after SIGTERM\n{}", log.tail())),
        Some(status) if !status.success() => Err(format!("{roles}: exited with {status}\n{}", log.tail())),
        Some(_) if !log.lines.iter().any(|l| l.contains("herald broker stopped")) => {
            Err(format!("{roles}: no clean stop in the log\n{}", log.tail()))
        }
        Some(_) if log.lines.iter().any(|l| l.contains("without the clean mark")) => {
            Err(format!("{roles}: logs were not closed cleanly\n{}", log.tail()))
        }
        Some(_) => {
            eprintln!("seed {seed}: {roles}; stopped {took:?} after SIGTERM, run took {:?}", started.elapsed());
            Ok(())
        }
    }
}

/// The broker's log lines so far, and its open connection count: connections opened minus
/// closed, from its `herald_broker::connections` lines (each line's own `open=` count is
/// taken at a slightly different moment than it is written, so two closes at once can be
/// logged out of order; their sum cannot).
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    open: i64,
}

impl Log {
    fn drain(&mut self, lines: &std::sync::mpsc::Receiver<String>) {
        for line in lines.try_iter() {
            if line.contains("herald_broker::connections") {
                let change = if line.contains("connection opened") { 1 } else { -1 };
                self.open += change;
            }
            self.lines.push(line);
        }
    }

    fn tail(&self) -> String {
        self.lines.iter().rev().take(30).rev().cloned().collect::<Vec<_>>().join("\n")
    }
}

fn client(role: &str, brokers: &str, group: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["killed_clients_release", "--nocapture", "--test-threads=1"])
        .env("HERALD_STORM_ROLE", role)
        .env("HERALD_STORM_BROKERS", brokers)
        .env("HERALD_STORM_GROUP", group)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("client process starts")
}

/// A client's life: it works until it is killed.
fn run_client(role: &str, brokers: &str, group: &str) -> ! {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers).set("log_level", "0");
    match role {
        "producer" => produce_forever(&config.set("acks", "1").create().expect("producer")),
        "idempotent" => produce_forever(&config.set("enable.idempotence", "true").create().expect("producer")),
        "produce-then-join" => {
            let producer: BaseProducer = config.clone().set("enable.idempotence", "true").create().expect("producer");
            for i in 0..2_000u32 {
                send(&producer, i);
            }
            let _ = producer.flush(Duration::from_secs(10));
            consume_forever(config.set("group.id", group))
        }
        "consumer" => {
            let consumer: BaseConsumer = config.set("group.id", "unused").create().expect("consumer");
            let mut assignment = rdkafka::TopicPartitionList::new();
            for partition in 0..3 {
                let _ = assignment.add_partition_offset(TOPIC, partition, rdkafka::Offset::Beginning);
            }
            let _ = consumer.assign(&assignment);
            loop {
                let _ = consumer.poll(Duration::from_millis(100));
            }
        }
        "member" => consume_forever(config.set("group.id", group)),
        "transactional" => {
            // The broker refuses transactions; the client keeps asking.
            let producer: BaseProducer = config.set("transactional.id", "storm-tx").create().expect("producer");
            loop {
                let _ = producer.init_transactions(Duration::from_secs(1));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn produce_forever(producer: &BaseProducer) -> ! {
    for i in 0u32.. {
        send(producer, i);
        std::thread::sleep(Duration::from_millis(2));
    }
    unreachable!("u32 records at 2 ms each outlast any storm")
}

fn send(producer: &BaseProducer, i: u32) {
    let key = (i % 16).to_string();
    let value = i.to_string();
    while let Err((error, _)) = producer.send(BaseRecord::to(TOPIC).key(&key).payload(&value)) {
        if !matches!(error.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull)) {
            break;
        }
        producer.poll(Duration::from_millis(10));
    }
    producer.poll(Duration::ZERO);
}

fn consume_forever(config: &mut ClientConfig) -> ! {
    let consumer: BaseConsumer = config
        .set("auto.offset.reset", "earliest")
        .set("auto.commit.interval.ms", "200")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    loop {
        let _ = consumer.poll(Duration::from_millis(100));
    }
}

/// A small seeded generator (SplitMix64), so a run replays from its seed.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}
