//! Actor micro-benchmarks on a running node (no HTTP): a bare ractor call round trip, an entity
//! call through its supervisor (stock read), and the order saga end to end (price, reserve,
//! transaction with the outbox, group-commit flush) for one line. Then the same between two
//! nodes: this process is node `a`, a child `agora serve` is node `b`, and the stock lives on
//! `b` (ractor_cluster over loopback TCP, requests through the codec).

use std::process::{Command, Stdio};
use std::time::Duration;

use agora::actors::order::{PlaceOrder, RequestedLine};
use agora::actors::product::CreateProduct;
use agora::actors::stock::GetStock;
use agora::cluster::layout::Layout;
use agora::config::{Role, ServeConfig};
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

/// Creates a product for `sku` with a billion units in stock, wherever its owner is.
async fn create_product(directory: &agora::routing::Directory, sku: &Sku) {
    let product = Product {
        id: ProductId::for_sku(sku),
        sku: sku.clone(),
        name: ProductName::parse(sku.as_str()).unwrap(),
        description: Description::parse("").unwrap(),
        price: Price::from_cents(100).unwrap(),
    };
    let create = CreateProduct {
        product,
        quantity: Some(1_000_000_000),
    };
    directory
        .ask(ProductId::for_sku(sku), create)
        .await
        .expect("product created");
}

fn actors(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = rt
        .block_on(agora::app::Node::build(ServeConfig::for_tests(
            dir.path().to_path_buf(),
        )))
        .unwrap();
    let sku = Sku::parse("bench").unwrap();
    let directory = app.directory.clone();
    rt.block_on(create_product(&directory, &sku));
    let (echo, _) = rt.block_on(Actor::spawn(None, Echo, ())).unwrap();

    c.bench_function("actor/call_round_trip", |b| {
        b.to_async(&rt)
            .iter(|| async { ractor::call_t!(echo, Ping, 5000).unwrap() })
    });
    entity_and_saga(c, &rt, &directory, &sku, "actor", OrderNumber::new);
    rt.block_on(app.shutdown()).unwrap();
}

/// A stock read of `sku` and a one-line order of it (durable), numbered by `number`.
fn entity_and_saga(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    directory: &agora::routing::Directory,
    sku: &Sku,
    group: &str,
    number: impl Fn() -> OrderNumber,
) {
    c.bench_function(&format!("{group}/stock_read_via_directory"), |b| {
        b.to_async(rt)
            .iter(|| async { directory.ask(sku.clone(), GetStock {}).await.unwrap() })
    });
    c.bench_function(&format!("{group}/place_order_1_line_durable"), |b| {
        b.to_async(rt).iter(|| {
            let lines = vec![RequestedLine {
                sku: sku.clone(),
                price: None,
                quantity: 1,
            }];
            let place = directory.ask(number(), PlaceOrder { lines });
            async { place.await.unwrap() }
        })
    });
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn between_nodes(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut config = ServeConfig::for_tests(dir_a.path().to_path_buf());
    let listen = free_addr();
    config.node = "a".into();
    config.lease_secs = 2;
    config.cluster.listen = Some(listen);
    config.cluster.cookie = Some("bench".parse().unwrap());
    config.cluster.members = vec!["a".parse().unwrap(), "b".parse().unwrap()];
    let cluster = &config.cluster;
    let (partitions, members) = (cluster.partitions, cluster.members.clone());
    let layout = Layout::new("a", partitions, members, &cluster.roles).unwrap();
    let app = rt.block_on(agora::app::Node::build(config)).unwrap();
    let mut node_b = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["serve", "--node", "b", "--http", "127.0.0.1:0", "--data"])
        .arg(dir_b.path())
        .args([
            "--cluster",
            &free_addr().to_string(),
            "--join",
            &listen.to_string(),
        ])
        .args(["--cookie", "bench", "--members", "a,b", "--lease-secs", "2"])
        .args(["--kafka-brokers", &app.kafka_brokers])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("node b starts");
    let directory = app.directory.clone();
    let b_is_up = || directory.peers().unwrap_or_default() == [("b".to_owned(), true)];
    rt.block_on(async {
        while !b_is_up() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let sku = (0..)
        .map(|i| Sku::parse(&format!("remote-{i}")).unwrap())
        .find(|s| layout.owner(Role::Inventory, s.as_str()) == Some("b"))
        .unwrap();
    rt.block_on(create_product(&directory, &sku));
    let local_order = move || loop {
        let number = OrderNumber::new();
        if layout.owner(Role::Order, &number.to_string()) == Some("a") {
            return number;
        }
    };

    entity_and_saga(c, &rt, &directory, &sku, "cluster", local_order);
    let _ = node_b.kill();
    let _ = node_b.wait();
    rt.block_on(app.shutdown()).unwrap();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(4));
    targets = actors, between_nodes
}
criterion_main!(benches);
