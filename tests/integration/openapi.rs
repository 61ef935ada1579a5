//! The OpenAPI document (`GET /openapi.json`) against a live node: every operation it lists is
//! routed, a method no route takes gets its 405 with `Allow`, and schemathesis (PyPI, pinned in
//! the test support) fuzzes every operation and finds no server error and no answer the document
//! does not describe. schemathesis comes with `agora_python()` (`AGORA_PYTHON`, or the virtualenv
//! the test support makes on first use); without it that test fails, saying what is missing.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use tokio::process::Command;

use super::support::{agora_python, TestApp};

/// What schemathesis checks on every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_headers_conformance,response_schema_conformance";

/// Test cases per operation and phase: about 1,300 requests in all, in 10 to 15 s.
const MAX_EXAMPLES: &str = "25";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let app = TestApp::spawn().await;
    let doc = app.json("/openapi.json").await;
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 20, "only {} paths", paths.len());
    for (template, item) in paths {
        // Any value fits a path parameter as far as routing goes.
        let path = template
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        for method in item.as_object().expect("path item").keys() {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let body = [Method::POST, Method::PUT]
                .contains(&method)
                .then(|| json!({}));
            let response = app.request(method.clone(), &path, body).await;
            let status = response.status();
            assert_ne!(status, 405, "{method} {path}");
            if status == 404 {
                let body: Value = response.json().await.unwrap_or_default();
                assert_ne!(
                    body["message"], "no route matches this path",
                    "{method} {path}"
                );
            }
        }
    }
    let refused = app.request(Method::TRACE, "/api/product/x", None).await;
    assert_eq!(refused.status(), 405);
    assert_eq!(refused.headers()["allow"], "DELETE, GET, PUT");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let python = agora_python();
    let app = TestApp::spawn().await;
    // schemathesis keeps its example database in the working directory.
    let scratch = tempfile::tempdir().expect("temp dir");
    let run = Command::new(python.with_file_name("st"))
        .arg("run")
        .arg(format!("{}/openapi.json", app.base))
        .args(["--checks", CHECKS, "--max-examples", MAX_EXAMPLES])
        // The event stream never ends: there is no whole answer to check.
        .args(["--exclude-path", "/api/notifications/stream"])
        // The same cases each run; other tests share the machine, so no deadline per case.
        .args(["--seed", "20240601", "--suppress-health-check", "all"])
        // One worker: CPython 3.11's ast.parse, which hypothesis calls, is not thread-safe
        // ("AST constructor recursion depth mismatch").
        .args(["--workers", "1", "--request-timeout", "20", "--no-color"])
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis finishes within 300 s")
        .expect("schemathesis starts (its `st` is beside the python)");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis failed ({}):\n{report}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "nothing was tested:\n{report}");
    app.shutdown().await;
}
