//! Authentication and rate limits over real HTTP: bearer JWTs (HS256 and RS256) on `/api`,
//! basic auth on registry writes, the per-client token bucket (keyed on `X-Forwarded-For` only
//! when trusted), and the CORS headers on the refusals.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

use super::support::{product_body, TestApp};

const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";
const ISSUER: &str = "https://auth.agora.test";
const AUDIENCE: &str = "agora";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs() as i64
}

/// Claims that pass every check, with `changes` applied.
fn claims(changes: Value) -> Value {
    let mut claims = json!({"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600});
    for (key, value) in changes.as_object().expect("object") {
        claims[key] = value.clone();
    }
    claims
}

fn hs256(secret: &[u8], claims: &Value) -> String {
    let key = EncodingKey::from_secret(secret);
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).expect("signed")
}

fn rs256(claims: &Value) -> String {
    let pem = std::fs::read(fixture("jwt-test-private.pem")).expect("fixture key");
    let key = EncodingKey::from_rsa_pem(&pem).expect("RSA private key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("signed")
}

fn post_product(app: &TestApp, sku: &str) -> RequestBuilder {
    app.http(Method::POST, "/api/product")
        .json(&product_body(sku, 1.0, 1))
}

fn header<'r>(response: &'r Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} header"))
        .to_str()
        .expect("ASCII header")
}

/// Asserts a JSON error `code` with the request id echoed in header and body; returns the body.
async fn assert_refused(response: Response, status: u16, code: &str, request_id: &str) -> Value {
    assert_eq!(response.status(), status, "{code}");
    assert_eq!(header(&response, "x-request-id"), request_id);
    let body: Value = response.json().await.expect("JSON error");
    assert_eq!(body["error"], code, "{body}");
    assert_eq!(body["requestId"], request_id, "{body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bearer_tokens_guard_the_api() {
    let app = TestApp::spawn_with(|config| {
        config.security.auth_jwt_secret = Some(SECRET.parse().unwrap());
        config.security.auth_jwt_issuer = Some(ISSUER.into());
        config.security.auth_jwt_audience = Some(AUDIENCE.into());
    })
    .await;
    let secret = SECRET.as_bytes();
    let cases = [
        ("no token", None, "Bearer", "required"),
        (
            "bad signature",
            Some(hs256(
                b"not-the-secret-not-the-secret-no",
                &claims(json!({})),
            )),
            "Bearer error=\"invalid_token\"",
            "signature",
        ),
        (
            "expired",
            Some(hs256(secret, &claims(json!({"exp": now() - 3600})))),
            "Bearer error=\"invalid_token\"",
            "expired",
        ),
        (
            "wrong issuer",
            Some(hs256(secret, &claims(json!({"iss": "https://evil.test"})))),
            "Bearer error=\"invalid_token\"",
            "issuer",
        ),
        (
            "wrong audience",
            Some(hs256(secret, &claims(json!({"aud": "someone-else"})))),
            "Bearer error=\"invalid_token\"",
            "audience",
        ),
        (
            "no issuer",
            Some(hs256(secret, &claims(json!({"iss": null})))),
            "Bearer error=\"invalid_token\"",
            "claim",
        ),
        (
            "not a JWT",
            Some("not.a.jwt".to_owned()),
            "Bearer error=\"invalid_token\"",
            "malformed",
        ),
    ];
    for (name, token, challenge, message) in cases {
        let request_id = format!("security-{}", name.replace(' ', "-"));
        let mut request = post_product(&app, "refused").header("x-request-id", &request_id);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(header(&response, "www-authenticate"), challenge, "{name}");
        let body = assert_refused(response, 401, "unauthorized", &request_id).await;
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{name}: {body}"
        );
    }
    // Unknown /api paths are refused too: the whole prefix is protected.
    let unknown = app.get("/api/nothing-here").await;
    assert_eq!(unknown.status(), 401);

    let token = hs256(secret, &claims(json!({})));
    let created = post_product(&app, "allowed")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let listed = app
        .http(Method::GET, "/api/product")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    assert_eq!(
        app.get("/api/product").await.status(),
        401,
        "nothing cached"
    );

    // Operations and registry reads stay open.
    assert_eq!(app.get("/health").await.status(), 200);
    assert_eq!(app.get("/eureka/apps").await.status(), 200);
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .contains("agora_http_requests_total{method=\"POST\",route=\"auth\",status=\"401\"} 7"),
        "{metrics}"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rs256_tokens_are_checked_with_the_public_key() {
    let app = TestApp::spawn_with(|config| {
        config.security.auth_jwt_public_key = Some(fixture("jwt-test-public.pem"));
    })
    .await;
    let created = post_product(&app, "signed")
        .bearer_auth(rs256(&claims(json!({}))))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Algorithm confusion: the public key used as an HS256 secret must not pass.
    let public_pem = std::fs::read(fixture("jwt-test-public.pem")).unwrap();
    let forged = post_product(&app, "forged")
        .bearer_auth(hs256(&public_pem, &claims(json!({}))))
        .header("x-request-id", "forged")
        .send()
        .await
        .unwrap();
    assert_refused(forged, 401, "unauthorized", "forged").await;
    let expired = post_product(&app, "late")
        .bearer_auth(rs256(&claims(json!({"exp": now() - 3600}))))
        .header("x-request-id", "late")
        .send()
        .await
        .unwrap();
    assert_refused(expired, 401, "unauthorized", "late").await;
    app.shutdown().await;
}

#[tokio::test]
async fn a_bad_public_key_file_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();
    for (file, says) in [
        (garbage, "is not an RSA public key"),
        (fixture("jwt-test-private.pem"), "private key"),
        (dir.path().join("missing.pem"), "cannot read"),
    ] {
        let started =
            TestApp::try_spawn_with(|c| c.security.auth_jwt_public_key = Some(file.clone()));
        let error = match started.await {
            Ok(_) => panic!("{} was accepted", file.display()),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(&file.display().to_string()), "{error}");
        assert!(error.contains(says), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_writes_need_basic_auth() {
    let app = TestApp::spawn_with(|config| {
        config.security.registry_user = Some("eureka".into());
        config.security.registry_password = Some("password".parse().unwrap());
    })
    .await;
    let instance = json!({"instance": {
        "hostName": "x.local", "app": "X", "ipAddr": "127.0.0.1",
        "dataCenterInfo": {"@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", "name": "MyOwn"}
    }});
    let register = || {
        app.http(Method::POST, "/eureka/apps/X")
            .json(&instance)
            .header("x-request-id", "register")
    };
    let anonymous = register().send().await.unwrap();
    assert_eq!(
        header(&anonymous, "www-authenticate"),
        "Basic realm=\"eureka\""
    );
    assert_refused(anonymous, 401, "unauthorized", "register").await;
    let as_eureka = |password: &'static str| register().basic_auth("eureka", Some(password)).send();
    let wrong = as_eureka("guess").await.unwrap();
    assert_refused(wrong, 401, "unauthorized", "register").await;
    assert_eq!(as_eureka("password").await.unwrap().status(), 204);
    let app_x = app.get("/eureka/apps/X").await;
    assert_eq!(app_x.status(), 200, "reads stay open");
    // No JWT option: the API itself is open.
    assert_eq!(
        post_product(&app, "open").send().await.unwrap().status(),
        201
    );
    app.shutdown().await;
}

/// Sends `request` again and again until it is refused with 429 (at most 20 times).
async fn flood(request: impl Fn() -> RequestBuilder) -> Response {
    for _ in 0..20 {
        let response = request().send().await.unwrap();
        if response.status() == 429 {
            return response;
        }
    }
    panic!("20 requests in a row did not meet the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_over_its_rate_gets_429_until_its_bucket_refills() {
    let app = TestApp::spawn_with(|config| {
        config.security.rate_limit = Some(2.try_into().unwrap());
        config.security.rate_burst = Some(3.try_into().unwrap());
    })
    .await;
    let path = "/api/inventory?skuCode=none";
    let first = app.get(path).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-ratelimit-limit"), "3");
    assert_eq!(header(&first, "x-ratelimit-remaining"), "2");
    let throttled = flood(|| app.http(Method::GET, path).header("x-request-id", "flood")).await;
    let retry_after: u64 = header(&throttled, "retry-after").parse().unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(header(&throttled, "x-ratelimit-limit"), "3");
    assert_eq!(header(&throttled, "x-ratelimit-remaining"), "0");
    assert_refused(throttled, 429, "rate_limited", "flood").await;
    assert_eq!(app.get("/health").await.status(), 200, "not limited");
    assert_eq!(app.get("/metrics").await.status(), 200, "not limited");

    // Refused requests take no token: polling comes through once the bucket refills.
    app.wait_until(|| async { app.get(path).await.status() == 200 })
        .await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("route=\"rate_limit\",status=\"429\""),
        "{metrics}"
    );
    app.shutdown().await;
}

const ORIGIN: &str = "https://shop.example";

/// Asserts that a browser on [`ORIGIN`] may read `response` and its header `exposed`.
fn assert_readable_cross_origin(response: &Response, exposed: &str) {
    assert_eq!(header(response, "access-control-allow-origin"), ORIGIN);
    let exposes = header(response, "access-control-expose-headers");
    assert!(exposes.contains(exposed), "{exposes}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_carry_the_cors_headers() {
    let app = TestApp::spawn_with(|config| {
        config.security.auth_jwt_secret = Some(SECRET.parse().unwrap());
        config.security.rate_limit = Some(1.try_into().unwrap());
        config.security.rate_burst = Some(2.try_into().unwrap());
    })
    .await;
    let unauthorized = post_product(&app, "cors")
        .header("origin", ORIGIN)
        .header("x-request-id", "cors-401")
        .send()
        .await
        .unwrap();
    assert_readable_cross_origin(&unauthorized, "www-authenticate");
    assert_refused(unauthorized, 401, "unauthorized", "cors-401").await;
    let throttled = flood(|| {
        (app.http(Method::GET, "/api/product"))
            .header("origin", ORIGIN)
            .header("x-request-id", "cors-429")
    })
    .await;
    assert_readable_cross_origin(&throttled, "retry-after");
    assert_refused(throttled, 429, "rate_limited", "cors-429").await;
    // A preflight is answered by the CORS layer, before the limit: a browser cannot read a
    // refused preflight.
    let preflight = (app.http(Method::OPTIONS, "/api/product"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(header(&preflight, "access-control-allow-origin"), ORIGIN);
    app.shutdown().await;
}

/// The bucket size of [`forwarded_for_keys_the_limit_only_when_trusted`]: far more than the
/// requests it sends, so a bucket's level says whose it is however slowly they run.
const BURST: u32 = 1000;

/// What the client's bucket has left after a request to the API, forwarded for `forwarded`.
async fn remaining(app: &TestApp, forwarded: Option<&str>) -> u32 {
    let mut request = app.http(Method::GET, "/api/inventory?skuCode=none");
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    header(&response, "x-ratelimit-remaining").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forwarded_for_keys_the_limit_only_when_trusted() {
    for trusted in [true, false] {
        let app = TestApp::spawn_with(|config| {
            config.security.rate_limit = Some(1.try_into().unwrap());
            config.security.rate_burst = Some(BURST.try_into().unwrap());
            config.security.trust_forwarded_for = trusted;
        })
        .await;
        // Requests forwarded for one client, all from this test's socket. A bucket refills at
        // one token a second: the margins below hold unless the test stalls for 20 s.
        for _ in 0..30 {
            remaining(&app, Some("203.0.113.1")).await;
        }
        let other = remaining(&app, Some("203.0.113.2, 10.0.0.1")).await;
        let first_again = remaining(&app, Some("203.0.113.1")).await;
        assert!(first_again < BURST - 10, "{first_again}: the first bucket");
        if trusted {
            assert_eq!(
                other,
                BURST - 1,
                "the first address has a bucket of its own"
            );
            // Without the header, or with one that does not parse: the peer's bucket.
            for _ in 0..29 {
                remaining(&app, Some("not an address")).await;
            }
            assert!(
                remaining(&app, None).await < BURST - 10,
                "the peer's bucket"
            );
        } else {
            assert!(other < BURST - 10, "{other}: the header is ignored");
        }
        app.shutdown().await;
    }
}
