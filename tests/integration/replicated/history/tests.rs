//! Self-tests of `history`.

use super::check::Check;
use super::*;

const SKU: &str = "h-0";

fn op(number: Option<&str>, (start, end): (u64, u64), outcome: Outcome) -> Op {
    let (start, end) = (Duration::from_millis(start), Duration::from_millis(end));
    let (node, sku, number) = (
        "http://n1".to_owned(),
        SKU.to_owned(),
        number.map(Into::into),
    );
    Op {
        client: 0,
        node,
        sku,
        number,
        start,
        end,
        outcome,
    }
}

fn read(times: (u64, u64), value: i64) -> Op {
    op(None, times, Outcome::Stock(value))
}

/// Stock 10: o1 placed, o2 unknown (503) and kept, o3 unknown (no answer) and not kept,
/// o4 refused; a read while o2 ran, and one after.
fn clean() -> Vec<Op> {
    let timeout = Outcome::Indeterminate("timed out".to_owned());
    vec![
        op(Some("o1"), (0, 10), Outcome::Placed),
        op(Some("o2"), (5, 20), Outcome::Unavailable),
        op(Some("o3"), (6, 8), timeout),
        op(Some("o4"), (7, 9), Outcome::Refused),
        read((12, 14), 9),
        read((30, 31), 8),
    ]
}

/// The checks that find anomalies in `ops` with `orders` listed, `stock` left and an
/// `OrderPlaced` for each of `placed`.
fn found(ops: &[Op], orders: &[&str], stock: i64, placed: &[&str]) -> Vec<Check> {
    let order = |n| json!({"orderNumber": n, "lines": [{"skuCode": SKU, "quantity": 1}]});
    let event = |n| json!({"orderNumber": n, "eventType": "OrderPlaced"});
    let state = Final {
        orders: orders.iter().map(order).collect(),
        stock: [(SKU.to_owned(), stock)].into(),
        notifications: placed.iter().map(event).collect(),
    };
    let anomalies = check(ops, &[(SKU.to_owned(), 10)].into(), &state);
    anomalies.iter().map(|a| a.check).collect()
}

fn with(extra: Op) -> Vec<Op> {
    let mut ops = clean();
    ops.push(extra);
    ops
}

#[test]
fn a_clean_history_passes() {
    let kept = ["o1", "o2"];
    assert_eq!(found(&clean(), &kept, 8, &kept), []);
    let summary = format!("{:?}", Summary::of(&clean()));
    let expected = "Summary { ops: 6, placed: 1, refused: 1, unavailable: 1, \
                    indeterminate: 1, reads: 2, reads_failed: 0 }";
    assert_eq!(summary, expected);
}

#[test]
fn each_anomaly_is_found() {
    use Check::*;
    let (kept, with_o4) = (["o1", "o2"], ["o1", "o2", "o4"]);
    let lost = found(&clean(), &["o2"], 9, &["o2"]);
    assert_eq!(lost, [Lost], "an acknowledged order lost");
    let refused_kept = found(&clean(), &with_o4, 7, &with_o4);
    assert_eq!(refused_kept, [RefusedListed]);
    let stale = found(&with(read((25, 26), 10)), &kept, 8, &kept);
    // Not also Monotonic: the release of o3's reservation (unknown outcome) could explain
    // a read one higher than an earlier one.
    assert_eq!(stale, [Read], "a read missing an acknowledged order");
    let mut certain: Vec<Op> = clean()
        .into_iter()
        .filter(|o| o.number.as_deref() != Some("o3"))
        .collect();
    certain.push(read((40, 41), 9));
    let higher = found(&certain, &kept, 8, &kept);
    assert_eq!(higher, [Monotonic], "a read higher than an earlier one");
    let doubled = found(&clean(), &kept, 8, &["o1", "o2", "o1"]);
    assert_eq!(doubled, [RepeatedEvent]);
    let mismatch = found(&clean(), &kept, 7, &kept);
    assert_eq!(mismatch, [Stock], "a unit of stock unaccounted for");
    let error = Outcome::Unexpected("500".to_owned());
    let unexpected = found(&with(op(Some("o5"), (50, 51), error)), &kept, 8, &kept);
    assert_eq!(unexpected, [Answer], "an answer no order may get");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_through_a_node_verifies() {
    let app = TestApp::spawn().await;
    app.product("h-1", 2.5, 2).await;
    let history = History::new("a_history_through_a_node_verifies", 7);
    for client in 0..3 {
        history.order(client, &app, "h-1").await;
    }
    assert_eq!(history.read_stock(0, &app, "h-1").await, Outcome::Stock(0));
    history.note(Instant::now(), "no fault");
    let summary = history.verify(&app, &[("h-1".to_owned(), 2)].into()).await;
    let counts = (summary.ops, summary.placed, summary.refused, summary.reads);
    assert_eq!(counts, (4, 2, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "replay with AGORA_NEMESIS_SEED=7")]
async fn a_lost_order_fails_verify_with_its_seed() {
    let app = TestApp::spawn().await;
    app.product("h-2", 2.5, 1).await;
    let history = History::new("a_lost_order_fails_verify_with_its_seed", 7);
    let lost = history.begin(0, &app, "h-2", Some(OrderNumber::new().to_string()));
    history.end(lost, Outcome::Placed);
    history.verify(&app, &[("h-2".to_owned(), 1)].into()).await;
}
