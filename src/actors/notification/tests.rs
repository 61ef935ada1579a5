//! Tests of how the notification service reads Kafka messages and stores its records. The
//! tests of the whole path, through the notifier and the embedded broker to the records, are
//! the notifier's (`notifier/tests.rs`), so that this side never reaches into the notifier.

use super::*;

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
fn records_round_trip_through_the_codec() {
    let record = NotificationRecord {
        seq: 7,
        event_id: "e".into(),
        event_type: "OrderPlaced".into(),
        order_number: "o".into(),
        received_ms: 5,
        payload: r#"{"orderNumber":"o"}"#.into(),
    };
    let bytes = crate::codec::encode(&record).unwrap();
    assert_eq!(
        crate::codec::decode::<NotificationRecord>(&bytes).unwrap(),
        record
    );
}
