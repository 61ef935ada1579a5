//! Data growth: how start-up and memory behave with many products and orders on disk.
//!
//! `cargo bench --bench growth` fills a data directory through agora's own storage API with
//! `GROWTH_PRODUCTS` products (default 1,000,000) and `GROWTH_ORDERS` placed orders (default
//! 1,000,000), each order's event recorded by the notification service as if delivered, plus
//! `GROWTH_UNSETTLED` orders (default 100) left as a crash leaves them: reserved, never
//! written. Then it starts `agora serve` on that directory `GROWTH_STARTS` times (default 3)
//! and reports, as medians, the time from spawn to `/health/ready` and the resident memory at
//! that moment. Recovery must release every unsettled reservation (checked after each start).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agora::actors::notification::NotificationRecord;
use agora::domain::{
    Description, EventType, Order, OrderEvent, OrderLine, OrderNumber, OrderStatus, PendingChange,
    Price, Product, ProductId, ProductName, SagaId, Sku, StockLevel,
};
use agora::storage::Storage;

const STOCK: u32 = 1_000;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn sku(i: usize) -> Sku {
    Sku::parse(&format!("sku-{i}")).expect("a SKU")
}

/// Products with their stock, placed orders with their events recorded, and `unsettled`
/// reservations of orders never written.
fn fill(dir: &Path, products: usize, orders: usize, unsettled: usize) -> anyhow::Result<()> {
    let storage = Storage::open(dir)?;
    // As agora's first start on an empty directory does: its indexes are kept from then on.
    storage.index_unsettled()?;
    let price = Price::from_cents(250).expect("a price");
    let started = Instant::now();
    for i in 0..products {
        let sku = sku(i);
        let product = Product {
            id: ProductId::for_sku(&sku),
            sku: sku.clone(),
            name: ProductName::parse(&format!("case {i}"))?,
            description: Description::parse("it holds things")?,
            price,
        };
        storage.products.put(&product.id, &product)?;
        let level = StockLevel {
            sku: sku.clone(),
            quantity: STOCK,
            pending: BTreeMap::new(),
        };
        storage.stock.put(&sku, &level)?;
    }
    let records = storage.notifications::<NotificationRecord>();
    for i in 0..orders {
        let order = Order {
            number: OrderNumber::new(),
            status: OrderStatus::Placed,
            lines: vec![OrderLine {
                sku: sku(i % products.max(1)),
                price,
                quantity: 1,
            }],
            total: price,
            created_ms: 0,
            fingerprint: 0,
            restocked: true,
            saga: SagaId::default(),
        };
        storage.orders.put(&order.number, &order)?;
        let event = OrderEvent::for_order(&order, EventType::OrderPlaced, 0);
        let seq = storage.next_id()?;
        let record = NotificationRecord {
            seq,
            event_id: event.event_id.to_string(),
            event_type: EventType::OrderPlaced.as_str().to_owned(),
            order_number: order.number.to_string(),
            received_ms: 0,
            payload: String::new(),
        };
        storage.seen_events.put(&record.event_id, &seq)?;
        records.put(&seq, &record)?;
    }
    for i in 0..unsettled {
        let sku = sku(i % products.max(1));
        let mut level = storage.stock.get(&sku)?.expect("stock was written");
        level.quantity -= 1;
        let saga = SagaId::default();
        let reserved = PendingChange::Reserved { quantity: 1, saga };
        level.pending.insert(OrderNumber::new(), reserved);
        storage.put_stock(&level)?;
    }
    storage.flush_now()?;
    println!(
        "filled {products} products, {orders} orders, {unsettled} unsettled in {:.1?}",
        started.elapsed()
    );
    Ok(())
}

/// Resident memory of `pid` in MB.
fn resident_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}

/// Starts `agora serve` on `dir`; the time until it is ready and its resident memory then.
async fn start(dir: &Path) -> anyhow::Result<(Duration, f64)> {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args([
            "serve",
            "--node",
            "growth",
            "--http",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut words = line.split_whitespace();
            if let (Some("gateway"), Some(url)) = (words.next(), words.next()) {
                let _ = tx.send(url.trim_end_matches("/api").to_owned());
            }
        }
    });
    let base = rx.recv_timeout(Duration::from_secs(120))?;
    let client = reqwest::Client::new();
    let ready = loop {
        let answer = client.get(format!("{base}/health/ready")).send().await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let memory = resident_mb(child.id());
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    child.wait()?;
    Ok((ready, memory))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let products = env_number("GROWTH_PRODUCTS", 1_000_000);
    let orders = env_number("GROWTH_ORDERS", 1_000_000);
    let unsettled = env_number("GROWTH_UNSETTLED", 100);
    let starts = env_number("GROWTH_STARTS", 3).max(1);
    let dir = tempfile::tempdir()?;
    // On a runtime of its own: dropping it stops the storage's flusher, which holds sled's
    // lock on the directory until then.
    let path = dir.path().to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async { fill(&path, products, orders, unsettled) })
    })
    .join()
    .expect("the fill does not panic")?;
    let (mut times, mut memory) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        let (ready, resident) = start(dir.path()).await?;
        println!("ready in {ready:.2?}, {resident:.0} MB resident");
        times.push(ready.as_secs_f64());
        memory.push(resident);
    }
    let storage = Storage::open(dir.path())?;
    let left = storage.stock.scan(None, usize::MAX)?;
    let pending: usize = left.iter().map(|(_, level)| level.pending.len()).sum();
    anyhow::ensure!(pending == 0, "{pending} reservations left unsettled");
    println!(
        "start-up with {products} products and {orders} orders: ready in {:.2} s, {:.0} MB \
         resident (medians of {starts})",
        median(times),
        median(memory)
    );
    Ok(())
}
