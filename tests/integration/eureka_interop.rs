//! py-eureka-client (PyPI, 0.13.3) against agora's registry: a small Python HTTP service
//! (`tests/interop/eureka_client.py`) registers, renews, fetches full and delta registries as XML,
//! discovers itself and calls itself; a deleted instance is re-registered after its renew gets
//! 404; on stop the client cancels. Runs on `agora_python()`: `AGORA_PYTHON`, or the virtualenv
//! the test support makes on first use; without either the test fails, saying what is missing.

use reqwest::Method;
use serde_json::Value;

use super::support::{agora_python, expect_line, start_script, TestApp};

const APP: &str = "INTEROP-SVC";

/// Whether the instance is UP in the JSON and the XML registry and on the dashboard.
async fn listed_up(app: &TestApp, id: &str) -> bool {
    let json = app.get_accept("/eureka/apps", "application/json").await;
    let json: Value = serde_json::from_str(&json).expect("JSON registry");
    let in_json = json["applications"]["application"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["instance"].as_array().cloned().unwrap_or_default())
        .any(|i| i["instanceId"] == id && i["status"] == "UP");
    let xml = app.get("/eureka/apps").await.text().await.expect("XML");
    let in_xml = xml.contains(&format!("<instanceId>{id}</instanceId>"))
        && xml.contains("<status>UP</status>");
    let web = app.get("/eureka/web").await.text().await.expect("HTML");
    in_json && in_xml && web.contains(APP)
}

async fn instance_status(app: &TestApp, id: &str) -> u16 {
    app.get(&format!("/eureka/apps/{APP}/{}", id.replace(':', "%3A")))
        .await
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn py_eureka_client_registers_renews_discovers_and_cancels() {
    let python = agora_python();
    let app = TestApp::spawn().await;
    let (mut child, mut lines) = start_script(&python, "eureka_client.py", &app, &[]);

    let id = expect_line(&mut lines, "registered ").await;
    let body = expect_line(&mut lines, "discovered ").await;
    assert_eq!(
        body, "hello from interop-svc",
        "found itself and called itself"
    );
    app.wait_until(|| listed_up(&app, &id)).await;

    // Deleted behind its back: the next renew gets 404 and the client registers again.
    let deleted = app
        .request(Method::DELETE, &format!("/eureka/apps/{APP}/{id}"), None)
        .await;
    assert_eq!(deleted.status(), 200);
    assert_eq!(instance_status(&app, &id).await, 404);
    app.wait_until(|| async { instance_status(&app, &id).await == 200 })
        .await;
    app.wait_until(|| listed_up(&app, &id)).await;

    // Closing stdin stops the client: it cancels, and the instance is gone.
    drop(child.stdin.take());
    expect_line(&mut lines, "stopped").await;
    assert!(child.wait().await.expect("exit").success());
    assert_eq!(instance_status(&app, &id).await, 404);
    app.shutdown().await;
}
