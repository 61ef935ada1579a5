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

/// Orders one unit of `sku`; returns the order number.
async fn order_one(app: &TestApp, sku: &str) -> String {
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
    app.product("kcat", 5.0, 10).await;
    let number = order_one(&app, "kcat").await;
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

/// B (`--kafka-brokers` = A's embedded broker) produces its order events to A's broker. Both
/// nodes consume the topic in the same group, `notificationId`, so the topic's three partitions
/// are split between them, and an event goes to the node that holds its partition (the key, the
/// order number, picks the partition). Right after B starts, A still holds every partition and
/// B's events show up in A's list; once B's join has made the group rebalance, B's consumer reads
/// its share back. Delivery is at least once, and each node deduplicates by `eventId` only in its
/// own store: an event A consumed just before the rebalance handed its partition to B, before A's
/// offset commit, is read again by B. Measured: usually each event is in exactly one node's list,
/// sometimes the one event in flight during the rebalance is in both. So the test asserts that
/// every event reaches at least one node, that B's own consumer gets events, and that the topic
/// holds each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_agora_uses_the_first_ones_broker() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestApp::spawn_process(dir_a.path(), &[]).await;
    let b = TestApp::spawn_process(
        dir_b.path(),
        &[
            ("AGORA_KAFKA_BROKERS", &a.kafka_brokers),
            ("AGORA_NODE", "node2"),
        ],
    )
    .await;
    assert_eq!(b.kafka_brokers, a.kafka_brokers, "B reports A's broker");
    b.product("ext", 1.0, 10_000).await;

    // Orders on B until one comes back through B's own consumer.
    let numbers = std::sync::Mutex::new(Vec::new());
    b.wait_until(|| async {
        let number = order_one(&b, "ext").await;
        numbers.lock().unwrap().push(number.clone());
        b.wait_until(|| async {
            has_order(&a.notifications().await, &number)
                || has_order(&b.notifications().await, &number)
        })
        .await;
        has_order(&b.notifications().await, &number)
    })
    .await;

    let numbers = numbers.into_inner().unwrap();
    let (in_a, in_b) = (a.notifications().await, b.notifications().await);
    for number in &numbers {
        assert!(
            has_order(&in_a, number) || has_order(&in_b, number),
            "{number} is consumed"
        );
    }
    let on_topic = kcat(&a.kafka_brokers, "notificationTopic");
    assert_eq!(
        on_topic.len(),
        numbers.len(),
        "every event is on A's broker once"
    );
}
