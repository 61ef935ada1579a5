//! Storage and codec micro-benchmarks: a durable write with group commit (64 concurrent writers
//! share flushes) against flush-per-write, and encode/decode of a stored order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use agora::codec;
use agora::domain::{
    Order, OrderLine, OrderNumber, OrderStatus, PendingChange, Price, Sku, StockLevel,
};
use agora::storage::Storage;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const WRITERS: u64 = 64;

fn order() -> Order {
    let line = |sku: &str| OrderLine {
        sku: Sku::parse(sku).unwrap(),
        price: Price::from_cents(1999).unwrap(),
        quantity: 2,
    };
    Order {
        number: OrderNumber::new(),
        status: OrderStatus::Placed,
        lines: vec![line("iphone_13"), line("case"), line("charger")],
        total: Price::from_cents(11994).unwrap(),
        created_ms: 1,
        fingerprint: 7,
        restocked: true,
        saga: Default::default(),
    }
}

/// Writes `level` under the big-endian `i`, as this benchmark always has (the key only has to
/// differ per writer).
fn put_stock(storage: &Storage, i: u64, level: &StockLevel) {
    let bytes = codec::encode(level).unwrap();
    storage
        .stock
        .sled_tree()
        .insert(i.to_be_bytes(), bytes)
        .unwrap();
}

fn durable_writes(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = rt.block_on(async { Storage::open(dir.path()).unwrap() });
    // Every write stores a new value: sled skips rewriting an unchanged record, and a flush
    // with nothing to write would measure nothing.
    let round = AtomicU32::new(0);
    let level = |i: u64| StockLevel {
        sku: Sku::parse(&format!("s{i}")).unwrap(),
        quantity: round.fetch_add(1, Ordering::Relaxed),
        pending: BTreeMap::new(),
    };
    let mut group = c.benchmark_group("durable_write");
    group.throughput(Throughput::Elements(WRITERS));
    group.bench_function("group_commit_64_writers", |b| {
        b.to_async(&rt).iter(|| async {
            let writes = (0..WRITERS).map(|i| {
                let (storage, record) = (storage.clone(), level(i));
                async move {
                    put_stock(&storage, i, &record);
                    storage.durable().await.unwrap();
                }
            });
            futures::future::join_all(writes).await;
        })
    });
    group.bench_function("flush_per_write_64_writes", |b| {
        b.iter(|| {
            for i in 0..WRITERS {
                put_stock(&storage, i, &level(i));
                storage.flush_now().unwrap();
            }
        })
    });
    group.finish();
}

/// The storage work of one placed 1-line order and its notification, without HTTP, actors or
/// Kafka: reserve (stock write), the outbox event and the order, a durable flush, settle (stock
/// write), the outbox entry removed once sent, then the seen-event id and the notification and
/// a second durable flush. 64 orders run at once and share flushes, as they do under load: this
/// is the bound sled puts on the order path.
///
/// `with_transactions` writes the two pairs in sled transactions instead, as agora did before.
/// A transaction takes sled's process-wide write lock, which waits for any flush in progress
/// (a flush holds the read side while it writes and syncs), and every later operation queues
/// behind it. The first transaction switches that lock on for the life of the process, so the
/// plain variant must run first.
fn order_storage_bound(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = rt.block_on(async { Storage::open(dir.path()).unwrap() });
    let payload = "x".repeat(300);
    let mut group = c.benchmark_group("order_storage");
    group.throughput(Throughput::Elements(WRITERS));
    for (name, transactions) in [("plain_writes", false), ("with_transactions", true)] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let orders = (0..WRITERS).map(|i| {
                    let (storage, payload) = (storage.clone(), payload.clone());
                    tokio::spawn(async move {
                        place_and_record(&storage, i % 1000, &payload, transactions).await
                    })
                });
                futures::future::join_all(orders).await;
            })
        });
    }
    group.finish();
}

/// Writes `a` then `b`, or both in one transaction (measured here on purpose).
#[allow(clippy::disallowed_methods)]
fn write_pair(
    (tree_a, key_a, a): (&sled::Tree, &[u8], &[u8]),
    (tree_b, key_b, b): (&sled::Tree, &[u8], &[u8]),
    transaction: bool,
) {
    use sled::Transactional;
    if transaction {
        (tree_a, tree_b)
            .transaction(|(ta, tb)| {
                ta.insert(key_a, a)?;
                tb.insert(key_b, b)?;
                Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
            })
            .unwrap();
    } else {
        tree_a.insert(key_a, a).unwrap();
        tree_b.insert(key_b, b).unwrap();
    }
}

async fn place_and_record(storage: &Storage, sku: u64, payload: &str, transactions: bool) {
    let order = order();
    let mut level = StockLevel {
        sku: Sku::parse(&format!("p{sku}")).unwrap(),
        quantity: 1_000_000,
        pending: BTreeMap::new(),
    };
    level.pending.insert(
        order.number,
        PendingChange::Reserved {
            quantity: 1,
            saga: Default::default(),
        },
    );
    storage.stock.put(&level.sku, &level).unwrap();
    let event = storage.next_id().unwrap().to_be_bytes();
    let order_bytes = codec::encode(&order).unwrap();
    let (outbox, orders) = (storage.outbox.sled_tree(), storage.orders.sled_tree());
    write_pair(
        (outbox, &event, payload.as_bytes()),
        (orders, order.number.as_bytes(), &order_bytes),
        transactions,
    );
    storage.durable().await.unwrap();
    level.pending.clear();
    storage.stock.put(&level.sku, &level).unwrap();
    outbox.remove(event).unwrap();
    let seq = storage.next_id().unwrap().to_be_bytes();
    let seen = format!("{}/OrderPlaced", order.number);
    write_pair(
        (storage.seen_events.sled_tree(), seen.as_bytes(), &seq),
        (
            storage.notifications::<String>().sled_tree(),
            &seq,
            payload.as_bytes(),
        ),
        transactions,
    );
    storage.durable().await.unwrap();
}

fn codec_round_trip(c: &mut Criterion) {
    let order = order();
    let bytes = codec::encode(&order).unwrap();
    c.bench_function("codec/encode_order", |b| {
        b.iter(|| codec::encode(&order).unwrap())
    });
    c.bench_function("codec/decode_order", |b| {
        b.iter(|| codec::decode::<Order>(&bytes).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = durable_writes, order_storage_bound, codec_round_trip
}
criterion_main!(benches);
