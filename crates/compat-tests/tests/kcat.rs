//! The broker against kcat (librdkafka 2.0.2 from Debian): list metadata, produce lines,
//! consume them back from the beginning.

use std::io::Write;
use std::process::{Command, Stdio};

use herald_compat_tests::{TestBroker, kcat};

fn run(kcat: &std::path::Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(kcat)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat runs");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    let output = child.wait_with_output().expect("kcat finishes");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kcat {args:?} failed: {stderr}");
    String::from_utf8(output.stdout).expect("utf8 output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_lists_produces_and_consumes() {
    let Some(kcat) = kcat() else { return };
    let broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    let b = bootstrap.as_str();
    // kcat is blocking; keep it off the runtime's threads.
    let listed = tokio::task::block_in_place(|| run(&kcat, &["-b", b, "-L"], None));
    assert!(listed.contains("1 brokers:"), "{listed}");
    assert!(listed.contains(&format!("broker 0 at {b}")), "{listed}");

    let lines: Vec<String> = (0..500).map(|i| format!("line-{i}")).collect();
    let input = lines.join("\n") + "\n";
    tokio::task::block_in_place(|| run(&kcat, &["-b", b, "-P", "-t", "kcat-lines", "-p", "0"], Some(&input)));
    let consumed = tokio::task::block_in_place(|| {
        run(
            &kcat,
            &["-b", b, "-C", "-t", "kcat-lines", "-p", "0", "-o", "beginning", "-e", "-q", "-f", "%o %s\n"],
            None,
        )
    });
    let expected: Vec<String> = lines.iter().enumerate().map(|(i, l)| format!("{i} {l}")).collect();
    assert_eq!(consumed.lines().collect::<Vec<_>>(), expected);

    let topic = tokio::task::block_in_place(|| run(&kcat, &["-b", b, "-L", "-t", "kcat-lines"], None));
    assert!(topic.contains("topic \"kcat-lines\" with 3 partitions"), "auto-created with 3 partitions: {topic}");
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Ping {
    n: u32,
}
herald::event!(Ping, type = "ping.sent", version = 1, key = none);

/// Kafka header names are bytes on the wire; rdkafka's header accessors panic on names that
/// are not UTF-8. Such a record must neither stop the herald consumer nor lose its headers'
/// values on the way to the dead-letter topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_neither_stops_the_consumer_nor_is_dropped() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use herald::Envelope;
    use herald::consumer::{Consumer, ConsumerConfig, HandlerError};

    let Some(kcat) = kcat() else { return };
    let broker = TestBroker::start().await;
    let b = broker.bootstrap();
    for n in [1u32, 2] {
        let payload = Envelope::new("kcat", Ping { n }).to_json(1 << 20).expect("json");
        let mut child = Command::new(&kcat)
            .args(["-b", b.as_str(), "-P", "-t", "ping.sent", "-p", "0", "-H", "event-type=ping.sent", "-H"])
            .arg(OsStr::from_bytes(b"\xff\xfename=odd"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("kcat runs");
        child.stdin.take().expect("stdin").write_all(&payload).expect("write");
        let status = tokio::task::block_in_place(|| child.wait()).expect("kcat finishes");
        assert!(status.success(), "kcat produced");
    }

    // n = 1 is handled; n = 2 fails for good and goes to the dead-letter topic.
    let handled = Arc::new(AtomicU32::new(0));
    let h = Arc::clone(&handled);
    let consumer =
        Consumer::new(ConsumerConfig::new(&b, "odd-headers", &["ping.sent"])).on(move |event: Envelope<Ping>, ctx| {
            let h = Arc::clone(&h);
            async move {
                let names: Vec<String> = ctx.record().headers().map(|(name, _)| name.into_owned()).collect();
                assert_eq!(names, ["event-type", "\u{fffd}\u{fffd}name"], "names read lossily, in order");
                if event.data.n == 2 {
                    return Err(HandlerError::Permanent("two".into()));
                }
                h.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
        });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(consumer.run(async move {
        let _ = stopped.await;
    }));
    let dead_letters = tokio::task::block_in_place(|| {
        run_until_output(
            &kcat,
            &["-b", &b, "-C", "-t", "ping.sent.dlq", "-o", "beginning", "-c", "1", "-q", "-f", "%h\n"],
        )
    });
    assert_eq!(handled.load(Ordering::Relaxed), 1, "the first record was handled");
    assert!(dead_letters.contains("dlq-error-class=permanent"), "{dead_letters}");
    assert!(dead_letters.contains("\u{fffd}\u{fffd}name=odd"), "the odd header kept its value: {dead_letters}");
    let _ = stop.send(());
    run.await.expect("the consumer did not panic").expect("the consumer stopped cleanly");
}

/// Runs kcat until it exits by itself with success (e.g. `-c 1` once the topic exists),
/// retrying for up to 60 s.
fn run_until_output(kcat: &std::path::Path, args: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let output = Command::new(kcat).args(args).output().expect("kcat runs");
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        assert!(std::time::Instant::now() < deadline, "kcat {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
