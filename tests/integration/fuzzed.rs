//! Bad input, fuzzed: proptest sends arbitrary bodies (JSON values, raw bytes, and order,
//! product and stock shapes with arbitrary values), paths, query strings and headers to a live
//! node (`AGORA_FUZZ_CASES` cases, 1500 by default). Never a 5xx, never a dropped connection,
//! and a refused request changes nothing. Then the edges no generator reaches: oversized
//! headers, a body that trickles in, a 10,000-line order and a corrupted record on disk.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::support::{order_body, retry, TestApp};

const SKUS: [&str; 2] = ["fz1", "fz2"];

/// One generated request.
#[derive(Debug, Clone)]
struct Fuzzed {
    method: Method,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Percent-encodes everything but unreserved characters, so any text can be a path segment.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,16}".prop_map(|s| encode(&s)),
        Just("..".to_owned()),
        Just("%ff%fe".to_owned()),
        Just("00000000-0000-0000-0000-000000000000".to_owned()),
        Just(SKUS[0].to_owned()),
    ]
}

fn path(product_id: String, order: String) -> impl Strategy<Value = String> {
    const TEMPLATES: [&str; 14] = [
        "/api/product",
        "/api/product/{}",
        "/api/inventory",
        "/api/inventory/{}",
        "/api/order",
        "/api/order/{}",
        "/api/order/{}/cancel",
        "/api/notifications",
        "/health",
        "/metrics",
        "/eureka/apps",
        "/eureka/apps/{}",
        "/{}",
        "/api/{}/{}",
    ];
    let known = prop_oneof![
        segment(),
        Just(product_id),
        Just(order),
        Just(SKUS[1].to_owned())
    ];
    (
        proptest::sample::select(&TEMPLATES[..]),
        known.clone(),
        known,
    )
        .prop_map(|(t, a, b)| t.replacen("{}", &a, 1).replacen("{}", &b, 1))
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-zA-Z0-9=&%+._~-]{0,40}",
        ".{0,12}".prop_map(|v| format!("limit={}", encode(&v))),
        ".{0,12}".prop_map(|v| format!("after={}", encode(&v))),
        (".{0,8}", ".{0,8}").prop_map(|(a, b)| format!(
            "skuCode={}&skuCode={}",
            encode(&a),
            encode(&b)
        )),
        (0i64..2000).prop_map(|n| format!("limit={n}&after=0")),
    ]
}

/// Header names the client library manages itself, or that change the HTTP framing.
const FRAMING: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
];

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let name = prop_oneof![
        proptest::sample::select(
            &[
                "idempotency-key",
                "x-request-id",
                "accept",
                "authorization",
                "content-encoding",
                "accept-encoding",
                "origin",
                "access-control-request-method",
                "range",
                "cookie",
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-z][a-z0-9-]{0,15}"
            .prop_filter("not a framing header", |n| !FRAMING.contains(&n.as_str())),
    ];
    // Visible ASCII, spaces and obs-text bytes, as a header value may hold.
    let value =
        proptest::collection::vec(prop_oneof![0x21u8..0x7f, Just(b' '), 0x80u8..=0xff], 0..64)
            .prop_map(|mut v| {
                while v.last() == Some(&b' ') {
                    v.pop();
                }
                v
            });
    proptest::collection::vec((name, value), 0..4)
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(
            &[
                "name",
                "description",
                "price",
                "skuCode",
                "quantity",
                "orderLineItemsDtoList",
            ][..]
        )
        .prop_map(str::to_owned),
        ".{0,10}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        ".{0,24}".prop_map(Value::from),
        proptest::sample::select(&SKUS[..]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(field(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let line = (json_value(), json_value(), json_value()).prop_map(
        |(sku, quantity, price)| json!({"skuCode": sku, "quantity": quantity, "price": price}),
    );
    let order = proptest::collection::vec(line, 0..4).prop_map(order_body);
    let product = (json_value(), json_value(), json_value(), json_value()).prop_map(
        |(name, price, sku, quantity)| json!({"name": name, "price": price, "skuCode": sku, "quantity": quantity}),
    );
    let stock = json_value().prop_map(|quantity| json!({ "quantity": quantity }));
    prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(any::<u8>(), 0..256),
        prop_oneof![json_value(), order, product, stock].prop_map(|v| v.to_string().into_bytes()),
    ]
}

fn request(product_id: String, order: String) -> impl Strategy<Value = Fuzzed> {
    let method = proptest::sample::select(
        &[
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
            Method::HEAD,
        ][..],
    );
    let content_type = prop_oneof![
        Just(None),
        Just(Some("application/json".to_owned())),
        Just(Some("application/json; charset=utf-8".to_owned())),
        Just(Some("application/problem+json".to_owned())),
        Just(Some("text/plain".to_owned())),
        "[ -~]{0,30}".prop_map(Some),
    ];
    (
        method,
        path(product_id, order),
        query(),
        headers(),
        content_type,
        body(),
    )
        .prop_map(
            |(method, path, query, headers, content_type, body)| Fuzzed {
                method,
                path,
                query,
                headers,
                content_type,
                body,
            },
        )
}

/// What a refused request must not change: the catalog with its stock, and the orders.
/// (Notifications trail accepted orders asynchronously, and follow from the orders.)
async fn snapshot(app: &TestApp) -> (Value, Value) {
    let products = app.json("/api/product?limit=1000").await;
    (products, app.json("/api/order?limit=1000").await)
}

async fn send(app: &TestApp, req: &Fuzzed) -> Result<u16, TestCaseError> {
    let mut path = req.path.clone();
    if !req.query.is_empty() {
        path = format!("{path}?{}", req.query);
    }
    let mut builder = app
        .http(req.method.clone(), &path)
        .timeout(Duration::from_secs(10))
        .body(req.body.clone());
    for (name, value) in &req.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    if let Some(content_type) = &req.content_type {
        builder = builder.header("content-type", content_type.as_str());
    }
    let response = builder
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("no answer: {e:?}")))?;
    let status = response.status().as_u16();
    response
        .bytes()
        .await
        .map_err(|e| TestCaseError::fail(format!("answer cut short: {e}")))?;
    Ok(status)
}

#[test]
fn fuzzed_requests_never_get_a_5xx_and_refused_ones_change_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(TestApp::spawn_with(|c| c.fault_injection = false));
    let (product_id, order) = runtime.block_on(async {
        let product = app.product(SKUS[0], 2.0, 100).await;
        app.product(SKUS[1], 3.0, 100).await;
        let order: Value = app.order(&[(SKUS[0], 1)]).await.json().await.unwrap();
        (
            product["id"].as_str().unwrap().to_owned(),
            order["orderNumber"].as_str().unwrap().to_owned(),
        )
    });
    let cases = std::env::var("AGORA_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1500);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let (refused, accepted) = (Cell::new(0u32), Cell::new(0u32));
    let outcome = runner.run(&request(product_id, order), |req| {
        runtime.block_on(async {
            let before = snapshot(&app).await;
            let status = send(&app, &req).await?;
            prop_assert!(status < 500, "{status} for {req:?}");
            if status >= 400 {
                refused.set(refused.get() + 1);
                prop_assert_eq!(&before, &snapshot(&app).await, "refused {:?}", req);
            } else {
                accepted.set(accepted.get() + 1);
            }
            Ok(())
        })
    });
    eprintln!(
        "fuzzed: {} requests ({} refused, {} accepted) in {:.1} s",
        refused.get() + accepted.get(),
        refused.get(),
        accepted.get(),
        started.elapsed().as_secs_f64()
    );
    outcome.unwrap();
    runtime.block_on(app.shutdown());
}

/// Reads one HTTP/1.1 answer: its status and body, or `None` when the server closes first.
/// Panics if neither happens `within`.
async fn read_answer(
    stream: &mut (impl AsyncReadExt + Unpin),
    within: Duration,
) -> Option<(u16, String)> {
    let (mut answer, mut chunk) = (Vec::new(), [0u8; 4096]);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or(0usize);
            if body.len() >= length {
                let status = head.get(9..12)?.parse().ok()?;
                return Some((status, body.to_owned()));
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&chunk[..n]),
            Ok(_) => return None,
            Err(_) => panic!("no answer and no close within {within:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let address = app.base.trim_start_matches("http://").to_owned();
    // hyper buffers at most ~400 KB of request head: 100 KB is served, 1 MB is refused.
    for (size, refused) in [(100 * 1024, false), (1024 * 1024, true)] {
        let request = format!(
            "GET /api/product HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(size)
        );
        let mut stream = TcpStream::connect(&address).await.unwrap();
        // The server may close before reading it all: that counts as a refusal.
        let _ = stream.write_all(request.as_bytes()).await;
        let answer = read_answer(&mut stream, Duration::from_secs(10)).await;
        let status = answer.map(|(status, _)| status);
        if refused {
            assert!(status.is_none_or(|s| s == 431), "{size} bytes: {status:?}");
        } else {
            assert_eq!(status, Some(200), "{size} bytes");
        }
        assert_eq!(app.get("/health").await.status(), 200, "still serving");
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_in_is_cut_off_at_the_request_timeout() {
    let app = TestApp::spawn_with(|c| c.request_timeout_ms = 500).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let stream = TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = "POST /api/order HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                content-length: 1000\r\n\r\n{";
    writer.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for _ in 0..100 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let answer = read_answer(&mut reader, Duration::from_secs(5)).await;
    let elapsed = started.elapsed();
    trickle.abort();
    if let Some((status, body)) = answer {
        assert_eq!(status, 408, "{body}");
        assert!(body.contains("request_timeout"), "{body}");
    }
    assert!(
        elapsed < Duration::from_secs(2),
        "cut off after {elapsed:?}"
    );
    assert_eq!(app.get("/health").await.status(), 200);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_10000_line_order_is_refused_with_a_clear_limit() {
    let app = TestApp::spawn_with(|c| c.max_body_bytes = 1 << 20).await;
    app.product("big", 1.0, 100_000).await;
    let lines = vec![("big", 1); 10_000];
    let response = app.order(&lines).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_input");
    assert_eq!(body["field"], "orderLineItemsDtoList");
    assert!(
        body["message"].as_str().unwrap().contains("at most"),
        "{body}"
    );
    assert_eq!(app.stock("big").await, 100_000);
    assert!(app.all_orders().await.is_empty());
    app.shutdown().await;
}

/// Overwrites stored products of a stopped node: each `(id, bytes)` replaces a record.
fn corrupt_products(data: &Path, records: Vec<(uuid::Uuid, Vec<u8>)>) {
    let data = data.to_owned();
    std::thread::spawn(move || {
        // A runtime of its own: dropping it stops the flusher, which releases sled's lock.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let reopen = || async {
                agora::storage::Storage::open(&data)
                    .map_err(|e| format!("cannot reopen the data: {e:#}"))
            };
            let storage = retry(Duration::from_millis(20), Duration::from_secs(30), reopen).await;
            for (key, bytes) in records {
                storage
                    .products
                    .sled_tree()
                    .insert(key.as_bytes(), bytes)
                    .unwrap();
            }
            storage.flush_now().unwrap();
        });
    })
    .join()
    .expect("corrupting thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_a_clear_error_and_the_rest_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().to_owned();
    let app = TestApp::spawn_with(|c| c.data = data.clone()).await;
    let id = |product: Value| uuid::Uuid::parse_str(product["id"].as_str().unwrap()).unwrap();
    let garbage = id(app.product("garbage", 1.0, 5).await);
    let huge = id(app.product("huge", 1.0, 5).await);
    let good = app.product("good", 2.0, 5).await;
    app.shutdown().await;
    // Random bytes, and a valid id followed by a SKU whose length prefix claims 2^64 - 1 bytes
    // (before the codec's limit that panicked the actor, and a length like 2^50 aborted the
    // whole process on its failed allocation).
    let mut huge_sku = vec![1u8, 16];
    huge_sku.extend(huge.as_bytes());
    huge_sku.extend([0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, b's']);
    let records = vec![
        (garbage, vec![1u8, 0xde, 0xad, 0xbe, 0xef, 0xff, 0xff]),
        (huge, huge_sku),
    ];
    corrupt_products(&data, records);

    let app = TestApp::spawn_with(|c| c.data = data.clone()).await;
    for key in [garbage, huge, garbage] {
        let response = app.get(&format!("/api/product/{key}")).await;
        assert_eq!(response.status(), 500);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "internal");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("corrupt record in products"), "{message}");
    }
    let good_path = format!("/api/product/{}", good["id"].as_str().unwrap());
    assert_eq!(app.json(&good_path).await, good);
    assert_eq!(app.order(&[("good", 1)]).await.status(), 201);
    assert_eq!(app.get("/health").await.status(), 200);
    app.shutdown().await;
}
