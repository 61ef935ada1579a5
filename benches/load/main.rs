//! Load benchmark: agora against the ceiling (a warp server doing no work), same machine, same
//! run, through six scenarios at 1, 8, 64 and 256 keep-alive connections, then an audit of
//! every order; then the cluster scenarios (`order_1_line` against one node and three nodes,
//! every node a child process, see `cluster.rs`). Results: `target/bench-results/load.json`,
//! `load.svg`, and a markdown table.
//!
//! Each point is `LOAD_ROUNDS` (default 3) rounds that alternate ceiling and agora, and each
//! side keeps its median round: on a shared machine a neighbour's burst spoils one round, not
//! the point.
//!
//! `cargo bench --bench load`. Env: `LOAD_SECS` (measured seconds per round, default 1),
//! `LOAD_WARMUP_SECS` (before a point's first round, default 1; later rounds warm up 0.2 s),
//! `LOAD_CONNECTIONS` (default `1,8,64,256`), `LOAD_SCENARIOS` (comma list of names to run,
//! default all: the six in-process ones, `cluster` — one node, one replicated member, three
//! replicated nodes, then a kill -9 — and `cluster_static` — three nodes with `--members`),
//! `LOAD_CLUSTER=0` to skip both cluster scenarios. Cluster scenarios: `LOAD_CLUSTER_SECS`
//! (measured seconds a side, default `LOAD_SECS` × `LOAD_ROUNDS`), `LOAD_CLUSTER_CONNECTIONS`
//! (default 64), `LOAD_CLUSTER_PARTITIONS` (default 16), `LOAD_FAILOVER_CONNECTIONS` (the load
//! under which a node is killed, default 8: the probe that finds when every SKU takes orders
//! again shares the cluster's capacity with that load).
//!
//! `LOAD_WRK=1` also runs each in-process scenario through wrk, one run a side (`wrk.rs`).
//!
//! The cluster scenario alone: `LOAD_SCENARIOS=cluster cargo bench --bench load`.

mod ceiling;
mod cluster;
mod driver;
mod failover;
mod report;
mod wrk;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agora::config::ServeConfig;
use agora::domain::{ProductId, Sku};
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

/// 503 answers [`send`] waited out and retried: a partition between leaders, or a write whose
/// outcome was unknown (cluster scenarios).
static RETRIED_503: AtomicU64 = AtomicU64::new(0);
/// How many times [`send`] retries a 503.
const RETRIES: u32 = 50;
/// How many of the retried 503s [`send`] shows.
const SHOWN_503: u64 = 5;

async fn send(
    client: &reqwest::Client,
    base: &str,
    post: bool,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let url = format!("{base}{path}");
    let mut retried = false;
    for attempt in 0.. {
        let request = if post {
            client.post(&url).json(&body)
        } else {
            client.get(&url)
        };
        let response = request.send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::SERVICE_UNAVAILABLE && attempt < RETRIES {
            let wait = (response.headers().get("retry-after"))
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .map_or(Duration::from_millis(200), Duration::from_secs);
            if RETRIED_503.fetch_add(1, Ordering::Relaxed) < SHOWN_503 {
                let body = response.text().await.unwrap_or_default();
                eprintln!("retrying a 503 to {url}: {body}");
            }
            retried = true;
            tokio::time::sleep(wait.min(Duration::from_secs(1))).await;
            continue;
        }
        // A create retried after an unknown outcome finds what the first try made.
        if status == reqwest::StatusCode::CONFLICT && post && retried {
            return Ok(Value::Null);
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let method = if post { "POST" } else { "GET" };
            anyhow::bail!("{method} {url}: {status} {body}");
        }
        return Ok(response.json().await?);
    }
    unreachable!("the loop returns")
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
        let id = match product["id"].as_str() {
            Some(id) => id.to_owned(),
            None => {
                let sku = Sku::parse(&sku).map_err(|e| anyhow::anyhow!("{e:?}"))?;
                ProductId::for_sku(&sku).to_string()
            }
        };
        ids.push(id);
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

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// What the in-process scenarios gave: the driver's points, wrk's, and the audit of the orders.
struct InProcess {
    points: Vec<report::Point>,
    wrk: Vec<report::Point>,
    audit: report::Audit,
    /// The audit after wrk's runs, when there were any.
    wrk_audit: Option<report::Audit>,
}

/// The wrk cross-check's connections and seconds a side, when `LOAD_WRK=1`.
fn wrk_plan() -> anyhow::Result<Option<(usize, Duration)>> {
    if std::env::var("LOAD_WRK").as_deref() != Ok("1") {
        return Ok(None);
    }
    wrk::check_installed("LOAD_WRK=1")?;
    let secs = env_secs("LOAD_WRK_SECS", 5.0).max(Duration::from_secs(1));
    Ok(Some((env_number("LOAD_WRK_CONNECTIONS", 64usize), secs)))
}

/// The six in-process scenarios through the driver (and wrk when asked), then the audit.
async fn in_process(
    only: Option<&[String]>,
    connections: &[usize],
    rounds: usize,
    (warmup, measure): (Duration, Duration),
) -> anyhow::Result<InProcess> {
    let wrk_plan = wrk_plan()?;
    let dir = tempfile::tempdir()?;
    let mut config = ServeConfig::for_tests(dir.path().to_path_buf());
    config.fault_injection = false;
    let app = agora::app::Node::build(config).await?;
    let agora_addr: SocketAddr = app.http_addr;
    let base = format!("http://{agora_addr}");
    let client = reqwest::Client::new();
    let ids = Arc::new(seed(&client, &base).await?);
    let ceiling = ceiling::start().await;

    let scripts = tempfile::tempdir()?;
    let (mut points, mut wrk_points, mut wrk_scenarios) = (Vec::new(), Vec::new(), Vec::new());
    let mut acked = Vec::new();
    for (name, make) in scenarios(ids) {
        if only.is_some_and(|o| !o.iter().any(|s| s == name)) {
            continue;
        }
        for &conns in connections {
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
        if wrk_plan.is_some() {
            wrk_scenarios.push((name, make));
        }
    }
    let audit = audit(&client, &base, &acked).await?;
    // wrk's orders are not known one by one: after them the audit checks that nothing was
    // lost or unbalanced, not that every order placed was acknowledged.
    let mut wrk_audit = None;
    if let Some((conns, secs)) = wrk_plan {
        for (name, make) in wrk_scenarios {
            let sides = (ceiling, agora_addr);
            let point = wrk::point(name, &make, sides, conns, secs, scripts.path())?;
            eprintln!("wrk: {}", point.line());
            wrk_points.push(point);
        }
        wrk_audit = Some(self::audit(&client, &base, &acked).await?);
    }
    app.shutdown().await?;
    Ok(InProcess {
        points,
        wrk: wrk_points,
        audit,
        wrk_audit,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (warmup, measure) = (
        env_secs("LOAD_WARMUP_SECS", 1.0),
        env_secs("LOAD_SECS", 1.0),
    );
    let rounds = env_number("LOAD_ROUNDS", 3usize).max(1);
    let connections: Vec<usize> = std::env::var("LOAD_CONNECTIONS")
        .unwrap_or_else(|_| "1,8,64,256".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let only: Option<Vec<String>> = std::env::var("LOAD_SCENARIOS")
        .ok()
        .map(|s| s.split(',').map(|n| n.trim().to_owned()).collect());
    let chosen = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|s| s == name));
    let local = scenarios(Arc::new(Vec::new()));
    let (points, wrk, audit, wrk_audit) = match local.iter().any(|(name, _)| chosen(name)) {
        true => {
            let run = in_process(only.as_deref(), &connections, rounds, (warmup, measure)).await?;
            (run.points, run.wrk, Some(run.audit), run.wrk_audit)
        }
        false => (Vec::new(), Vec::new(), None, None),
    };
    let clusters = std::env::var("LOAD_CLUSTER").as_deref() != Ok("0");
    let (replicated, fixed) = (
        clusters && chosen("cluster"),
        clusters && chosen("cluster_static"),
    );
    let cluster = match replicated || fixed {
        false => None,
        true => {
            let make = local
                .into_iter()
                .find(|(name, _)| *name == "order_1_line")
                .map(|(_, make)| make)
                .expect("the order scenario");
            let connections = env_number("LOAD_CLUSTER_CONNECTIONS", 64usize);
            let plan = cluster::Plan {
                make,
                connections,
                warmup,
                secs: env_secs("LOAD_CLUSTER_SECS", (measure * rounds as u32).as_secs_f64()),
                partitions: env_number("LOAD_CLUSTER_PARTITIONS", 16),
                replicated,
                fixed,
                failover_connections: env_number("LOAD_FAILOVER_CONNECTIONS", 8),
            };
            let comparison = cluster::compare(plan).await?;
            Some(comparison)
        }
    };
    let results = report::Results {
        points: &points,
        wrk: &wrk,
        audit: audit.as_ref(),
        wrk_audit: wrk_audit.as_ref(),
        cluster: cluster.as_ref(),
    };
    let out = report::write(&results, measure, rounds)?;
    println!("{}", report::markdown(&results));
    println!("results: {}", out.display());
    anyhow::ensure!(
        audit.as_ref().is_none_or(report::Audit::clean),
        "the audit failed: {audit:?}"
    );
    anyhow::ensure!(
        wrk_audit.as_ref().is_none_or(report::Audit::lossless),
        "the audit after wrk failed: {wrk_audit:?}"
    );
    anyhow::ensure!(
        cluster.as_ref().is_none_or(cluster::Comparison::clean),
        "the cluster audit failed: {cluster:?}"
    );
    Ok(())
}
