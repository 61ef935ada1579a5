//! Storage and codec micro-benchmarks: a durable write with group commit (64 concurrent writers
//! share flushes) against flush-per-write, and encode/decode of a stored order.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use agora::codec;
use agora::domain::{Order, OrderLine, OrderNumber, OrderStatus, Price, Sku, StockLevel};
use agora::storage::{self, Storage};
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
    }
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
                    storage::put(&storage.stock, &i.to_be_bytes(), &record).unwrap();
                    storage.durable().await.unwrap();
                }
            });
            futures::future::join_all(writes).await;
        })
    });
    group.bench_function("flush_per_write_64_writes", |b| {
        b.iter(|| {
            for i in 0..WRITERS {
                storage::put(&storage.stock, &i.to_be_bytes(), &level(i)).unwrap();
                storage.flush_now().unwrap();
            }
        })
    });
    group.finish();
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
    targets = durable_writes, codec_round_trip
}
criterion_main!(benches);
