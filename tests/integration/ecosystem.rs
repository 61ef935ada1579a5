//! Agora among standard tools: kcat reads the order events from the embedded broker, and a
//! second agora process uses the first one's broker as its external Kafka.

use std::process::Command;

use serde_json::Value;

use super::support::TestApp;

/// Every message on `topic`, as `(key, value)`, read by kcat until the end of each partition.
fn kcat(brokers: &str, topic: &str) -> Vec<(String, Value)> {
    let output = Command::new("kcat")
        .args([
            "-b", brokers, "-t", topic, "-C", "-e", "-q", "-f", "%k %s\\n",
        ])
        .output()
        .expect("kcat runs (apt-get install kcat; .ci/run installs it)");
    assert!(
        output.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("UTF-8")
        .lines()
        .map(|line| {
            let (key, value) = line.split_once(' ').expect("key and value");
            (
                key.to_owned(),
                serde_json::from_str(value).expect("JSON event"),
            )
        })
        .collect()
}

async fn place_order(app: &TestApp, sku: &str) -> String {
    app.product(sku, 5.0, 10).await;
    let response = app.order(&[(sku, 1)]).await;
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.expect("JSON body");
    order["orderNumber"]
        .as_str()
        .expect("orderNumber")
        .to_owned()
}

fn has_order(notifications: &[Value], number: &str) -> bool {
    notifications.iter().any(|n| n["orderNumber"] == number)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kcat_reads_the_order_events() {
    let app = TestApp::spawn().await;
    let number = place_order(&app, "kcat").await;
    // Once the notification service has it, the event is on the topic.
    app.wait_until(|| async { has_order(&app.notifications().await, &number) })
        .await;

    let messages = kcat(&app.kafka_brokers, "notificationTopic");
    let (key, event) = messages
        .iter()
        .find(|(_, event)| event["orderNumber"] == number.as_str())
        .unwrap_or_else(|| panic!("order {number} not among {messages:?}"));
    assert_eq!(key, &number, "the message key is the order number");
    assert_eq!(event["eventType"], "OrderPlaced");
    assert!(event["eventId"].as_str().is_some_and(|id| !id.is_empty()));
    app.shutdown().await;
}
