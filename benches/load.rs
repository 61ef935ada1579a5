//! A quick load run: starts agora on a temporary data directory (embedded Kafka) and drives
//! `POST /api/order` (one line, random SKU with ample stock) over keep-alive connections for a
//! fixed time after a warm-up, then prints orders/s and latency percentiles (HdrHistogram) and
//! audits that stock + sold = initial.
//!
//! `cargo bench --bench load` (set `LOAD_SECS` and `LOAD_CONNECTIONS` to change the run).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora::config::ServeConfig;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

const SKUS: usize = 100;
const INITIAL: u64 = 1_000_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs = env_or("LOAD_SECS", 10);
    let connections = env_or("LOAD_CONNECTIONS", 64) as usize;
    let dir = tempfile::tempdir()?;
    let mut config = ServeConfig::for_tests(dir.path().to_path_buf());
    config.fault_injection = false;
    let app = agora::app::start(config).await?;
    let base = format!("http://{}", app.http_addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .build()?;
    for i in 0..SKUS {
        let body = json!({"name": format!("load {i}"), "price": 10, "skuCode": format!("load{i}"), "quantity": INITIAL});
        client
            .post(format!("{base}/api/product"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }

    let run = |duration: Duration| {
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = (0..connections)
            .map(|w| {
                let (client, base, stop) = (client.clone(), base.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
                    let (mut errors, mut n) = (0u64, w as u64);
                    while !stop.load(Ordering::Relaxed) {
                        n = n.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let body = json!({"orderLineItemsDtoList": [{"skuCode": format!("load{}", (n >> 33) as usize % SKUS), "quantity": 1}]});
                        let started = Instant::now();
                        match client.post(format!("{base}/api/order")).json(&body).send().await {
                            Ok(r) if r.status() == 201 => histogram.record(started.elapsed().as_micros() as u64).expect("in range"),
                            _ => errors += 1,
                        }
                    }
                    (histogram, errors)
                })
            })
            .collect();
        async move {
            let started = Instant::now();
            tokio::time::sleep(duration).await;
            stop.store(true, Ordering::Relaxed);
            let mut total = Histogram::<u64>::new(3).expect("histogram");
            let mut errors = 0;
            for worker in workers {
                let (h, e) = worker.await.expect("worker");
                total.add(h).expect("same bounds");
                errors += e;
            }
            (total, errors, started.elapsed())
        }
    };
    run(Duration::from_secs(2)).await;
    let (histogram, errors, elapsed) = run(Duration::from_secs(secs)).await;
    let per_sec = histogram.len() as f64 / elapsed.as_secs_f64();
    println!("POST /api/order, 1 line, {connections} connections, {secs} s (after a 2 s warm-up):");
    println!("  {per_sec:.0} orders/s, errors {errors}");
    for q in [0.5, 0.99, 0.999] {
        println!(
            "  p{:<5} {:.2} ms",
            q * 100.0,
            histogram.value_at_quantile(q) as f64 / 1000.0
        );
    }

    let skus: Vec<String> = (0..SKUS).map(|i| format!("skuCode=load{i}")).collect();
    let levels: Vec<Value> = client
        .get(format!("{base}/api/inventory?{}", skus.join("&")))
        .send()
        .await?
        .json()
        .await?;
    let remaining: u64 = levels
        .iter()
        .map(|l| l["quantity"].as_u64().unwrap_or(0))
        .sum();
    let mut sold = 0;
    let mut after = String::new();
    loop {
        let page: Vec<Value> = client
            .get(format!("{base}/api/order?limit=1000{after}"))
            .send()
            .await?
            .json()
            .await?;
        let Some(last) = page.last() else { break };
        after = format!(
            "&after={}",
            last["orderNumber"].as_str().unwrap_or_default()
        );
        sold += page
            .iter()
            .map(|o| o["lines"][0]["quantity"].as_u64().unwrap_or(0))
            .sum::<u64>();
    }
    let audit = remaining + sold == INITIAL * SKUS as u64;
    println!(
        "  audit: stock {remaining} + sold {sold} = initial {}: {}",
        INITIAL * SKUS as u64,
        if audit { "ok" } else { "FAILED" }
    );
    app.shutdown().await?;
    anyhow::ensure!(audit, "audit failed");
    Ok(())
}
