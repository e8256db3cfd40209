//! A real headless Chromium (Debian's `chromium`) driven over the DevTools protocol (CDP) from the
//! test: open a page, evaluate JavaScript in it, take a screenshot. The browser runs under
//! testkit's watchdog with a throwaway profile, `--no-sandbox` because CI runs as root.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use testkit::Watched;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Deadline of one CDP command (a navigation included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest CDP message read (a screenshot of the demo page is well below).
const MAX_MESSAGE: usize = 32 << 20;

/// One headless Chromium with one page open.
pub struct Browser {
    // The CDP socket and the next command id; a lock so that `&self` methods can poll in
    // `eventually` closures.
    cdp: Mutex<(WebSocketStream<MaybeTlsStream<TcpStream>>, u64)>,
    _proc: Watched,
    dir: PathBuf,
}

impl Browser {
    /// Starts Chromium on a blank page; `None` (a SKIPPED line) locally when it is not installed,
    /// a panic under CI.
    pub async fn start() -> Option<Browser> {
        let chromium = testkit::program("chromium", "chromium")?;
        let dir = std::env::temp_dir().join(testkit::unique_name("gopush-chromium"));
        std::fs::create_dir_all(&dir).expect("browser profile directory");
        let port = testkit::free_port();
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--window-size=1100,900",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--remote-debugging-port={port}"))
        .arg("about:blank");
        let proc = Watched::spawn(cmd, &dir.join("chromium.log"), Some(&dir)).expect("chromium starts");
        let devtools = format!("127.0.0.1:{port}");
        let url = testkit::eventually_some("chromium's DevTools to list a page", Duration::from_secs(60), || {
            let devtools = devtools.clone();
            async move {
                let resp = testkit::http::get(&devtools, "/json/list").await.ok()?;
                let pages: Value = serde_json::from_str(resp.body()).ok()?;
                let page = pages.as_array()?.iter().find(|t| t["type"] == "page")?;
                page["webSocketDebuggerUrl"].as_str().map(String::from)
            }
        })
        .await;
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (cdp, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), false)
            .await
            .unwrap_or_else(|e| panic!("cannot open CDP at {url}: {e}"));
        let browser = Browser { cdp: Mutex::new((cdp, 1)), _proc: proc, dir };
        browser.command("Page.enable", json!({})).await;
        Some(browser)
    }

    /// Sends one CDP command and returns its `result`, skipping the events that arrive meanwhile.
    pub async fn command(&self, method: &str, params: Value) -> Value {
        let mut guard = self.cdp.lock().await;
        let (cdp, next_id) = &mut *guard;
        let id = *next_id;
        *next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        let exchange = async {
            cdp.send(Message::text(msg)).await.expect("CDP send");
            loop {
                match cdp.next().await {
                    Some(Ok(Message::Text(t))) => {
                        let v: Value = serde_json::from_str(t.as_str()).expect("CDP sends JSON");
                        if v["id"] == json!(id) {
                            if let Some(e) = v.get("error") {
                                panic!("CDP {method} failed: {e}");
                            }
                            return v["result"].clone();
                        }
                    }
                    Some(Ok(_)) => {}
                    other => panic!("CDP connection ended during {method}: {other:?}"),
                }
            }
        };
        tokio::time::timeout(COMMAND_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("CDP {method} took over {COMMAND_TIMEOUT:?}"))
    }

    /// Opens `url` and waits until its document has loaded.
    pub async fn open(&self, url: &str) {
        self.command("Page.navigate", json!({"url": url})).await;
        self.wait_for(&format!("{url} to load"), Duration::from_secs(30), "document.readyState === 'complete'").await;
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value as JSON;
    /// a thrown exception panics with its text.
    pub async fn eval(&self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.command("Runtime.evaluate", params).await;
        if let Some(e) = result.get("exceptionDetails") {
            panic!("{expression} threw: {e}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy in the page.
    pub async fn wait_for(&self, what: &str, timeout: Duration, expression: &str) {
        let expression = format!("Boolean({expression})");
        super::eventually(what, timeout, || {
            let expression = expression.clone();
            async move { self.eval(&expression).await == json!(true) }
        })
        .await;
    }

    /// Saves a PNG screenshot of the page at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let result = self.command("Page.captureScreenshot", json!({"format": "png"})).await;
        let data = result["data"].as_str().expect("screenshot data");
        let png = base64_decode(data);
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot directory");
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    /// The browser's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chromium.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "----- chromium log, last lines -----\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Where a test keeps files for people to look at after the run (kept, unlike the scratch
/// directories): `$GOPUSH_TEST_ARTIFACTS`, else `target/tmp/artifacts`.
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("GOPUSH_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("artifacts"))
}

/// Standard base64 (CDP's encoding of binary data).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &c)| n | u32::from(value(c)) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
