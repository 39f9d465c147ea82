//! `herald serve` as a user runs it: the real binary on 127.0.0.1, a real client, and a
//! SIGTERM that must drain, flush and mark every log cleanly closed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::serve;

use rdkafka::producer::{FutureProducer, FutureRecord};

#[test]
fn sigterm_drains_flushes_and_marks_logs_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let common::Served { process: mut child, addr, lines, .. } = serve(dir.path(), &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let producer: FutureProducer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .set("enable.idempotence", "true")
            .create()
            .expect("producer");
        for i in 0..100 {
            let value = format!("event-{i}");
            producer
                .send(FutureRecord::<(), _>::to("shutdown-test").payload(&value), Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .expect("delivered");
        }
    });
    let status = child.terminate();
    assert!(status.success(), "herald serve exited with {status}");
    let log = common::rest(&lines);
    assert!(log.iter().any(|l| l.contains("herald broker stopped")), "{log:#?}");

    // The next start finds every log cleanly closed and the topic intact.
    let common::Served { process: mut child, startup: mut log, lines, .. } = serve(dir.path(), &[]);
    let status = child.terminate();
    assert!(status.success());
    log.extend(common::rest(&lines));
    let opened: Vec<&String> = log.iter().filter(|l| l.contains("opened log")).collect();
    assert_eq!(opened.len(), 5, "three auto-created partitions, the group offsets log, the schema log: {log:#?}");
    assert!(opened.iter().all(|l| l.contains("clean=true")), "{opened:#?}");
    assert!(log.iter().any(|l| l.contains("topics=1")), "{log:#?}");
}

#[test]
fn a_bad_setting_is_one_clear_line_and_a_failure_exit() {
    let output =
        Command::new(env!("CARGO_BIN_EXE_herald")).args(["serve", "--durability", "sometimes"]).output().expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("durability \"sometimes\""), "{stderr}");
}
