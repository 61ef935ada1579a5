//! Data growth: how start-up and memory behave with many products and orders on disk.
//!
//! `cargo bench --bench growth` fills a data directory through agora's own storage API with
//! `GROWTH_PRODUCTS` products (default 1,000,000) and `GROWTH_ORDERS` placed orders (default
//! 1,000,000), each order's event recorded by the notification service as if delivered, plus
//! `GROWTH_UNSETTLED` orders (default 100) left as a crash leaves them: reserved, never
//! written. Then it starts `agora serve` on that directory `GROWTH_STARTS` times (default 3)
//! and reports, as medians, the time from spawn to `/health/ready` and the resident memory at
//! that moment. Recovery must release every unsettled reservation (checked after each start).
//!
//! `GROWTH_WRK=1` then measures serving with wrk: `GET /api/product/{id}` and one-line orders
//! (`GROWTH_WRK_SECS` each, default 5, 64 connections) spread over every product of that
//! directory, and the same over a directory of 200 products, alternately, `GROWTH_WRK_ROUNDS`
//! rounds (default 3); the medians and their ratio.

#[path = "shared/wrk.rs"]
mod wrk;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
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
    let (mut child, _) = spawn_ready(dir).await?;
    let ready = started.elapsed();
    let memory = resident_mb(child.id());
    stop(&mut child)?;
    Ok((ready, memory))
}

fn stop(child: &mut Child) -> anyhow::Result<()> {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    child.wait()?;
    Ok(())
}

/// `agora serve` on `dir`, once its `/health/ready` answers 200, and its gateway's address.
async fn spawn_ready(dir: &Path) -> anyhow::Result<(Child, String)> {
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
    loop {
        let answer = client.get(format!("{base}/health/ready")).send().await;
        if answer.is_ok_and(|a| a.status().is_success()) {
            return Ok((child, base));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// GET and one-line order scripts over the first `products` products of a fill.
fn scripts(dir: &Path, products: usize) -> anyhow::Result<[std::path::PathBuf; 2]> {
    let spread = |n: usize| (n.wrapping_mul(0x9E37_79B9) >> 3) % products;
    let gets = (0..2000).map(|n| wrk::Request {
        post: false,
        path: format!("/api/product/{}", ProductId::for_sku(&sku(spread(n)))),
        body: String::new(),
    });
    let orders = (0..2000).map(|n| wrk::Request {
        post: true,
        path: "/api/order".into(),
        body: format!(
            r#"{{"orderLineItemsDtoList":[{{"skuCode":"{}","quantity":1}}]}}"#,
            sku(spread(n))
        ),
    });
    let paths = [dir.join("get.lua"), dir.join("order.lua")];
    std::fs::write(&paths[0], wrk::script(gets))?;
    std::fs::write(&paths[1], wrk::script(orders))?;
    Ok(paths)
}

/// One wrk run of each script against a node on `dir`: requests/s and p99 of each.
async fn serve_rates(
    dir: &Path,
    scripts: &[std::path::PathBuf; 2],
) -> anyhow::Result<[(f64, f64); 2]> {
    let secs = Duration::from_secs(env_number("GROWTH_WRK_SECS", 5).max(1) as u64);
    let (mut child, base) = spawn_ready(dir).await?;
    let to = base.trim_start_matches("http://").parse()?;
    let mut rates = [(0.0, 0.0); 2];
    for (rate, script) in rates.iter_mut().zip(scripts) {
        let f = wrk::run(script, to, 64, secs)?;
        anyhow::ensure!(f.errors == 0, "{} errors in {}", f.errors, script.display());
        let name = script.file_stem().unwrap_or_default().to_string_lossy();
        println!(
            "  {name}: {:.0}/s, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
            f.requests_per_sec, f.p50_ms, f.p99_ms, f.p999_ms
        );
        *rate = (f.requests_per_sec, f.p99_ms);
    }
    stop(&mut child)?;
    Ok(rates)
}

/// GET and order rates over `big` against a directory of 200 products, alternately.
async fn compare_serving(big: &Path, products: usize) -> anyhow::Result<()> {
    let small = filled(200, 0, 0)?;
    let scripts_dir = tempfile::tempdir()?;
    let (big_dir, small_dir) = (
        scripts_dir.path().join("big"),
        scripts_dir.path().join("small"),
    );
    std::fs::create_dir_all(&big_dir)?;
    std::fs::create_dir_all(&small_dir)?;
    let (big_scripts, small_scripts) = (scripts(&big_dir, products)?, scripts(&small_dir, 200)?);
    let mut runs: [[Vec<f64>; 4]; 2] = Default::default();
    for round in 0..env_number("GROWTH_WRK_ROUNDS", 3).max(1) {
        for (side, (dir, scripts)) in [(big, &big_scripts), (small.path(), &small_scripts)]
            .into_iter()
            .enumerate()
        {
            let [(get, get_p99), (order, order_p99)] = serve_rates(dir, scripts).await?;
            println!(
                "round {round}, {}: GET {get:.0}/s (p99 {get_p99:.1} ms), orders {order:.0}/s (p99 {order_p99:.1} ms)",
                if side == 0 { "filled" } else { "200 products" }
            );
            for (all, v) in runs[side].iter_mut().zip([get, get_p99, order, order_p99]) {
                all.push(v);
            }
        }
    }
    let [big, small] = runs.map(|side| side.map(median));
    println!(
        "serving with {products} products on disk against 200 (medians): GET {:.0} vs {:.0}/s ({:.2}), p99 {:.1} vs {:.1} ms; orders {:.0} vs {:.0}/s ({:.2}), p99 {:.1} vs {:.1} ms",
        big[0], small[0], big[0] / small[0], big[1], small[1],
        big[2], small[2], big[2] / small[2], big[3], small[3]
    );
    Ok(())
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
    let wrk = std::env::var("GROWTH_WRK").as_deref() == Ok("1");
    if wrk {
        wrk::check_installed("GROWTH_WRK=1")?;
    }
    let dir = filled(products, orders, unsettled)?;
    let (mut times, mut memory) = (Vec::new(), Vec::new());
    for _ in 0..starts {
        let (ready, resident) = start(dir.path()).await?;
        println!("ready in {ready:.2?}, {resident:.0} MB resident");
        times.push(ready.as_secs_f64());
        memory.push(resident);
    }
    let path = dir.path().to_owned();
    let pending = on_own_runtime(move || {
        let left = Storage::open(&path)?.stock.scan(None, usize::MAX)?;
        Ok(left
            .iter()
            .map(|(_, level)| level.pending.len())
            .sum::<usize>())
    })?;
    anyhow::ensure!(pending == 0, "{pending} reservations left unsettled");
    println!(
        "start-up with {products} products and {orders} orders: ready in {:.2} s, {:.0} MB \
         resident (medians of {starts})",
        median(times),
        median(memory)
    );
    if wrk {
        compare_serving(dir.path(), products).await?;
    }
    Ok(())
}

/// A directory filled by [`fill`].
fn filled(products: usize, orders: usize, unsettled: usize) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    on_own_runtime(move || fill(&path, products, orders, unsettled))?;
    Ok(dir)
}

/// Runs `work` (which opens a [`Storage`]) on a runtime of its own: dropping the runtime stops
/// the storage's flusher, which holds sled's lock on the directory until then.
fn on_own_runtime<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(async { work() })
    })
    .join()
    .expect("the storage work does not panic")
}
