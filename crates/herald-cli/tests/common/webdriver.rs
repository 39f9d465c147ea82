//! Headless Chromium driven over WebDriver (chromedriver), blocking, for the tests that
//! use a real browser: open pages, run scripts, fill and click, read the browser's log
//! (console errors and failed requests) and take screenshots.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

/// The W3C name of an element reference in replies.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `name` on the PATH; `None` (the test skips) unless `require` is set, when it panics.
pub fn tool(name: &str, require: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var_os(require).is_none(), "{require} is set but {name} is not installed");
        eprintln!("skipped: {name} is not installed");
    }
    found
}

/// A WebDriver session of headless Chromium.
pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with its log kept; `extra`
    /// adds Chromium flags (`--force-dark-mode`).
    pub fn start(chromedriver: &Path, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let profile = tempfile::tempdir().expect("profile");
        let mut browser = Self { driver, base: format!("http://127.0.0.1:{port}"), agent, _profile: profile };
        let mut args = vec![
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--window-size=1280,900",
        ];
        let profile = format!("--user-data-dir={}", browser._profile.path().display());
        args.push(&profile);
        args.extend(extra);
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args }
        }}});
        let session = browser.call("POST", "/session", Some(&capabilities));
        let id = session["sessionId"].as_str().expect("session id").to_string();
        browser.base = format!("{}/session/{id}", browser.base);
        // Finding an element waits up to 10 s for it: after a click that loads a page, a
        // find of something only the new page has waits for that page.
        browser.call("POST", "/timeouts", Some(&json!({ "implicit": 10_000 })));
        browser
    }

    /// A WebDriver command; its `value`, or a panic naming the error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.try_call(method, path, body).unwrap_or_else(|error| panic!("{error}"))
    }

    /// A WebDriver command; its `value`, or the error the driver answered.
    fn try_call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let reply = match body {
            Some(body) => self.agent.post(&url).header("content-type", "application/json").send(body.to_string()),
            None if method == "DELETE" => self.agent.delete(&url).call(),
            None => self.agent.get(&url).call(),
        };
        let mut reply = reply.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = reply.status().as_u16();
        let text = reply.body_mut().read_to_string().unwrap_or_default();
        if status != 200 {
            return Err(format!("{method} {path}: {status} {text}"));
        }
        Ok(serde_json::from_str::<Value>(&text).map(|v| v["value"].clone()).unwrap_or(Value::Null))
    }

    /// Navigates to `url` and waits for the page to load.
    pub fn open(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its result.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        self.call("POST", "/execute/sync", Some(&json!({ "script": script, "args": args })))
    }

    /// The first element `css` selects.
    pub fn find(&self, css: &str) -> String {
        let found = self.call("POST", "/element", Some(&json!({ "using": "css selector", "value": css })));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}")).to_string()
    }

    /// Types `text` into the element `css` selects (after clearing it).
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/clear"), Some(&json!({})));
        self.call("POST", &format!("/element/{element}/value"), Some(&json!({ "text": text })));
    }

    /// Clicks the element `css` selects (a submit button waits for the next page).
    pub fn click(&self, css: &str) {
        let element = self.find(css);
        self.call("POST", &format!("/element/{element}/click"), Some(&json!({})));
    }

    /// Presses `keys` (WebDriver key codes, e.g. `\u{E004}` for Tab) one after another.
    pub fn keys(&self, keys: &[&str]) {
        let actions: Vec<Value> = keys
            .iter()
            .flat_map(|k| [json!({ "type": "keyDown", "value": k }), json!({ "type": "keyUp", "value": k })])
            .collect();
        let body = json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": actions }] });
        self.call("POST", "/actions", Some(&body));
    }

    /// Accepts the open `confirm` dialog.
    pub fn accept_alert(&self) {
        self.call("POST", "/alert/accept", Some(&json!({})));
    }

    /// The page's URL.
    pub fn url(&self) -> String {
        self.call("GET", "/url", None).as_str().unwrap_or_default().to_string()
    }

    /// The HTTP status of the page's own document.
    pub fn status(&self) -> i64 {
        let script = "const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus : 0;";
        self.eval(script, json!([])).as_i64().unwrap_or(0)
    }

    /// The browser's log since the last call: console messages and failed requests, as
    /// (level, message).
    pub fn log(&self) -> Vec<(String, String)> {
        let entries = self.call("POST", "/se/log", Some(&json!({ "type": "browser" })));
        entries
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|e| {
                        (e["level"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Saves a PNG of the window to `path`.
    pub fn screenshot(&self, path: &Path) {
        let data = self.call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD.decode(data.as_str().unwrap_or_default()).expect("png");
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Polls `script` until it returns true, or `limit` passes (then false); a script
    /// error (the next page not loaded yet) counts as not yet.
    pub fn wait_for(&self, script: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let body = json!({ "script": script, "args": [] });
        while Instant::now() < deadline {
            if self.try_call("POST", "/execute/sync", Some(&body)) == Ok(Value::Bool(true)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.base).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
