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
