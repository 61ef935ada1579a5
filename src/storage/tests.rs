//! Tests of the database handle: the outbox mark, reopening, corruption, key encodings.

use super::*;
use crate::domain::{EventType, Price};

/// An event of an order with no lines.
fn event() -> OrderEvent {
    let order = Order {
        number: OrderNumber::new(),
        status: crate::domain::OrderStatus::Placed,
        lines: Vec::new(),
        total: Price::from_cents(1).unwrap(),
        created_ms: 0,
        fingerprint: 0,
        restocked: false,
        saga: Default::default(),
    };
    OrderEvent::for_order(&order, EventType::OrderPlaced, 0)
}

#[tokio::test]
async fn an_outbox_event_counts_as_durable_only_after_a_flush() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    let first = storage.put_event(&event(), || Ok(())).unwrap();
    assert!(!storage.is_durable_event(first));
    storage.durable().await.unwrap();
    assert!(storage.is_durable_event(first));
    let second = storage.put_event(&event(), || Ok(())).unwrap();
    assert!(second > first && !storage.is_durable_event(second));
}

#[tokio::test]
async fn records_survive_reopen_and_corruption_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // Any key and record types will do: this tests the table, not the products.
    let products = |storage: &Storage| {
        Table::<String, String>::new(storage.db.open_tree("products").unwrap(), TableId::Products)
    };
    let (a, bad) = (String::from("a"), Sku::parse("bad").unwrap());
    {
        let storage = Storage::open(dir.path()).unwrap();
        products(&storage).put(&a, &String::from("x")).unwrap();
        storage
            .stock
            .put_encoded(&bad, vec![1u8, 0xff, 0xff])
            .unwrap();
        let joined = futures::future::join_all((0..8).map(|_| storage.durable())).await;
        assert!(joined.iter().all(Result::is_ok));
    }
    // The old handle's flusher releases sled's lock when it notices the handle is gone.
    let storage = loop {
        match Storage::open(dir.path()) {
            Ok(storage) => break storage,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    assert_eq!(products(&storage).get(&a).unwrap(), Some("x".into()));
    let err = storage.stock.get(&bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("corrupt record in stock at key bad"),
        "{err}"
    );
    assert_eq!(products(&storage).scan(Some(&a), 10).unwrap().len(), 0);
}

#[test]
fn keys_keep_their_bytes() {
    let sku = Sku::parse("case").unwrap();
    assert_eq!(sku.encode().as_ref(), b"case");
    assert_eq!(Sku::decode(b"case"), Some(sku));
    assert_eq!(7u64.encode().as_ref(), 7u64.to_be_bytes());
    assert_eq!(u64::decode(&7u64.to_be_bytes()), Some(7));
    let number = OrderNumber::new();
    assert_eq!(number.encode().as_ref(), number.as_bytes());
    assert_eq!(OrderNumber::decode(number.as_bytes()), Some(number));
    let id = ProductId::for_sku(&Sku::parse("case").unwrap());
    assert_eq!(id.encode().as_ref(), id.as_bytes());
    assert_eq!(ProductId::decode(id.as_bytes()), Some(id));
    assert_eq!(u64::decode(b"short"), None);
}

#[tokio::test]
async fn an_older_directory_gets_its_indexes_built_once() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(dir.path()).unwrap();
    // As a build before the indexes wrote them: a pending change, a cancel not restocked.
    let (sku, settled) = (Sku::parse("held").unwrap(), Sku::parse("settled").unwrap());
    let number = OrderNumber::new();
    let change = crate::domain::PendingChange::Returned(1);
    for (sku, pending) in [(&sku, vec![(number, change)]), (&settled, vec![])] {
        let level = StockLevel {
            sku: sku.clone(),
            quantity: 1,
            pending: pending.into_iter().collect(),
        };
        storage.stock.put(sku, &level).unwrap();
    }
    let mut cancelled = crate::test_support::empty_order(number);
    cancelled.status = crate::domain::OrderStatus::Cancelled;
    storage.orders.put(&number, &cancelled).unwrap();
    storage
        .orders
        .put(
            &OrderNumber::new(),
            &crate::test_support::empty_order(OrderNumber::new()),
        )
        .unwrap();
    assert!(storage.index_unsettled().unwrap(), "built");
    let indexed: Vec<Sku> = (storage.pending_stock.scan(None, 10).unwrap())
        .into_iter()
        .map(|(sku, ())| sku)
        .collect();
    assert_eq!(indexed, [sku]);
    assert_eq!(storage.unrestocked.scan(None, 10).unwrap(), [(number, ())]);
    assert!(!storage.index_unsettled().unwrap(), "once");
}
