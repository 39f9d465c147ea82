//! `herald serve` as a child process, shared by the tests that run the real binary.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part

pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `herald serve`: its address, the log lines up to "ready", and the later ones.
pub struct Served {
    pub process: Serving,
    pub addr: String,
    pub startup: Vec<String>,
    pub lines: mpsc::Receiver<String>,
}

/// Starts `herald serve` on an ephemeral port with `extra` flags (`--log info` unless
/// given) and waits for its ready line.
pub fn serve(data_dir: &std::path::Path, extra: &[&str]) -> Served {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.args(["serve", "--listen", "127.0.0.1:0"]).arg("--data-dir").arg(data_dir);
    if !extra.contains(&"--log") {
        command.args(["--log", "info"]);
    }
    if !extra.contains(&"--http-listen") {
        command.args(["--http-listen", "127.0.0.1:0"]);
    }
    if !extra.contains(&"--schema-registry-listen") {
        command.args(["--schema-registry-listen", "127.0.0.1:0"]);
    }
    let child = command.args(extra).env("NO_COLOR", "1").stderr(Stdio::piped()).spawn().expect("herald serve starts");
    let mut process = Serving(Some(child));
    let stderr = process.0.as_mut().and_then(|c| c.stderr.take()).expect("stderr");
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = sender.send(strip_ansi(&line));
        }
    });
    let mut startup = Vec::new();
    loop {
        let line =
            lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no ready line in {startup:?}"));
        let ready = line.contains("herald broker ready");
        let addr = line.split("listen=").nth(1).map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
        startup.push(line);
        if let (true, Some(addr)) = (ready, addr) {
            return Served { process, addr, startup, lines };
        }
    }
}

/// The log lines still to come from an exited server: read until its stderr closes (the
/// reader thread then drops its sender), so the last lines are never missed.
pub fn rest(lines: &mpsc::Receiver<String>) -> Vec<String> {
    let mut rest = Vec::new();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(10)) {
        rest.push(line);
    }
    rest
}

/// The server process; killed and reaped if a test fails before terminating it.
pub struct Serving(pub Option<Child>);

impl Serving {
    /// Sends SIGTERM.
    pub fn sigterm(&mut self) {
        let child = self.0.as_ref().expect("still running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        let child = self.0.as_mut().expect("still running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.0 = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then the exit status (waiting as long as it takes).
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.0.take().expect("still running").wait().expect("herald exits")
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn strip_ansi(line: &str) -> String {
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
