//! kill -9 right after a burst of acknowledged orders, then a restart on the same data
//! directory: every acknowledged order and stock level is there, and every placed order's
//! notification shows up exactly once.

use futures::future::join_all;
use serde_json::Value;

use super::support::{sold, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_orders_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_process(dir.path(), &[]).await;
    const SKUS: [&str; 3] = ["k1", "k2", "k3"];
    for sku in SKUS {
        app.product(sku, 3.0, 1000).await;
    }
    let burst = join_all((0..120).map(|i| {
        let app = &app;
        async move {
            let response = app.order(&[(SKUS[i % 3], 1 + (i % 4) as u32)]).await;
            (
                response.status().as_u16(),
                response.json::<Value>().await.ok(),
            )
        }
    }))
    .await;
    let acked: Vec<Value> = burst
        .into_iter()
        .filter(|(status, _)| *status == 201)
        .filter_map(|(_, body)| body)
        .collect();
    assert_eq!(acked.len(), 120, "every order of the burst had stock");
    app.kill9();

    let app = TestApp::spawn_process(dir.path(), &[]).await;
    for order in &acked {
        let number = order["orderNumber"].as_str().unwrap();
        assert_eq!(
            &app.json(&format!("/api/order/{number}")).await,
            order,
            "order {number} survived"
        );
    }
    let sold = sold(&acked);
    for sku in SKUS {
        assert_eq!(
            app.stock(sku).await + sold[sku],
            1000,
            "stock + sold = initial for {sku}"
        );
    }
    let numbers: Vec<&str> = acked
        .iter()
        .map(|o| o["orderNumber"].as_str().unwrap())
        .collect();
    let counts = app.wait_for_placed(&numbers).await;
    assert!(
        counts.values().all(|n| *n == 1),
        "every notification exactly once: {counts:?}"
    );
    assert_eq!(counts.len(), acked.len());
    app.kill9();
}
