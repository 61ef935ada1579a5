//! Bad input gets a clear 4xx JSON error `{error, message, requestId}` and changes nothing.

use reqwest::Method;
use serde_json::{json, Value};

use super::support::{order_body, order_line, TestApp};

struct Case {
    name: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: &'static str,
    body: Value,
    status: u16,
    error: &'static str,
) -> Case {
    Case {
        name,
        method,
        path,
        content_type: Some("application/json"),
        body: body.to_string().into_bytes(),
        status,
        error,
    }
}

fn raw(
    name: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    body: impl Into<Vec<u8>>,
    status: u16,
    error: &'static str,
) -> Case {
    Case {
        name,
        method: Method::POST,
        path,
        content_type,
        body: body.into(),
        status,
        error,
    }
}

fn cases() -> Vec<Case> {
    let line = |sku: Value, qty: Value| order_body(vec![order_line(sku, qty)]);
    let product =
        |name: Value, price: Value| json!({"name": name, "description": "d", "price": price});
    vec![
        raw(
            "malformed JSON",
            "/api/order",
            Some("application/json"),
            "{\"orderLineItemsDtoList\": [",
            400,
            "bad_request",
        ),
        raw(
            "invalid UTF-8",
            "/api/product",
            Some("application/json"),
            &b"{\"name\": \"\xff\", \"price\": 1}"[..],
            400,
            "bad_request",
        ),
        raw(
            "deeply nested JSON",
            "/api/order",
            Some("application/json"),
            "[".repeat(10_000),
            400,
            "bad_request",
        ),
        raw(
            "wrong content type",
            "/api/order",
            Some("text/plain"),
            order_body(json!([])).to_string(),
            415,
            "unsupported_media_type",
        ),
        raw(
            "no content type",
            "/api/product",
            None,
            product(json!("x"), json!(1)).to_string(),
            415,
            "unsupported_media_type",
        ),
        raw(
            "body over the limit",
            "/api/product",
            Some("application/json"),
            format!("{{\"name\": \"{}\"}}", "x".repeat(70_000)),
            413,
            "payload_too_large",
        ),
        case(
            "missing field",
            Method::POST,
            "/api/product",
            json!({"description": "d", "price": 1}),
            400,
            "bad_request",
        ),
        case(
            "wrong type",
            Method::POST,
            "/api/product",
            product(json!(42), json!(1)),
            400,
            "bad_request",
        ),
        case(
            "non-numeric price",
            Method::POST,
            "/api/product",
            product(json!("x"), json!("ten")),
            400,
            "bad_request",
        ),
        case(
            "negative price",
            Method::POST,
            "/api/product",
            product(json!("x"), json!(-1)),
            400,
            "invalid_input",
        ),
        case(
            "too many decimals",
            Method::POST,
            "/api/product",
            product(json!("x"), json!(1.001)),
            400,
            "invalid_input",
        ),
        case(
            "over-long name",
            Method::POST,
            "/api/product",
            product(json!("n".repeat(201)), json!(1)),
            400,
            "invalid_input",
        ),
        case(
            "empty name",
            Method::POST,
            "/api/product",
            product(json!("  "), json!(1)),
            400,
            "invalid_input",
        ),
        case(
            "bad skuCode",
            Method::POST,
            "/api/product",
            json!({"name": "x", "price": 1, "skuCode": "a b"}),
            400,
            "invalid_input",
        ),
        case(
            "negative stock",
            Method::PUT,
            "/api/inventory/stable",
            json!({"quantity": -1}),
            400,
            "invalid_input",
        ),
        case(
            "empty order",
            Method::POST,
            "/api/order",
            order_body(json!([])),
            400,
            "invalid_input",
        ),
        case(
            "zero quantity",
            Method::POST,
            "/api/order",
            line(json!("stable"), json!(0)),
            400,
            "invalid_input",
        ),
        case(
            "negative quantity",
            Method::POST,
            "/api/order",
            line(json!("stable"), json!(-3)),
            400,
            "invalid_input",
        ),
        case(
            "absurd quantity",
            Method::POST,
            "/api/order",
            line(json!("stable"), json!(10_000_000_000u64)),
            400,
            "invalid_input",
        ),
        case(
            "fractional quantity",
            Method::POST,
            "/api/order",
            line(json!("stable"), json!(1.5)),
            400,
            "bad_request",
        ),
        case(
            "too many lines",
            Method::POST,
            "/api/order",
            order_body(vec![order_line("stable", 1); 101]),
            400,
            "invalid_input",
        ),
        case(
            "unknown route",
            Method::GET,
            "/api/nothing",
            json!({}),
            404,
            "not_found",
        ),
        case(
            "wrong method",
            Method::DELETE,
            "/api/order",
            json!({}),
            405,
            "method_not_allowed",
        ),
        case(
            "unknown product",
            Method::GET,
            "/api/product/not-an-id",
            json!({}),
            404,
            "not_found",
        ),
        case(
            "bad limit",
            Method::GET,
            "/api/product?limit=0",
            json!({}),
            400,
            "invalid_input",
        ),
    ]
}

async fn snapshot(app: &TestApp) -> Value {
    json!([
        app.json("/api/product?limit=1000").await,
        app.json("/api/order?limit=1000").await,
        app.json("/api/inventory?skuCode=stable&skuCode=x&skuCode=n")
            .await,
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_is_refused_with_a_json_error_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.product("stable", 2.5, 10).await;
    let before = snapshot(&app).await;
    for case in cases() {
        let mut req = app
            .http(case.method.clone(), case.path)
            .header("x-request-id", "req-42");
        if let Some(content_type) = case.content_type {
            req = req.header("content-type", content_type);
        }
        let response = req.body(case.body.clone()).send().await.unwrap();
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
        assert_eq!(
            response.headers()["x-request-id"],
            "req-42",
            "{}",
            case.name
        );
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{}: JSON error body: {e}", case.name));
        assert_eq!(body["error"], case.error, "{}: {body}", case.name);
        assert_eq!(body["requestId"], "req-42", "{}", case.name);
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            case.name
        );
    }
    assert_eq!(
        snapshot(&app).await,
        before,
        "rejected requests changed nothing"
    );
    assert_eq!(app.json("/health").await["status"], "UP");
    app.shutdown().await;
}
