//! Tests of the notification service and the notifier against the embedded broker.

use super::*;
use crate::actors::notifier::tests::{event, Pipeline};
use crate::health::Status;

#[test]
fn events_parse_with_defaults_and_bad_ones_are_refused() {
    let full = br#"{"eventId":"e1","eventType":"OrderCancelled","orderNumber":"o1"}"#;
    let event = parse_event(Some(full)).unwrap();
    assert_eq!(
        (
            event.event_id.as_str(),
            event.event_type.as_str(),
            event.order_number.as_str()
        ),
        ("e1", "OrderCancelled", "o1")
    );
    let bare = parse_event(Some(br#"{"eventId":"e2","orderNumber":"o2"}"#)).unwrap();
    assert_eq!(bare.event_type, "OrderPlaced");
    for bad in [
        &b"{\"orderNumber\":\"o\"}"[..],
        b"{\"eventId\":\"e\"}",
        b"not json",
        b"\xff",
    ] {
        assert!(parse_event(Some(bad)).is_err(), "{bad:?}");
    }
    assert!(parse_event(None).is_err());
}

#[test]
fn records_render_their_payload_as_json() {
    let record = NotificationRecord {
        seq: 7,
        event_id: "e".into(),
        event_type: "OrderPlaced".into(),
        order_number: "o".into(),
        received_ms: 5,
        payload: r#"{"orderNumber":"o"}"#.into(),
    };
    let json = serde_json::to_value(record.to_json()).unwrap();
    assert_eq!(json["event"]["orderNumber"], "o");
    assert_eq!(json["seq"], 7);
    assert_eq!(json["receivedAt"], 5);
    let bytes = storage::encode(&record).unwrap();
    assert_eq!(
        crate::codec::decode::<NotificationRecord>(&bytes).unwrap(),
        record
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_reaches_the_notification_service_once() {
    let p = Pipeline::start("once").await;
    let mut feed = ractor::call!(p.service, NotificationMsg::Subscribe).unwrap();
    let sent = event();
    p.put(&sent).await;
    // The depth gauge refreshes once a tick, so it is polled too.
    p.until("the event is recorded and the outbox is empty", || async {
        p.records().await.len() == 1
            && p.storage.outbox.is_empty()
            && p.metrics.outbox_depth.get() == 0
    })
    .await;
    let record = &p.records().await[0];
    assert_eq!(record.event_id, sent.event_id.to_string());
    assert_eq!(record.order_number, sent.order_number.to_string());
    assert_eq!(record.to_json().event, sent.to_json());
    assert_eq!(feed.recv().await.unwrap(), *record);
    assert_eq!(p.metrics.kafka_delivered.get(), 1);
    assert_eq!(p.notifier_health().await.status, Status::Up);
    let health = ractor::call!(p.service, NotificationMsg::Health).unwrap();
    assert_eq!(health.status, Status::Up, "{}", health.detail);
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_twice_is_recorded_once() {
    let p = Pipeline::start("twice").await;
    let sent = event();
    p.put(&sent).await;
    p.put(&sent).await;
    p.until("both copies are consumed", || async {
        p.metrics.notifications_received.get() + p.metrics.notifications_duplicate.get() == 2
    })
    .await;
    assert!(p.storage.outbox.is_empty());
    assert_eq!(p.records().await.len(), 1);
    assert_eq!(p.metrics.notifications_duplicate.get(), 1);
    p.stop().await;
}
