//! Actor micro-benchmarks on a running node (no HTTP): a bare ractor call round trip, an entity
//! call through its supervisor (stock read), and the order saga end to end (price, reserve,
//! transaction with the outbox, group-commit flush) for one line.

use std::time::Duration;

use agora::actors::order::{PlaceOrder, RequestedLine};
use agora::actors::product::CreateProduct;
use agora::actors::stock::GetStock;
use agora::config::ServeConfig;
use agora::domain::{Description, OrderNumber, Price, Product, ProductId, ProductName, Sku};
use criterion::{criterion_group, criterion_main, Criterion};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

struct Echo;

/// Asks the echo actor for a number.
struct Ping(RpcReplyPort<u64>);

impl ractor::Message for Ping {}

impl Actor for Echo {
    type Msg = Ping;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Self::Msg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _: ActorRef<Self::Msg>,
        Ping(reply): Ping,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(1);
        Ok(())
    }
}

fn actors(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = rt
        .block_on(agora::app::start(ServeConfig::for_tests(
            dir.path().to_path_buf(),
        )))
        .unwrap();
    let sku = Sku::parse("bench").unwrap();
    let product = Product {
        id: ProductId::for_sku(&sku),
        sku: sku.clone(),
        name: ProductName::parse("bench").unwrap(),
        description: Description::parse("").unwrap(),
        price: Price::from_cents(100).unwrap(),
    };
    let directory = app.directory.clone();
    let create = CreateProduct {
        product,
        quantity: Some(1_000_000_000),
    };
    rt.block_on(directory.ask(ProductId::for_sku(&sku), create))
        .expect("product created");
    let (echo, _) = rt.block_on(Actor::spawn(None, Echo, ())).unwrap();

    c.bench_function("actor/call_round_trip", |b| {
        b.to_async(&rt)
            .iter(|| async { ractor::call_t!(echo, Ping, 5000).unwrap() })
    });
    c.bench_function("actor/entity_call_via_supervisor", |b| {
        b.to_async(&rt)
            .iter(|| async { directory.ask(sku.clone(), GetStock {}).await.unwrap() })
    });
    c.bench_function("saga/place_order_1_line_durable", |b| {
        b.to_async(&rt).iter(|| {
            let lines = vec![RequestedLine {
                sku: sku.clone(),
                price: None,
                quantity: 1,
            }];
            let place = directory.ask(OrderNumber::new(), PlaceOrder { lines });
            async { place.await.unwrap() }
        })
    });
    rt.block_on(app.shutdown()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = actors
}
criterion_main!(benches);
