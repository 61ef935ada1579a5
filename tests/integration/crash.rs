//! kill -9 right after a burst of acknowledged orders, then a restart on the same data
//! directory: every acknowledged order and stock level is there, and every placed order's
//! notification shows up exactly once. The same after a kill while the outbox holds events
//! whose Kafka producer was rebuilt.

use agora::broker::EmbeddedBroker;
use futures::future::join_all;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
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

/// kill -9 while the outbox holds events whose producer was rebuilt (the broker answered every
/// produce request with the idempotent producer's `UNKNOWN_PRODUCER_ID`), then the broker heals
/// and the node restarts on the same data directory: every event is delivered and recorded
/// exactly once. The broker lives in this test process, so it outlives the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_held_across_a_producer_rebuild_survive_kill_9() {
    let broker = EmbeddedBroker::start("notificationTopic").expect("a broker starts");
    let brokers = broker.bootstrap_servers();
    let env = [("AGORA_KAFKA_BROKERS", brokers.as_str())];
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_process(dir.path(), &env).await;
    app.product("r1", 2.0, 100).await;
    let fenced = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID; 1000];
    broker
        .request_errors(RDKafkaApiKey::Produce, &fenced)
        .expect("errors injected");
    let mut numbers = Vec::new();
    for _ in 0..5 {
        let response = app.order(&[("r1", 1)]).await;
        assert_eq!(response.status().as_u16(), 201);
        let order: Value = response.json().await.unwrap();
        numbers.push(order["orderNumber"].as_str().unwrap().to_owned());
    }
    app.wait_until(|| async {
        app.metric("agora_kafka_producer_rebuilds_total").await >= 1.0
            && app.metric("agora_outbox_depth").await >= 5.0
    })
    .await;
    app.kill9();

    broker
        .clear_request_errors(RDKafkaApiKey::Produce)
        .expect("errors cleared");
    let app = TestApp::spawn_process(dir.path(), &env).await;
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    let counts = app.wait_for_placed(&numbers).await;
    assert!(
        counts.values().all(|n| *n == 1),
        "every notification exactly once: {counts:?}"
    );
    assert_eq!(counts.len(), numbers.len());
    app.kill9();
}
