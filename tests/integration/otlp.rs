//! OTLP span export: a real `agora` process started with `AGORA_OTLP_ENDPOINT` pointing at a
//! small collector in this test (a warp server that records what is POSTed to `/v1/traces`)
//! sends the span of a request there. A child process, because the tracing subscriber is global
//! and set once per process.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use warp::Filter;

use super::support::{serve_locally, TestApp};

/// One export the collector received: its content type and body.
type Export = (Option<String>, Bytes);

/// Starts the collector; returns its base URL and what it receives.
async fn collector() -> (String, mpsc::UnboundedReceiver<Export>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let traces = warp::path!("v1" / "traces")
        .and(warp::post())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::bytes())
        .map(move |content_type, body| {
            let _ = tx.send((content_type, body));
            warp::reply()
        });
    let url = format!("http://{}", serve_locally(traces.boxed()).await);
    (url, rx)
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_reach_the_otlp_collector() {
    let (url, mut exports) = collector().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let env = [
        ("AGORA_OTLP_ENDPOINT", url.as_str()),
        // Export every 100 ms instead of every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let app = TestApp::spawn_process(dir.path(), &env).await;
    assert_eq!(app.get("/api/product").await.status(), 200);
    let received = async {
        loop {
            let (content_type, body) = exports.recv().await.expect("the collector runs");
            // A span (protobuf keeps strings as they are) of this request, not of /health.
            if contains(&body, "/api/product") {
                return (content_type, body);
            }
        }
    };
    let (content_type, body) = tokio::time::timeout(Duration::from_secs(30), received)
        .await
        .expect("the request's span is exported within 30 s");
    assert_eq!(content_type.as_deref(), Some("application/x-protobuf"));
    assert!(contains(&body, "request"), "the span's name");
    assert!(contains(&body, "agora"), "the service name");
}
