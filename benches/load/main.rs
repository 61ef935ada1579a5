//! Load benchmark: agora against the ceiling (a warp server doing no work), same machine, same
//! run, through six scenarios at 1, 8, 64 and 256 keep-alive connections, then an audit of
//! every order. Results: `target/bench-results/load.json`, `load.svg`, and a markdown table.
//!
//! Each point is `LOAD_ROUNDS` (default 3) rounds that alternate ceiling and agora, and each
//! side keeps its median round: on a shared machine a neighbour's burst spoils one round, not
//! the point.
//!
//! `cargo bench --bench load`. Env: `LOAD_SECS` (measured seconds per round, default 1),
//! `LOAD_WARMUP_SECS` (before a point's first round, default 1; later rounds warm up 0.2 s), `LOAD_CONNECTIONS` (default `1,8,64,256`), `LOAD_SCENARIOS`
//! (comma list of names to run; default all), `LOAD_CLUSTER=0` to skip the cluster scenario
//! (`order_1_line` at 64 connections against one node and three nodes, all child processes).

mod ceiling;
mod cluster;
mod driver;
mod report;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agora::config::ServeConfig;
use driver::{Call, MakeCall};
use serde_json::{json, Value};

const PRODUCTS: usize = 1000;
const INITIAL: u64 = 10_000_000;
const HOT: &str = "hot";
/// Warm-up before every round of a point but the first.
const REWARM: Duration = Duration::from_millis(200);

/// A cheap deterministic spread of `n` over `0..len`.
fn pick(n: u64, salt: u64, len: usize) -> usize {
    let mut x = n.wrapping_add(salt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    (x.wrapping_mul(0xBF58_476D_1CE4_E5B9) >> 32) as usize % len
}

fn order_call(skus: &[&str]) -> Call {
    let lines: Vec<Value> = skus
        .iter()
        .map(|s| json!({"skuCode": s, "quantity": 1}))
        .collect();
    Call {
        post: true,
        path: "/api/order".into(),
        body: json!({ "orderLineItemsDtoList": lines }).to_string(),
    }
}

fn get(path: String) -> Call {
    Call {
        post: false,
        path,
        body: String::new(),
    }
}

/// The scenarios, each a way to make the n-th request from the catalog's product ids.
fn scenarios(ids: Arc<Vec<String>>) -> Vec<(&'static str, MakeCall)> {
    let sku = |i: usize| format!("p{i}");
    let ids2 = ids.clone();
    vec![
        (
            "get_product",
            Arc::new(move |n| get(format!("/api/product/{}", ids[pick(n, 1, PRODUCTS)])))
                as MakeCall,
        ),
        (
            "inventory_3_skus",
            Arc::new(move |n| {
                let q: Vec<String> = (0..3)
                    .map(|k| format!("skuCode={}", sku(pick(n, k, PRODUCTS))))
                    .collect();
                get(format!("/api/inventory?{}", q.join("&")))
            }),
        ),
        (
            "order_1_line",
            Arc::new(move |n| order_call(&[&sku(pick(n, 2, PRODUCTS))])),
        ),
        (
            "order_3_lines",
            Arc::new(move |n| {
                let a = pick(n, 3, PRODUCTS);
                let (b, c) = (
                    (a + 1 + pick(n, 4, 300)) % PRODUCTS,
                    (a + 301 + pick(n, 5, 300)) % PRODUCTS,
                );
                order_call(&[&sku(a), &sku(b), &sku(c)])
            }),
        ),
        ("hot_sku", Arc::new(|_| order_call(&[HOT]))),
        (
            "mix_80_read_20_order",
            Arc::new(move |n| {
                if pick(n, 6, 10) < 8 {
                    get(format!("/api/product/{}", ids2[pick(n, 7, PRODUCTS)]))
                } else {
                    order_call(&[&sku(pick(n, 8, PRODUCTS))])
                }
            }),
        ),
    ]
}

fn env_secs(name: &str, default: f64) -> Duration {
    Duration::from_secs_f64(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

async fn send(
    client: &reqwest::Client,
    base: &str,
    post: bool,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let url = format!("{base}{path}");
    let request = if post {
        client.post(url).json(&body)
    } else {
        client.get(url)
    };
    Ok(request.send().await?.error_for_status()?.json().await?)
}

/// The numbers of the orders a run acknowledged.
fn order_numbers(outcome: &driver::Outcome) -> Vec<String> {
    outcome
        .created
        .iter()
        .filter_map(|b| {
            serde_json::from_slice::<Value>(b).ok()?["orderNumber"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

async fn seed(client: &reqwest::Client, base: &str) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for i in 0..=PRODUCTS {
        let sku = if i == PRODUCTS {
            HOT.to_owned()
        } else {
            format!("p{i}")
        };
        let body = json!({"name": format!("bench {sku}"), "price": 10, "skuCode": sku, "quantity": INITIAL});
        let product = send(client, base, true, "/api/product", body).await?;
        ids.push(product["id"].as_str().unwrap_or_default().to_owned());
    }
    ids.pop();
    Ok(ids)
}

/// Pages through a list endpoint (`after` cursor from `key`).
async fn all(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    key: &str,
) -> anyhow::Result<Vec<Value>> {
    let (mut out, mut after) = (Vec::new(), String::new());
    loop {
        let page = send(
            client,
            base,
            false,
            &format!("{path}?limit=1000{after}"),
            Value::Null,
        )
        .await?;
        let page = page.as_array().cloned().unwrap_or_default();
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = format!(
            "&after={}",
            last[key]
                .as_str()
                .map_or_else(|| last[key].to_string(), str::to_owned)
        );
        out.extend(page);
    }
}

/// Stock + sold = initial for every SKU; every acknowledged order readable; every order's
/// event recorded exactly once.
async fn audit(
    client: &reqwest::Client,
    base: &str,
    acked: &[String],
) -> anyhow::Result<report::Audit> {
    let orders = all(client, base, "/api/order", "orderNumber").await?;
    let mut sold: HashMap<String, u64> = HashMap::new();
    for order in &orders {
        for line in order["lines"].as_array().into_iter().flatten() {
            *sold
                .entry(line["skuCode"].as_str().unwrap_or_default().to_owned())
                .or_default() += line["quantity"].as_u64().unwrap_or(0);
        }
    }
    let mut oversold = 0;
    for chunk in (0..=PRODUCTS).collect::<Vec<_>>().chunks(100) {
        let q: Vec<String> = chunk
            .iter()
            .map(|i| {
                if *i == PRODUCTS {
                    format!("skuCode={HOT}")
                } else {
                    format!("skuCode=p{i}")
                }
            })
            .collect();
        let levels = send(
            client,
            base,
            false,
            &format!("/api/inventory?{}", q.join("&")),
            Value::Null,
        )
        .await?;
        for level in levels.as_array().into_iter().flatten() {
            let sku = level["skuCode"].as_str().unwrap_or_default();
            if level["quantity"].as_u64().unwrap_or(0) + sold.get(sku).copied().unwrap_or(0)
                != INITIAL
            {
                oversold += 1;
            }
        }
    }
    let listed: std::collections::HashSet<&str> = orders
        .iter()
        .filter_map(|o| o["orderNumber"].as_str())
        .collect();
    let missing = acked
        .iter()
        .filter(|n| !listed.contains(n.as_str()))
        .count();
    // Events trail the orders: wait while they keep arriving, give up after 30 s without progress.
    let (mut deadline, mut seen) = (std::time::Instant::now() + Duration::from_secs(30), 0);
    let counts = loop {
        let notifications = all(client, base, "/api/notifications", "seq").await?;
        let mut counts: HashMap<String, u64> = HashMap::new();
        for n in &notifications {
            *counts
                .entry(n["orderNumber"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        if counts.len() >= orders.len() || std::time::Instant::now() > deadline {
            break counts;
        }
        if counts.len() > seen {
            (seen, deadline) = (
                counts.len(),
                std::time::Instant::now() + Duration::from_secs(30),
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let events_not_once = listed
        .iter()
        .filter(|n| counts.get(**n).copied() != Some(1))
        .count();
    Ok(report::Audit {
        orders: orders.len(),
        acknowledged: acked.len(),
        missing,
        skus_unbalanced: oversold,
        events_not_once,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (warmup, measure) = (
        env_secs("LOAD_WARMUP_SECS", 1.0),
        env_secs("LOAD_SECS", 1.0),
    );
    let rounds: usize = std::env::var("LOAD_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let connections: Vec<usize> = std::env::var("LOAD_CONNECTIONS")
        .unwrap_or_else(|_| "1,8,64,256".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let only: Option<Vec<String>> = std::env::var("LOAD_SCENARIOS")
        .ok()
        .map(|s| s.split(',').map(str::to_owned).collect());
    let dir = tempfile::tempdir()?;
    let mut config = ServeConfig::for_tests(dir.path().to_path_buf());
    config.fault_injection = false;
    let app = agora::app::Node::build(config).await?;
    let agora_addr: SocketAddr = app.http_addr;
    let base = format!("http://{agora_addr}");
    let client = reqwest::Client::new();
    let ids = Arc::new(seed(&client, &base).await?);
    let ceiling = ceiling::start().await;

    let mut points = Vec::new();
    let mut acked = Vec::new();
    for (name, make) in scenarios(ids) {
        if only.as_ref().is_some_and(|o| !o.iter().any(|s| s == name)) {
            continue;
        }
        for &conns in &connections {
            let (mut tops, mut ours) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let warmup = if round == 0 { warmup } else { REWARM };
                tops.push(driver::run(&[ceiling], conns, make.clone(), warmup, measure).await);
                let outcome =
                    driver::run(&[agora_addr], conns, make.clone(), warmup, measure).await;
                acked.extend(order_numbers(&outcome));
                ours.push(outcome);
            }
            let (top, ours) = (driver::median(tops), driver::median(ours));
            let point = report::Point::new(name, conns, &ours, &top);
            eprintln!("{}", point.line());
            points.push(point);
        }
    }
    let audit = audit(&client, &base, &acked).await?;
    app.shutdown().await?;
    let cluster = match std::env::var("LOAD_CLUSTER").as_deref() {
        Ok("0") => None,
        _ => {
            let make = scenarios(Arc::new(Vec::new()))
                .into_iter()
                .find(|(name, _)| *name == "order_1_line")
                .map(|(_, make)| make)
                .expect("the order scenario");
            let comparison = cluster::compare(make, 64, warmup, measure * rounds as u32).await?;
            eprintln!(
                "cluster: one node {:.0} orders/s, three nodes {:.0} orders/s",
                comparison.one_node.requests_per_sec, comparison.three_nodes.requests_per_sec
            );
            Some(comparison)
        }
    };
    let out = report::write(&points, &audit, cluster.as_ref(), measure, rounds)?;
    println!("{}", report::markdown(&points, &audit, cluster.as_ref()));
    println!("results: {}", out.display());
    anyhow::ensure!(audit.clean(), "the audit failed: {audit:?}");
    anyhow::ensure!(
        cluster.as_ref().is_none_or(cluster::Comparison::clean),
        "the cluster audit failed: {cluster:?}"
    );
    Ok(())
}
