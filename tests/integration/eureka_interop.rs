//! py-eureka-client (PyPI, 0.13.3) against agora's registry: a small Python HTTP service
//! (`tests/interop/eureka_client.py`) registers, renews, fetches full and delta registries as XML,
//! discovers itself and calls itself; a deleted instance is re-registered after its renew gets
//! 404; on stop the client cancels. Needs the virtualenv `.ci/run` makes, found through
//! `AGORA_PYTHON`; without it the test says so and passes. `gateway_routes` starts its Python
//! services with the helpers here ([`start_script`], [`expect_line`]).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use super::support::{agora_python, TestApp};

const APP: &str = "INTEROP-SVC";

/// Reads the script's lines until one starts with `prefix`; returns the rest of it.
pub(super) async fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    let read = async {
        while let Some(line) = lines.next_line().await.expect("script output") {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
        panic!("the script ended before printing {prefix:?}");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("no {prefix:?} line within 60 s"))
}

/// Runs `tests/interop/{script}` with `python`, the registry URL of `app` and `args`, and reads
/// its output lines; closing its stdin stops it, and so does dropping it.
pub(super) fn start_script(
    python: &Path,
    script: &str,
    app: &TestApp,
    args: &[&str],
) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(python)
        .arg(format!(
            "{}/tests/interop/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(format!("{}/eureka/", app.base))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    (child, lines)
}

/// Whether the instance is UP in the JSON and the XML registry and on the dashboard.
async fn listed_up(app: &TestApp, id: &str) -> bool {
    let json: Value = app
        .client
        .get(format!("{}/eureka/apps", app.base))
        .header("accept", "application/json")
        .send()
        .await
        .expect("answered")
        .json()
        .await
        .expect("JSON registry");
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
    let Some(python) = agora_python("py-eureka-client") else {
        return;
    };
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
