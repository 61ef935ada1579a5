//! The saga rules of [`StockLevel`], with two sagas of one order at work.

use super::*;

fn level(quantity: u32) -> StockLevel {
    StockLevel {
        sku: Sku::parse("a").unwrap(),
        quantity,
        pending: BTreeMap::new(),
    }
}

fn saga(term: u64, seq: u64) -> SagaId {
    SagaId { term, seq }
}

#[test]
fn a_saga_reserves_once_and_its_release_gives_back() {
    let (mut stock, order) = (level(5), OrderNumber::new());
    assert_eq!(stock.reserve(order, 2, saga(1, 1)), Ok(true));
    assert_eq!(stock.reserve(order, 2, saga(1, 1)), Ok(false), "idempotent");
    assert_eq!(stock.quantity, 3);
    let other = OrderNumber::new();
    assert_eq!(stock.reserve(other, 4, saga(1, 2)), Err(Refusal::Short));
    assert!(stock.release(order, saga(1, 1)));
    assert!(!stock.release(order, saga(1, 1)));
    assert_eq!((stock.quantity, stock.pending.len()), (5, 0));
}

#[test]
fn a_newer_saga_takes_over_and_the_older_changes_nothing() {
    // A newer term, and a later saga of the same term (a retry on the same leader).
    for (old, new) in [(saga(1, 9), saga(2, 1)), (saga(1, 1), saga(1, 2))] {
        let (mut stock, order) = (level(5), OrderNumber::new());
        stock.reserve(order, 2, old).unwrap();
        assert_eq!(
            stock.reserve(order, 2, new),
            Ok(true),
            "taken over, not twice"
        );
        assert_eq!(stock.quantity, 3);
        assert_eq!(stock.reserve(order, 2, old), Err(Refusal::Superseded));
        assert!(
            !stock.release(order, old),
            "a late release of the older saga"
        );
        assert_eq!(stock.quantity, 3);
        assert!(stock.settle(order, new));
        assert_eq!((stock.quantity, stock.pending.len()), (3, 0));
    }
}

#[test]
fn a_retry_that_asks_another_quantity_takes_that_quantity() {
    let (mut stock, order) = (level(5), OrderNumber::new());
    stock.reserve(order, 2, saga(1, 1)).unwrap();
    assert_eq!(stock.reserve(order, 4, saga(1, 2)), Ok(true));
    assert_eq!(stock.quantity, 1);
    assert_eq!(stock.reserve(order, 7, saga(1, 3)), Err(Refusal::Short));
    assert!(
        stock.release(order, saga(1, 3)),
        "a newer saga frees an older one's hold"
    );
    assert_eq!(stock.quantity, 5);
}

#[test]
fn a_late_reserve_of_an_older_saga_is_given_back_at_settle() {
    let (mut stock, order) = (level(5), OrderNumber::new());
    let (old, placer) = (saga(1, 1), saga(2, 1));
    stock.reserve(order, 2, placer).unwrap();
    stock.settle(order, placer);
    // The older saga's request arrives after the order was placed and settled.
    assert_eq!(stock.reserve(order, 2, old), Ok(true));
    assert_eq!(stock.quantity, 1);
    assert!(stock.settle(order, placer));
    assert_eq!((stock.quantity, stock.pending.len()), (3, 0));
}

#[test]
fn a_cancel_returns_once_and_frees_a_stale_hold() {
    let (mut stock, order) = (level(5), OrderNumber::new());
    let placer = saga(2, 1);
    stock.reserve(order, 2, placer).unwrap();
    assert!(stock.give_back(order, 2, placer));
    assert!(!stock.give_back(order, 2, placer));
    assert_eq!(stock.quantity, 5);
    stock.settle(order, placer);
    let (mut stale, placed) = (level(3), OrderNumber::new());
    stale.reserve(placed, 1, saga(1, 1)).unwrap();
    assert!(stale.give_back(placed, 2, placer));
    assert_eq!(
        stale.quantity, 5,
        "a stale hold and the cancelled units both come back"
    );
}

/// Every interleaving of an older saga's reserve and release with the placing saga's reserve,
/// and the older saga's steps again after the settle: stock + units sold = initial.
#[test]
fn two_sagas_in_any_order_keep_the_units_whole() {
    let (old, placer) = (saga(1, 1), saga(2, 1));
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for steps in orders {
        let (mut stock, order) = (level(3), OrderNumber::new());
        for step in steps {
            match step {
                0 => _ = stock.reserve(order, 2, old),
                1 => _ = stock.release(order, old),
                _ => assert!(stock.reserve(order, 2, placer).is_ok()),
            }
        }
        stock.settle(order, placer);
        let _ = stock.reserve(order, 2, old);
        stock.release(order, old);
        let _ = stock.reserve(order, 2, old);
        stock.settle(order, placer);
        assert_eq!(stock.quantity + 2, 3, "{steps:?}");
        assert!(stock.pending.is_empty(), "{steps:?}");
    }
}
