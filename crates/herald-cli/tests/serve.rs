//! `herald serve` as a user runs it: the real binary on 127.0.0.1, a real client, and a
//! SIGTERM that must drain, flush and mark every log cleanly closed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

/// Starts `herald serve` on an ephemeral port; returns the child, its address, the log
/// lines up to "ready", and a channel of the later ones.
fn serve(data_dir: &std::path::Path) -> (Serving, String, Vec<String>, mpsc::Receiver<String>) {
    let child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log", "info"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("herald serve starts");
    let mut child = Serving(Some(child));
    let stderr = child.0.as_mut().and_then(|c| c.stderr.take()).expect("stderr");
    let (lines, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut seen = Vec::new();
    loop {
        let line =
            receiver.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no ready line in {seen:?}"));
        let line = strip_ansi(&line);
        let addr = line.split("listen=").nth(1).map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
        seen.push(line);
        if let Some(addr) = addr {
            return (child, addr, seen, receiver);
        }
    }
}

/// The server process; killed and reaped if a test fails before terminating it.
struct Serving(Option<Child>);

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn terminate(serving: &mut Serving) -> std::process::ExitStatus {
    let mut child = serving.0.take().expect("still running");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    child.wait().expect("herald exits")
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn sigterm_drains_flushes_and_marks_logs_clean() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, addr, _, lines) = serve(dir.path());
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
    let status = terminate(&mut child);
    assert!(status.success(), "herald serve exited with {status}");
    let log: Vec<String> = lines.try_iter().map(|l| strip_ansi(&l)).collect();
    assert!(log.iter().any(|l| l.contains("herald broker stopped")), "{log:#?}");

    // The next start finds every log cleanly closed and the topic intact.
    let (mut child, _addr, mut log, lines) = serve(dir.path());
    let status = terminate(&mut child);
    assert!(status.success());
    log.extend(lines.try_iter().map(|l| strip_ansi(&l)));
    let opened: Vec<&String> = log.iter().filter(|l| l.contains("opened log")).collect();
    assert_eq!(opened.len(), 4, "three auto-created partitions and the group offsets log: {log:#?}");
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
