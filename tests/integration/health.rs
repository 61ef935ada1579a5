//! The health probes over real HTTP: `/health/live` and `/health/ready` answer with the body of
//! `/health`, and readiness follows what this node can serve. On a single node both are 200;
//! a cluster member whose partition-owning peer has not started is live but not ready (503),
//! and becomes ready once the peer is reachable. The probes are listed in the OpenAPI document
//! and no rate limit applies to them.

use std::path::Path;

use serde_json::Value;

use super::support::{free_addr, TestApp};

const PROBES: [&str; 3] = ["/health", "/health/live", "/health/ready"];

/// The status code and the JSON body of `GET path`.
async fn probe(app: &TestApp, path: &str) -> (u16, Value) {
    let response = app.get(path).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// The component names of a health body, to compare shapes.
fn components(body: &Value) -> Vec<String> {
    let parts = body["components"].as_object().expect("components");
    parts.keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_is_live_and_ready_with_the_body_of_health() {
    let app = TestApp::spawn_with(|config| {
        config.security.rate_limit = Some(1.try_into().unwrap());
        config.security.rate_burst = Some(1.try_into().unwrap());
    })
    .await;
    let (_, health) = probe(&app, "/health").await;
    assert_eq!(
        components(&health),
        ["actors", "cluster", "kafka", "registry", "storage"]
    );
    // Probed again and again past the rate limit of one request: never refused.
    for _ in 0..5 {
        for path in PROBES {
            let (status, body) = probe(&app, path).await;
            assert_eq!(status, 200, "{path}: {body}");
            assert_eq!(components(&body), components(&health), "{path}");
            assert_eq!(body["node"], health["node"], "{path}");
            assert!(body["status"].is_string(), "{path}: {body}");
        }
    }
    let doc = app.json("/openapi.json").await;
    for path in PROBES {
        let answers = &doc["paths"][path]["get"]["responses"];
        assert!(answers["200"].is_object(), "{path} in the OpenAPI document");
        assert!(answers["429"].is_null(), "{path} is not rate limited");
    }
    let ready = &doc["paths"]["/health/ready"]["get"]["responses"];
    assert!(ready["503"].is_object(), "/health/ready documents its 503");
    app.shutdown().await;
}

/// Member `node` of the cluster `n1,n2`, listening on `addr` and joining through `seed`.
async fn member(
    node: &str,
    addr: &str,
    seed: &str,
    data: &Path,
    extra: &[(&str, &str)],
) -> TestApp {
    let mut env = vec![
        ("AGORA_NODE", node),
        ("AGORA_CLUSTER", addr),
        ("AGORA_JOIN", seed),
        ("AGORA_COOKIE", "health-test"),
        ("AGORA_MEMBERS", "n1,n2"),
        ("AGORA_LEASE_SECS", "2"),
    ];
    env.extend_from_slice(extra);
    TestApp::spawn_process(data, &env).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_ready_only_once_the_other_partition_owner_is_reachable() {
    let (n1_addr, n2_addr) = (free_addr().to_string(), free_addr().to_string());
    let (n1_dir, n2_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Started alone: it answers, but about half of the keys live on n2, which is not there.
    let n1 = member("n1", &n1_addr, &n1_addr, n1_dir.path(), &[]).await;
    let (live, live_body) = probe(&n1, "/health/live").await;
    assert_eq!(live, 200, "{live_body}");
    let (ready, ready_body) = probe(&n1, "/health/ready").await;
    assert_eq!(ready, 503, "{ready_body}");
    assert_eq!(components(&ready_body), components(&live_body));
    let cluster = &ready_body["components"]["cluster"];
    assert_eq!(cluster["status"], "DEGRADED", "{ready_body}");
    assert!(
        cluster["detail"]
            .as_str()
            .unwrap()
            .contains("n2 unreachable"),
        "{ready_body}"
    );
    let (health, _) = probe(&n1, "/health").await;
    assert_eq!(health, 200, "/health stays 200 while a peer is DEGRADED");

    let n2_extra = [
        ("AGORA_KAFKA_BROKERS", n1.kafka_brokers.as_str()),
        ("AGORA_ROLES", "gateway,product,inventory,order"),
    ];
    let n2 = member("n2", &n2_addr, &n1_addr, n2_dir.path(), &n2_extra).await;
    for app in [&n1, &n2] {
        app.wait_until(|| async { probe(app, "/health/ready").await.0 == 200 })
            .await;
    }
    let (_, body) = probe(&n1, "/health/ready").await;
    assert_eq!(body["components"]["cluster"]["status"], "UP", "{body}");
    n2.kill9();
    n1.kill9();
}
