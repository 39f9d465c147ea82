//! Old clients against the broker: kafka-python pinned to broker versions 0.8.1 to 1.0
//! (`legacy_clients.py`), so it sends the request versions Kafka 4 removed and Kafka 3.9
//! still accepts (Produce v0-2 with message sets plain, gzip and snappy, Fetch v0-3,
//! ListOffsets v0, OffsetCommit v0-1, OffsetFetch v0, CreateTopics v0-1, DeleteTopics v0,
//! DescribeConfigs v0, DescribeLogDirs v0, OffsetForLeaderEpoch v0-1) and checks every
//! answer. The Python with kafka-python comes from `HERALD_PYTHON` (`.ci/run` makes a
//! virtualenv); without it the test says so and passes, unless
//! `HERALD_REQUIRE_PYTHON_CLIENT=1`.

use herald_compat_tests::TestBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_speaking_kafka_0_8_to_1_0_produces_consumes_commits_and_administers() {
    let python = std::env::var_os("HERALD_PYTHON").map(std::path::PathBuf::from).filter(|p| p.exists());
    let Some(python) = python else {
        assert!(
            std::env::var("HERALD_REQUIRE_PYTHON_CLIENT").is_err(),
            "HERALD_REQUIRE_PYTHON_CLIENT is set but HERALD_PYTHON names no Python"
        );
        eprintln!("skipped: set HERALD_PYTHON to a Python with kafka-python and python-snappy");
        return;
    };
    herald_compat_tests::init_logging();
    let broker = TestBroker::start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/legacy_clients.py");
    let bootstrap = broker.bootstrap();
    let run = move || std::process::Command::new(python).args([script, &bootstrap]).output();
    let out = tokio::task::spawn_blocking(run).await.expect("joined").expect("python runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("all legacy clients passed"), "{stdout}\n{stderr}");
    println!("{stdout}");
}
