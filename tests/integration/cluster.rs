//! A three-node cluster of real `agora` processes on loopback, each with its own data
//! directory: joining from one seed, keys spread over the nodes, sagas across them, a node
//! killed under load and restarted, a node frozen with SIGSTOP, a wrong cookie, and request ids
//! in every node's log. Prints the measured detection and recovery times.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora::cluster::layout::Layout;
use agora::config::{MemberSpec, Role};
use agora::domain::{OrderNumber, ProductId, Sku};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::Mutex;

use super::support::{
    free_addr, notification_counts, order_body, order_line, retry, sold, TestApp,
};

const MEMBERS: &str = "n1,n2,n3";
const INITIAL: u64 = 10_000;
/// Orders the load must answer in each phase of the kill test (before, while down, after).
const LOAD_SAMPLES: usize = 50;
const LOG_FILTER: &str = "warn,agora::gateway::filters=info,agora::cluster=debug";

struct Cluster {
    layout: Layout,
    cluster_addrs: BTreeMap<&'static str, String>,
    kafka: String,
}

impl Cluster {
    fn new() -> Cluster {
        let members: Vec<MemberSpec> = MEMBERS.split(',').map(|m| m.parse().unwrap()).collect();
        let cluster_addrs = ["n1", "n2", "n3"]
            .into_iter()
            .map(|n| (n, free_addr().to_string()))
            .collect();
        Cluster {
            layout: Layout::new("n1", 32, members, &Role::ALL).unwrap(),
            cluster_addrs,
            kafka: String::new(),
        }
    }

    /// Starts `node` on `data`; n1 is the seed and hosts Kafka and the notification service.
    async fn start(&self, node: &'static str, data: &Path) -> TestApp {
        let seed = self.cluster_addrs["n1"].clone();
        let mut env = vec![
            ("AGORA_NODE", node.to_owned()),
            ("AGORA_CLUSTER", self.cluster_addrs[node].clone()),
            ("AGORA_JOIN", seed),
            ("AGORA_COOKIE", "cluster-test".to_owned()),
            ("AGORA_MEMBERS", MEMBERS.to_owned()),
            ("AGORA_LEASE_SECS", "2".to_owned()),
            ("RUST_LOG", LOG_FILTER.to_owned()),
        ];
        if node != "n1" {
            env.push(("AGORA_KAFKA_BROKERS", self.kafka.clone()));
            env.push(("AGORA_ROLES", "gateway,product,inventory,order".to_owned()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        TestApp::spawn_process(data, &env).await
    }

    fn stock_owner(&self, sku: &str) -> &str {
        self.layout.owner(Role::Inventory, sku).unwrap()
    }

    fn product_owner(&self, sku: &str) -> &str {
        let id = ProductId::for_sku(&Sku::parse(sku).unwrap());
        self.layout.owner(Role::Product, &id.to_string()).unwrap()
    }

    fn order_owner(&self, key: &str) -> &str {
        let number = OrderNumber::for_idempotency_key(key);
        self.layout.owner(Role::Order, &number.to_string()).unwrap()
    }

    /// Whether an order for `sku` under `key` needs node `node`.
    fn involves(&self, node: &str, sku: &str, key: &str) -> bool {
        [
            self.stock_owner(sku),
            self.product_owner(sku),
            self.order_owner(key),
        ]
        .contains(&node)
    }
}

/// Waits until every node's registry lists the gateways of all three nodes UP, and every
/// node reaches the others.
async fn wait_for_mesh(nodes: &[&TestApp]) {
    for app in nodes {
        app.wait_until(|| async {
            let apps = app
                .get_accept("/eureka/apps/API-GATEWAY", "application/json")
                .await;
            let listed = ["n1", "n2", "n3"].iter().all(|n| {
                let wanted = format!("\"instanceId\":\"{n}:api-gateway\"");
                apps.contains(&wanted) && !apps.contains("\"DOWN\"")
            });
            listed && app.health_of("cluster").await.0 == "UP"
        })
        .await;
    }
}

async fn place(app: &TestApp, sku: &str, quantity: u64, key: &str) -> (u16, Duration) {
    let started = Instant::now();
    let response = app
        .http(Method::POST, "/api/order")
        .header("idempotency-key", key)
        .json(&order_body(vec![order_line(sku, quantity)]))
        .send()
        .await
        .expect("answered");
    (response.status().as_u16(), started.elapsed())
}

/// Polls `GET path` on `app` until its status is `want`; returns how long it took.
async fn time_until_status(app: &TestApp, path: &str, want: u16) -> Duration {
    let started = Instant::now();
    let attempt = || async move {
        let status = app.get(path).await.status().as_u16();
        (status == want)
            .then(|| started.elapsed())
            .ok_or_else(|| format!("{path} never gave {want}"))
    };
    retry(Duration::from_millis(20), Duration::from_secs(30), attempt).await
}

#[derive(Default)]
struct Outcomes {
    /// Acknowledged orders: idempotency key → SKU.
    acked: HashMap<String, String>,
    /// After the node was known down: (involves it, status, latency).
    while_down: Vec<(bool, u16, Duration)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_the_shop_and_survive_kill_and_freeze() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut cluster = Cluster::new();
    let n1 = cluster.start("n1", dirs[0].path()).await;
    cluster.kafka = n1.kafka_brokers.clone();
    let n2 = cluster.start("n2", dirs[1].path()).await;
    let n3 = cluster.start("n3", dirs[2].path()).await;
    let formed = Instant::now();
    wait_for_mesh(&[&n1, &n2, &n3]).await;
    eprintln!(
        "cluster: mesh seen by all three after {:?}",
        formed.elapsed()
    );

    // Products spread over every node, created through one gateway.
    let skus: Vec<String> = (0..24).map(|i| format!("c-{i}")).collect();
    for sku in &skus {
        n1.product(sku, 2.0, INITIAL as u32).await;
    }
    for node in ["n1", "n2", "n3"] {
        assert!(
            skus.iter().any(|s| cluster.stock_owner(s) == node),
            "no stock on {node}"
        );
    }
    let on = |node: &str| -> String {
        skus.iter()
            .find(|s| cluster.stock_owner(s) == node && cluster.product_owner(s) == node)
            .or_else(|| skus.iter().find(|s| cluster.stock_owner(s) == node))
            .unwrap()
            .clone()
    };
    let (s1, s2, s3) = (on("n1"), on("n2"), on("n3"));

    // Orders through node 1 for stock on nodes 2 and 3; one order spanning all three.
    assert_eq!(n1.order(&[(&s2, 1)]).await.status(), 201);
    assert_eq!(n1.order(&[(&s3, 1)]).await.status(), 201);
    let spanning = n1.order(&[(&s1, 2), (&s2, 2), (&s3, 2)]).await;
    assert_eq!(spanning.status(), 201);
    for (sku, left) in [(&s1, INITIAL - 2), (&s2, INITIAL - 3), (&s3, INITIAL - 3)] {
        assert_eq!(n2.stock(sku).await, left, "{sku}");
    }
    // One line short: the whole order is refused and nothing moves on the other nodes.
    let short = n1.order(&[(&s2, 1), (&s3, INITIAL as u32)]).await;
    assert_eq!(short.status(), 409);
    assert_eq!(n3.stock(&s2).await, INITIAL - 3);
    assert_eq!(n3.stock(&s3).await, INITIAL - 3);

    // The request id follows the request into the node that owns the stock.
    let trace = format!("trace-{}", uuid::Uuid::new_v4().simple());
    let traced = n1
        .http(Method::POST, "/api/order")
        .header("x-request-id", &trace)
        .json(&order_body(vec![order_line(&s2, 1)]))
        .send()
        .await
        .unwrap();
    assert_eq!(traced.status(), 201);
    n2.wait_until(|| async { n2.logged(&trace) }).await;

    // Order load through nodes 1 and 2, then node 3 is killed under it.
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (n1, n2) = (Arc::new(n1), Arc::new(n2));
    let cluster = Arc::new(cluster);
    let mut load = Vec::new();
    for (worker, gateway) in [n1.clone(), n2.clone(), n1.clone(), n2.clone()]
        .into_iter()
        .enumerate()
    {
        let (outcomes, down, stop) = (outcomes.clone(), down.clone(), stop.clone());
        let (skus, cluster) = (skus.clone(), cluster.clone());
        load.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let sku = &skus[(i * 7 + worker) % skus.len()];
                let key = format!("load-{worker}-{i}");
                i += 1;
                let was_down = down.load(std::sync::atomic::Ordering::SeqCst);
                let (status, latency) = place(&gateway, sku, 1, &key).await;
                let mut outcomes = outcomes.lock().await;
                if status == 201 {
                    outcomes.acked.insert(key.clone(), sku.clone());
                }
                if was_down && down.load(std::sync::atomic::Ordering::SeqCst) {
                    let involved = cluster.involves("n3", sku, &key);
                    outcomes.while_down.push((involved, status, latency));
                }
            }
        }));
    }
    // Orders are flowing before the kill, while n3 is down, and after it is back.
    let acked_at_least = |n: usize| {
        let outcomes = outcomes.clone();
        move || {
            let outcomes = outcomes.clone();
            async move { outcomes.lock().await.acked.len() >= n }
        }
    };
    n1.wait_until(acked_at_least(LOAD_SAMPLES)).await;
    n3.kill9();
    let killed = Instant::now();
    let probe = format!("/api/inventory?skuCode={s3}");
    time_until_status(&n1, &probe, 503).await;
    let detected_kill = killed.elapsed();
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    n1.wait_until(|| async {
        let outcomes = outcomes.lock().await;
        let involved = outcomes.while_down.iter().filter(|w| w.0).count();
        involved >= LOAD_SAMPLES && outcomes.while_down.len() - involved >= LOAD_SAMPLES
    })
    .await;
    down.store(false, std::sync::atomic::Ordering::SeqCst);

    let restarted = Instant::now();
    let n3 = cluster.start("n3", dirs[2].path()).await;
    time_until_status(&n1, &probe, 200).await;
    time_until_status(&n2, &probe, 200).await;
    let recovered_kill = restarted.elapsed();
    wait_for_mesh(&[&n1, &n2, &n3]).await;
    let acked = outcomes.lock().await.acked.len();
    n1.wait_until(acked_at_least(acked + LOAD_SAMPLES)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for task in load {
        task.await.unwrap();
    }

    let outcomes = outcomes.lock().await;
    let (involved, others): (Vec<_>, Vec<_>) =
        outcomes.while_down.iter().partition(|(inv, _, _)| *inv);
    assert!(!involved.is_empty() && !others.is_empty(), "load too small");
    for (_, status, latency) in &involved {
        assert_eq!(*status, 503, "a key on the dead node");
        assert!(*latency < Duration::from_secs(1), "503 took {latency:?}");
    }
    for (_, status, _) in &others {
        assert_eq!(*status, 201, "a key on a live node");
    }
    eprintln!(
        "cluster: kill -9 seen in {detected_kill:?}; while down {} orders on live keys all 201, \
         {} on the dead node's keys all 503 (slowest {:?}); restart to serving again {recovered_kill:?}",
        others.len(),
        involved.len(),
        involved.iter().map(|(_, _, l)| *l).max().unwrap_or_default()
    );

    // Audit: every acknowledged order readable, no unit lost or oversold, every event once.
    for key in outcomes.acked.keys() {
        let number = OrderNumber::for_idempotency_key(key);
        let order = n3.json(&format!("/api/order/{number}")).await;
        assert_eq!(order["status"], "PLACED", "{key}");
    }
    n1.wait_until(|| async { audit_balances(&n1, &skus).await })
        .await;
    let orders = n2.all_orders().await;
    let events = n1.wait_for_notifications(orders.len()).await;
    let counts = notification_counts(&events);
    for order in &orders {
        let number = order["orderNumber"].as_str().unwrap().to_owned();
        assert_eq!(counts.get(&(number, "OrderPlaced".to_owned())), Some(&1));
    }
    assert_eq!(events.len(), orders.len(), "no stray events");

    // A frozen node keeps its sockets open: the leases find it.
    let frozen_probe = format!("/api/inventory?skuCode={s2}");
    n2.signal("STOP");
    let frozen = Instant::now();
    n1.wait_until(|| async { n1.health_of("cluster").await.1.contains("n2 unreachable") })
        .await;
    let detected_freeze = frozen.elapsed();
    let started = Instant::now();
    assert_eq!(n1.get(&frozen_probe).await.status(), 503);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "a known-down node fails fast"
    );
    n2.signal("CONT");
    let resumed = Instant::now();
    time_until_status(&n1, &frozen_probe, 200).await;
    eprintln!(
        "cluster: SIGSTOP seen through leases in {detected_freeze:?}; serving again {:?} after SIGCONT",
        resumed.elapsed()
    );

    // A node with the wrong cookie cannot join.
    let dir4 = tempfile::tempdir().unwrap();
    let env = [
        ("AGORA_NODE", "n4"),
        ("AGORA_CLUSTER", &*free_addr().to_string()),
        ("AGORA_JOIN", &*cluster.cluster_addrs["n1"]),
        ("AGORA_COOKIE", "not-the-cookie"),
        ("AGORA_MEMBERS", MEMBERS),
        ("AGORA_ROLES", "gateway"),
        ("AGORA_KAFKA_BROKERS", &*n1.kafka_brokers),
        ("RUST_LOG", LOG_FILTER),
    ];
    let n4 = TestApp::spawn_process(dir4.path(), &env).await;
    n4.wait_until(|| async { n4.logged("cookies differ") })
        .await;
    let apps = n1.get_accept("/eureka/apps", "application/json").await;
    assert!(!apps.contains("n4:"), "n4 joined with a wrong cookie");
}

/// stock + units sold = initial, for every SKU (sold: lines of every order in the cluster).
async fn audit_balances(app: &TestApp, skus: &[String]) -> bool {
    let sold = sold(&app.all_orders().await);
    let query: Vec<String> = skus.iter().map(|s| format!("skuCode={s}")).collect();
    let levels: Value = app
        .json(&format!("/api/inventory?{}", query.join("&")))
        .await;
    levels.as_array().unwrap().len() == skus.len()
        && levels.as_array().unwrap().iter().all(|level| {
            let sku = level["skuCode"].as_str().unwrap();
            level["quantity"].as_u64().unwrap() + sold.get(sku).copied().unwrap_or(0) == INITIAL
        })
}
