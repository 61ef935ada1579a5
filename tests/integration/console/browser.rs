//! A headless Chromium for the console tests, driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: JSON messages ended by NUL on the browser's fds 3 and 4, which
//! a shell sets to our pipes), so no websocket crate is needed. One browser per test, with a
//! fresh profile and no background networking (this machine's network is closed). The tests
//! read the page as the browser rendered it: the DOM after the page's script ran.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::integration::support::target_dir;

/// The browser's binary: `AGORA_CHROMIUM`, else Debian's `chromium`.
fn binary() -> String {
    std::env::var("AGORA_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
    next: u64,
    /// The page's session.
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium with a 1280×800 page on `url`, loaded.
    pub async fn open(url: &str) -> Browser {
        Browser::start(url, true).await
    }

    /// [`Browser::open`] with JavaScript off: the page as the server rendered it.
    pub async fn open_without_script(url: &str) -> Browser {
        Browser::start(url, false).await
    }

    async fn start(url: &str, script: bool) -> Browser {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {}", binary())])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the console's browser tests need Chromium: apt-get install chromium (or set \
             AGORA_CHROMIUM to a Chromium or Chrome binary)"
        );
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut child = Command::new("bash")
            // fd 3 reads what we write, fd 4 writes what we read; Chromium's own output is noise.
            .args([
                "-c",
                "exec 3<&0 4>&1 0</dev/null 1>/dev/null; exec \"$0\" \"$@\"",
            ])
            .arg(binary())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-dev-shm-usage",
                "--hide-scrollbars",
                "--window-size=1280,800",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let to = child.stdin.take().expect("piped stdin");
        let from = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut browser = Browser {
            child,
            to,
            from,
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser
            .send(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attach = json!({"targetId": target["targetId"], "flatten": true});
        let attached = browser.send(None, "Target.attachToTarget", attach).await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned();
        let metrics =
            json!({"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": false});
        browser
            .call("Emulation.setDeviceMetricsOverride", metrics)
            .await;
        if !script {
            let off = json!({"value": true});
            browser
                .call("Emulation.setScriptExecutionDisabled", off)
                .await;
        }
        browser.call("Page.enable", json!({})).await;
        browser.call("Page.navigate", json!({"url": url})).await;
        browser
            .wait_for("the page loaded", "document.readyState === 'complete'")
            .await;
        browser
    }

    /// Sends one DevTools command (to the page's session unless `session` is `None` and none
    /// is attached yet) and waits for its result; events on the way are skipped.
    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.to.write_all(&bytes).await.expect("write to chromium");
        self.to.flush().await.expect("flush to chromium");
        let read = async {
            loop {
                let mut frame = Vec::new();
                let n = self.from.read_until(0, &mut frame).await.expect("read");
                assert!(n > 0, "chromium closed its pipe during {method}");
                frame.pop();
                let answer: Value = serde_json::from_slice(&frame).expect("a DevTools message");
                if answer["id"] == id {
                    assert!(answer["error"].is_null(), "{method}: {}", answer["error"]);
                    return answer["result"].clone();
                }
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| panic!("chromium did not answer {method} in {CALL_TIMEOUT:?}"))
    }

    /// A command to the page.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(Some(&session), method, params).await
    }

    /// The value of a JavaScript expression in the page.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params).await;
        result["result"]["value"].clone()
    }

    /// The text of the element `data-testid="{id}"` as rendered now (`None` if absent).
    pub async fn text(&mut self, id: &str) -> Option<String> {
        let expression = format!(
            "(e => e ? e.textContent.trim() : null)(document.querySelector('[data-testid=\"{id}\"]'))"
        );
        self.eval(&expression).await.as_str().map(str::to_owned)
    }

    /// Polls `expression` every 100 ms until it is true (at most 60 s); returns how long it
    /// took. Fails saying `what` did not happen.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> Duration {
        let started = Instant::now();
        while self.eval(expression).await != json!(true) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the page did not show {what} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        started.elapsed()
    }

    /// How old the state on screen is now, and the oldest it has been, in ms (the page's
    /// script keeps both).
    pub async fn staleness(&mut self) -> (u64, u64) {
        let age = self.eval("Number(document.body.dataset.ageMs)").await;
        let max = self.eval("Number(document.body.dataset.maxAgeMs)").await;
        (age.as_u64().unwrap_or(0), max.as_u64().unwrap_or(0))
    }

    /// Saves a screenshot of the whole page, 1280 px wide, as `target/console/{name}.png`;
    /// returns its path.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let height = self.eval("document.documentElement.scrollHeight").await;
        let clip = json!({"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1});
        let params = json!({"format": "png", "clip": clip, "captureBeyondViewport": true});
        let shot = self.call("Page.captureScreenshot", params).await;
        let data = shot["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64");
        let dir = target_dir().join("console");
        std::fs::create_dir_all(&dir).expect("target/console");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
