//! `TestApp`: starts agora on a free port with its own data directory and talks to it over HTTP.
//! In-process for most tests; as a child process (`TestApp::spawn_process`) where a test must
//! kill it. Every integration test reaches agora through it; the helpers it shares with them
//! (polling, request bodies, child processes, local servers) live in the modules below, each
//! written once.

mod bodies;
mod python;
mod services;

use std::collections::HashMap;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora::app::Node;
use agora::broker::EmbeddedBroker;
use agora::config::ServeConfig;
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::Value;

pub use bodies::{notification_counts, order_body, order_line, product_body, sold};
pub use python::{agora_python, target_dir};
pub use services::{agora_serve, expect_line, free_addr, serve_locally, start_script};

/// How long a list may stay partial (a partition electing its leader) before a test fails.
const WHOLE_WITHIN: Duration = Duration::from_secs(30);

pub struct TestApp {
    pub base: String,
    /// The node's Kafka bootstrap servers (its embedded broker unless configured otherwise).
    pub kafka_brokers: String,
    pub client: Client,
    /// Every line a child process printed (logs included); empty in process.
    pub log: Arc<Mutex<Vec<String>>>,
    runner: Runner,
    _dir: Option<tempfile::TempDir>,
}

enum Runner {
    InProcess(Option<Box<Node>>),
    Process(Child),
}

impl TestApp {
    /// A node in this process, with its own data directory and embedded broker.
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    /// [`TestApp::spawn`] with a changed configuration.
    pub async fn spawn_with(configure: impl FnOnce(&mut ServeConfig)) -> TestApp {
        TestApp::try_spawn_with(configure)
            .await
            .expect("agora starts")
    }

    /// [`TestApp::spawn_with`] for a configuration that may not start: its error, if so.
    pub async fn try_spawn_with(
        configure: impl FnOnce(&mut ServeConfig),
    ) -> anyhow::Result<TestApp> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = ServeConfig::for_tests(dir.path().to_path_buf());
        configure(&mut config);
        // Actor names are process-wide: every in-process node needs its own.
        config.node = format!("test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let app = Node::build(config).await?;
        Ok(TestApp {
            base: format!("http://{}", app.http_addr),
            kafka_brokers: app.kafka_brokers.clone(),
            client: client(),
            log: Arc::default(),
            runner: Runner::InProcess(Some(Box::new(app))),
            _dir: Some(dir),
        })
    }

    /// An `agora serve` child process on `data` (see [`agora_serve`]), ready once `/health`
    /// answers. Its gateway and Kafka addresses come from its start-up lines.
    pub async fn spawn_process(data: &Path, extra_env: &[(&str, &str)]) -> TestApp {
        let app = TestApp::spawn_process_printed(data, extra_env);
        app.wait_until(|| async { app.get("/health").await.status().is_success() })
            .await;
        app
    }

    /// [`TestApp::spawn_process`] without waiting for `/health`: it returns once the process
    /// printed its addresses (for a process that may stop soon after, as a refused one does).
    pub fn spawn_process_printed(data: &Path, extra_env: &[(&str, &str)]) -> TestApp {
        let mut child = agora_serve(data)
            .envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("agora binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut gateway = String::new();
            // Read to the end whatever comes, as bytes: a reader that stopped at a line that
            // is not UTF-8 would leave the pipe full and the node blocked on its next log line.
            for line in BufReader::new(stdout).split(b'\n').map_while(Result::ok) {
                let line = String::from_utf8_lossy(&line).into_owned();
                lines.lock().expect("log lock").push(line.clone());
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("gateway"), Some(url)) => {
                        url.trim_end_matches("/api").clone_into(&mut gateway)
                    }
                    (Some("kafka"), Some(brokers)) => {
                        let _ = tx.send((std::mem::take(&mut gateway), brokers.to_owned()));
                    }
                    _ => {}
                }
            }
        });
        let (base, kafka_brokers) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("agora prints its gateway and Kafka addresses");
        TestApp {
            base,
            kafka_brokers,
            client: client(),
            log,
            runner: Runner::Process(child),
            _dir: None,
        }
    }

    /// Sends SIGKILL to the process: no shutdown, no flush.
    pub fn kill9(mut self) {
        if let Runner::Process(child) = &mut self.runner {
            child.kill().expect("kill -9");
            child.wait().expect("reaped");
        }
    }

    /// Sends a signal (`"STOP"`, `"CONT"`) to the process.
    pub fn signal(&self, signal: &str) {
        let Runner::Process(child) = &self.runner else {
            panic!("only a child process takes signals");
        };
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -{signal}");
    }

    /// Every thread's stack of the running process, by gdb (for a failing test to show where
    /// a node that stopped answering is stuck); `None` if gdb cannot tell.
    pub fn stacks(&self) -> Option<String> {
        let Runner::Process(child) = &self.runner else {
            return None;
        };
        let pid = child.id().to_string();
        let gdb = ["-p", &pid, "-batch", "-ex", "thread apply all bt 30"];
        let out = Command::new("timeout")
            .arg("60")
            .arg("gdb")
            .args(gdb)
            .output();
        out.ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The process's exit status once it exits by itself, within `within`; `None` if it is
    /// still running then.
    pub async fn exit_within(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let Runner::Process(child) = &mut self.runner else {
            panic!("only a child process exits");
        };
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("wait for the child") {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// The last `n` lines the process printed.
    pub fn last_lines(&self, n: usize) -> Vec<String> {
        let log = self.log.lock().expect("log lock");
        log[log.len().saturating_sub(n)..].to_vec()
    }

    /// Whether the process printed a line containing `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .any(|l| l.contains(text))
    }

    pub async fn shutdown(mut self) {
        if let Runner::InProcess(app) = &mut self.runner {
            if let Some(app) = app.take() {
                app.shutdown().await.expect("clean shutdown");
            }
        }
    }

    /// The embedded Kafka broker of an in-process node, to take it down and up.
    pub fn embedded_broker(&self) -> Arc<EmbeddedBroker> {
        match &self.runner {
            Runner::InProcess(Some(app)) => app.embedded_broker().expect("an embedded broker"),
            _ => panic!("only an in-process node exposes its embedded broker"),
        }
    }

    /// A request to `path` on this node, for a test to add headers or a body to.
    pub fn http(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.http(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send().await.expect("request is answered")
    }

    /// The body of `GET path` with an `Accept` header.
    pub async fn get_accept(&self, path: &str, accept: &str) -> String {
        let request = self.http(Method::GET, path).header("accept", accept);
        let response = request.send().await.expect("answered");
        response.text().await.expect("a body")
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(body)).await
    }

    pub async fn json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert!(
            response.status().is_success(),
            "GET {path}: {}",
            response.status()
        );
        response.json().await.expect("JSON body")
    }

    /// Creates a product with `quantity` in stock; returns its JSON.
    pub async fn product(&self, sku: &str, price: f64, quantity: u32) -> Value {
        let response = self
            .post("/api/product", product_body(sku, price, quantity))
            .await;
        assert_eq!(response.status(), 201, "create {sku}");
        response.json().await.expect("JSON body")
    }

    pub async fn order(&self, lines: &[(&str, u32)]) -> Response {
        let lines = lines.iter().map(|(sku, qty)| order_line(sku, qty));
        self.post("/api/order", order_body(lines.collect::<Vec<_>>()))
            .await
    }

    pub async fn stock(&self, sku: &str) -> u64 {
        let levels = self.json(&format!("/api/inventory?skuCode={sku}")).await;
        levels[0]["quantity"].as_u64().expect("quantity")
    }

    /// Every order, following the `X-Next-Cursor` pages, in full (see [`TestApp::full_page`]).
    pub async fn all_orders(&self) -> Vec<Value> {
        let whole = || async { self.try_all_orders().await };
        retry(Duration::from_millis(100), WHOLE_WITHIN, whole).await
    }

    /// The page of a list at `path` and its `X-Next-Cursor`; a page that says it lacks a part
    /// (`X-Partial-Results`, as while a partition elects its leader) is no answer.
    async fn full_page(&self, path: &str) -> Result<(Vec<Value>, Option<String>), String> {
        let response = self.get(path).await;
        assert!(response.status().is_success(), "GET {path}");
        if let Some(missing) = response.headers().get("x-partial-results") {
            return Err(format!("GET {path}: partial, {missing:?} missing"));
        }
        let next = (response.headers().get("x-next-cursor"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let page: Vec<Value> = response.json().await.expect("JSON array");
        Ok((page, next))
    }

    async fn try_all_orders(&self) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        let mut path = "/api/order?limit=1000".to_owned();
        loop {
            let (page, next) = self.full_page(&path).await?;
            all.extend(page);
            match next {
                Some(cursor) => path = format!("/api/order?limit=1000&after={cursor}"),
                None => return Ok(all),
            }
        }
    }

    /// The status of one `/health` component (`"UP"`, `"DEGRADED"`, `"DOWN"`) and its detail.
    pub async fn health_of(&self, component: &str) -> (String, String) {
        let health: Value = self.get("/health").await.json().await.expect("JSON");
        let part = &health["components"][component];
        (
            part["status"].as_str().unwrap_or("").to_owned(),
            part["detail"].as_str().unwrap_or("").to_owned(),
        )
    }

    /// The value of one series in `/metrics`, e.g. `agora_outbox_depth` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self
            .get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().expect("a number"))
    }

    /// Every notification received so far, oldest first, in full (see [`TestApp::full_page`]).
    pub async fn notifications(&self) -> Vec<Value> {
        let whole = || async { self.try_notifications().await };
        retry(Duration::from_millis(100), WHOLE_WITHIN, whole).await
    }

    async fn try_notifications(&self) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let (page, _) = self
                .full_page(&format!("/api/notifications?limit=1000{after}"))
                .await?;
            let Some(last) = page.last() else {
                return Ok(all);
            };
            after = format!("&after={}", last["seq"]);
            all.extend(page);
        }
    }

    /// Waits until at least `n` notifications have arrived; returns every one.
    pub async fn wait_for_notifications(&self, n: usize) -> Vec<Value> {
        self.wait_until(|| async { self.notifications().await.len() >= n })
            .await;
        self.notifications().await
    }

    /// Waits until the `OrderPlaced` of every order in `numbers` has arrived; returns the
    /// [`notification_counts`] of every notification then.
    pub async fn wait_for_placed(&self, numbers: &[&str]) -> HashMap<(String, String), usize> {
        self.wait_until(|| async {
            let counts = notification_counts(&self.notifications().await);
            numbers
                .iter()
                .all(|n| counts.contains_key(&(n.to_string(), "OrderPlaced".to_owned())))
        })
        .await;
        notification_counts(&self.notifications().await)
    }

    /// Polls `check` every 50 ms until it holds (at most 60 s).
    pub async fn wait_until<F, Fut>(&self, check: F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = bool>,
    {
        let check = &check;
        let attempt = || async move {
            check()
                .await
                .then_some(())
                .ok_or_else(|| "condition not met within 60 s".to_owned())
        };
        retry(Duration::from_millis(50), Duration::from_secs(60), attempt).await
    }
}

/// A child process does not outlive its test, even one that fails.
impl Drop for TestApp {
    fn drop(&mut self) {
        if let Runner::Process(child) = &mut self.runner {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `attempt` every `every` until it succeeds; past `within`, the message of its last
/// failure fails the test. The one polling loop of the integration tests.
pub async fn retry<T, F, Fut>(every: Duration, within: Duration, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        tokio::time::sleep(every).await;
    }
}

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}
