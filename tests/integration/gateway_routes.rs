//! Gateway routes (`--routes`): path filters, a Method predicate, the listing at
//! `GET /gateway/routes` and upstream failures as JSON errors, against an echo service in this
//! process; and `lb://` balancing over two py-eureka-client instances, one of them killed with
//! SIGKILL (on `agora_python()`, as `eureka_interop`; without Python that test fails, saying what
//! is missing).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use warp::Filter;

use super::support::{
    agora_python, agora_serve, expect_line, free_addr, serve_locally, start_script, TestApp,
};

/// How long the echo service takes to answer `/slow`.
const SLOW: Duration = Duration::from_secs(2);

/// An HTTP service on a free port that answers every request with what it received, as JSON;
/// `/slow` only after [`SLOW`].
async fn echo_service() -> SocketAddr {
    let query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let echo = warp::method()
        .and(warp::path::full())
        .and(query)
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            |method: warp::http::Method,
             path: warp::filters::path::FullPath,
             query: String,
             headers: warp::http::HeaderMap,
             body: Bytes| async move {
                if path.as_str() == "/slow" {
                    tokio::time::sleep(SLOW).await;
                }
                let headers: serde_json::Map<String, Value> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                    .collect();
                warp::reply::json(&json!({
                    "method": method.as_str(),
                    "path": path.as_str(),
                    "query": query,
                    "headers": headers,
                    "body": String::from_utf8_lossy(&body),
                }))
            },
        );
    serve_locally(echo.boxed()).await
}

/// A node whose routes file is `routes` (written into `dir`), with leases of `lease_secs`.
async fn node_with_routes(dir: &Path, routes: &str, lease_secs: u64) -> TestApp {
    let file = dir.join("routes.toml");
    std::fs::write(&file, routes).expect("routes file written");
    TestApp::spawn_with(|config| {
        config.routes = Some(file);
        config.lease_secs = lease_secs;
    })
    .await
}

/// A node with routes to an echo service, a closed port and an app nobody registered.
async fn node_with_echo() -> (TestApp, SocketAddr, tempfile::TempDir) {
    let echo = echo_service().await;
    let closed = free_addr();
    let routes = format!(
        r#"
[defaults]
response-timeout-ms = 3000

[[routes]]
id = "strip"
uri = "http://{echo}"
predicates = ["Path=/strip/**"]
filters = ["StripPrefix=1"]

[[routes]]
id = "rewrite"
uri = "http://{echo}/"
predicates = ["Path=/legacy/{{version}}/**"]
filters = ["RewritePath=/legacy/(?<version>[^/]+)/(?<rest>.*), /${{version}}/api/${{rest}}"]

[[routes]]
id = "read-only"
uri = "http://{echo}"
predicates = ["Path=/catalog/**", "Method=GET"]

[[routes]]
id = "shadowed"
uri = "http://{echo}"
predicates = ["Path=/api/**,/health"]

[[routes]]
id = "slow"
uri = "http://{echo}"
predicates = ["Path=/slow"]
connect-timeout-ms = 200
response-timeout-ms = 300
retries = 0

[[routes]]
id = "nowhere"
uri = "http://{closed}"
predicates = ["Path=/nowhere/**"]
retries = 2

[[routes]]
id = "nobody"
uri = "lb://nobody-svc"
predicates = ["Path=/nobody/**"]
"#
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let app = node_with_routes(dir.path(), &routes, 90).await;
    (app, echo, dir)
}

async fn send(app: &TestApp, method: Method, path: &str) -> (u16, Value) {
    let response = app.request(method, path, None).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strip_prefix_and_rewrite_path_forward_the_request() {
    let (app, echo, _dir) = node_with_echo().await;
    let response = app
        .http(Method::POST, "/strip/orders/7?x=1&y=2")
        .header("x-custom", "kept")
        .header("proxy-authorization", "Basic c2VjcmV0")
        .header("x-request-id", "lb-test-1")
        .header("x-forwarded-for", "10.1.2.3")
        .body("hello upstream")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "lb-test-1");
    let seen: Value = response.json().await.expect("JSON");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["path"], "/orders/7");
    assert_eq!(seen["query"], "x=1&y=2");
    assert_eq!(seen["body"], "hello upstream");
    let headers = &seen["headers"];
    assert_eq!(headers["x-custom"], "kept");
    assert_eq!(headers["x-request-id"], "lb-test-1");
    assert_eq!(headers["x-forwarded-for"], "10.1.2.3, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["x-forwarded-host"],
        app.base.trim_start_matches("http://")
    );
    assert_eq!(headers["host"], echo.to_string());
    assert!(headers.get("proxy-authorization").is_none(), "hop-by-hop");

    let (status, seen) = send(&app, Method::GET, "/legacy/v1/items/9").await;
    assert_eq!(status, 200);
    assert_eq!(seen["path"], "/v1/api/items/9");

    // Built-in routes come first, even where a configured route's path matches.
    let (status, products) = send(&app, Method::GET, "/api/product").await;
    assert_eq!(status, 200);
    assert!(products.is_array(), "{products}");
    let (_, health) = send(&app, Method::GET, "/health").await;
    assert!(health["components"].is_object(), "{health}");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_predicate_mismatch_is_a_json_405() {
    let (app, _echo, _dir) = node_with_echo().await;
    let (status, seen) = send(&app, Method::GET, "/catalog/shoes").await;
    assert_eq!(status, 200);
    assert_eq!(seen["path"], "/catalog/shoes");
    let refused = app.request(Method::DELETE, "/catalog/shoes", None).await;
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "GET");
    let error: Value = refused.json().await.expect("JSON body");
    assert_eq!(error["error"], "method_not_allowed");
    assert!(error["requestId"].is_string());
    let (status, error) = send(&app, Method::GET, "/no/route/here").await;
    assert_eq!(status, 404);
    assert_eq!(error["error"], "not_found");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_routes_are_listed_with_their_instances() {
    let (app, echo, _dir) = node_with_echo().await;
    let listed = app.json("/gateway/routes").await;
    let ids: Vec<&str> = listed
        .as_array()
        .expect("an array")
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            "strip",
            "rewrite",
            "read-only",
            "shadowed",
            "slow",
            "nowhere",
            "nobody"
        ]
    );
    assert_eq!(
        listed[0],
        json!({
            "id": "strip",
            "uri": format!("http://{echo}"),
            "predicates": ["Path=/strip/**"],
            "filters": ["StripPrefix=1"],
            "connectTimeoutMs": 1000,
            "responseTimeoutMs": 3000,
            "retries": 1,
            "instances": [echo.to_string()],
        })
    );
    assert_eq!(
        listed[2]["predicates"],
        json!(["Path=/catalog/**", "Method=GET"])
    );
    assert_eq!(listed[4]["responseTimeoutMs"], 300);
    assert_eq!(listed[6]["uri"], "lb://nobody-svc");
    assert_eq!(listed[6]["instances"], json!([]));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_json_errors() {
    let (app, _echo, _dir) = node_with_echo().await;
    let response = app.get("/nobody/x").await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let error: Value = response.json().await.expect("JSON");
    assert_eq!(error["error"], "unavailable");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("NOBODY-SVC"),
        "{error}"
    );

    for method in [Method::GET, Method::POST] {
        let (status, error) = send(&app, method, "/nowhere/x").await;
        assert_eq!(status, 502, "{error}");
        assert_eq!(error["error"], "bad_gateway");
    }
    let (_, error) = send(&app, Method::GET, "/nowhere/x").await;
    assert!(
        error["message"]
            .as_str()
            .unwrap_or("")
            .contains("3 attempt"),
        "{error}"
    );

    let started = Instant::now();
    let (status, error) = send(&app, Method::POST, "/slow").await;
    assert_eq!(status, 504, "{error}");
    assert_eq!(error["error"], "upstream_timeout");
    assert!(started.elapsed() < SLOW, "answered before the upstream did");
    app.shutdown().await;
}

#[tokio::test]
async fn a_bad_route_file_stops_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("routes.toml");
    std::fs::write(
        &file,
        "[[routes]]\nid = \"r\"\nuri = \"lb://x\"\npredicates = [\"Host=example.org\"]\n",
    )
    .expect("written");
    let output = tokio::process::Command::from(agora_serve(&dir.path().join("data")))
        .arg("--routes")
        .arg(&file)
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("agora runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad route file") && stderr.contains("unknown predicate \"Host\""),
        "{stderr}"
    );
}

/// One instance of `tests/interop/lb_service.py`.
struct Instance {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    id: String,
    authority: String,
}

impl Instance {
    async fn start(python: &Path, app: &TestApp) -> Instance {
        let (child, mut lines) = start_script(python, "lb_service.py", app, &["lb-echo"]);
        let registered = expect_line(&mut lines, "registered ").await;
        let (id, port) = registered.split_once(' ').expect("id and port");
        Instance {
            child,
            lines,
            id: id.to_owned(),
            authority: format!("127.0.0.1:{port}"),
        }
    }
}

/// The instance that answered each of `n` requests (`None` for a failed one).
async fn answered_by(app: &TestApp, method: Method, n: usize) -> Vec<Option<String>> {
    let mut answers = Vec::with_capacity(n);
    for _ in 0..n {
        let (status, body) = send(app, method.clone(), "/echo/who").await;
        let instance = body["instance"].as_str().filter(|_| status == 200);
        answers.push(instance.map(str::to_owned));
    }
    answers
}

async fn listed_instances(app: &TestApp) -> Vec<String> {
    let listed = app.json("/gateway/routes").await;
    serde_json::from_value(listed[0]["instances"].clone()).expect("a list of authorities")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lb_route_balances_and_leaves_a_killed_instance_within_its_lease() {
    let python = agora_python();
    let routes = r#"
[[routes]]
id = "echo"
uri = "lb://lb-echo"
predicates = ["Path=/echo/**"]
filters = ["StripPrefix=1"]
retries = 1
"#;
    // The registry checks leases every lease/4 s (1 s at least): 4 s makes that every second.
    let dir = tempfile::tempdir().expect("temp dir");
    let app = node_with_routes(dir.path(), routes, 4).await;
    let (mut doomed, survivor) = tokio::join!(
        Instance::start(&python, &app),
        Instance::start(&python, &app)
    );
    app.wait_until(|| async { listed_instances(&app).await.len() == 2 })
        .await;

    let answers = answered_by(&app, Method::GET, 6).await;
    let seen: HashSet<_> = answers.iter().flatten().cloned().collect();
    assert_eq!(
        seen,
        HashSet::from([doomed.id.clone(), survivor.id.clone()]),
        "round-robin over both: {answers:?}"
    );

    doomed.child.start_kill().expect("kill -9");
    doomed.child.wait().await.expect("reaped");
    let killed = Instant::now();
    // Still listed UP (its lease has seconds to go): a GET that meets it is retried on the
    // next instance, while a POST is sent once, so one of two POSTs fails.
    let survivor_only = vec![Some(survivor.id.clone()); 4];
    assert_eq!(answered_by(&app, Method::GET, 4).await, survivor_only);
    let posts = answered_by(&app, Method::POST, 2).await;
    assert!(posts.contains(&None), "a POST is not retried: {posts:?}");

    // Once the lease runs out the registry marks it DOWN, and every request goes to the survivor.
    app.wait_until(|| async { answered_by(&app, Method::POST, 4).await == survivor_only })
        .await;
    let moved = killed.elapsed();
    assert!(moved < Duration::from_secs(8), "moved after {moved:?}");
    assert_eq!(
        listed_instances(&app).await,
        vec![survivor.authority.clone()]
    );

    let mut survivor = survivor;
    drop(survivor.child.stdin.take());
    expect_line(&mut survivor.lines, "stopped").await;
    app.shutdown().await;
}
