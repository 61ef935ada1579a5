//! Partitions replicated on openraft, membership from `--join` alone (issue 12): three real
//! processes on loopback formed from one seed, each with its own data directory. Orders through
//! every node; kill -9 of a partition leader under order load, and its restart; a node wiped and
//! rejoining under its name from snapshots; a frozen leader; a rolling restart under load; and,
//! opt-in, failover measured again and again (`soak.rs`). Prints the measured failover and
//! catch-up times. One cluster at a time: on two cores, timings of two clusters would measure
//! each other.

mod clients;
mod elastic;
mod history;
mod ledger;
mod nemesis;
mod partitions;
mod proxy;
mod shop;
mod soak;
mod stream;
mod view;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use self::ledger::{audit, failover, take_everywhere, Ledger, Load};
use self::shop::{Setup, Shop, NODES, PATIENCE, POLL};
use self::view::{cluster_view, read, sku_per_partition, terms, Terms};
use super::support::{free_addr, retry, TestApp};
use agora::broker::EmbeddedBroker;

pub static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Enough stock that only the scarce SKU of the load runs out.
pub const PLENTY: u32 = 1_000;
/// Log entries between two snapshots of a partition, where a test wants snapshots.
const SNAPSHOT_LOGS: u32 = 20;

fn skus(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("r-{i}")).collect()
}

/// Creates `skus` through `app`, each with `quantity` in stock; returns the initial stock.
async fn stock_up(app: &TestApp, skus: &[String], quantity: u32) -> BTreeMap<String, u64> {
    for sku in skus {
        app.product(sku, 2.5, quantity).await;
    }
    skus.iter().map(|s| (s.clone(), quantity.into())).collect()
}

/// Stock for a load: six SKUs of [`PLENTY`], and one that runs out under the load (no oversell
/// across a failover). Returns the initial stock, the plentiful SKUs first.
pub async fn stock_for_load(app: &TestApp) -> (Vec<String>, BTreeMap<String, u64>) {
    stock_lasting(app, PLENTY).await
}

/// [`stock_for_load`] with `quantity` of each plentiful SKU (a soak's clients would sell out
/// [`PLENTY`] within minutes, and then only be refused).
pub async fn stock_lasting(app: &TestApp, quantity: u32) -> (Vec<String>, BTreeMap<String, u64>) {
    let plenty = skus(6);
    let mut initial = stock_up(app, &plenty, quantity).await;
    initial.append(&mut stock_up(app, &["r-scarce".to_owned()], 6).await);
    (plenty, initial)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_from_one_seed_share_one_shop() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let shop = Shop::form(Setup::default()).await;
    let nodes = NODES.map(|n| shop.node(n));
    let skus = skus(6);
    stock_up(&nodes[0], &skus, 100).await;

    let ledger = Ledger::default();
    for sku in &skus {
        for app in &nodes[1..] {
            let answer = ledger.place(app, sku).await;
            assert_eq!(answer.status, 201, "{answer:?}");
        }
    }
    for app in &nodes {
        for sku in &skus {
            assert_eq!(app.stock(sku).await, 98, "{sku} through {}", app.base);
        }
    }

    // The cluster's notifications, streamed from n1, then resumed on n3 from the last id.
    stream::across_a_reconnect(&nodes[0], &nodes[2], 2 * skus.len()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_loses_nothing_and_comes_back() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut shop = Shop::form(Setup::default()).await;
    let (n1, n3) = (shop.node("n1"), shop.node("n3"));
    let (plenty, initial) = stock_for_load(&n1).await;
    let everything: Vec<String> = initial.keys().cloned().collect();
    let (victim, led) = shop.leader_among(&["n2"]).await;

    let ledger = Arc::new(Ledger::default());
    let load = Load::start(4, &[n1.clone(), n3.clone()], &everything, &ledger);
    ledger.wait_acked(30).await;
    shop.kill(victim).await;
    let killed = Instant::now();
    let (elected, serving) = failover(victim, &[&n1, &n3], &plenty, &ledger, killed).await;
    eprintln!(
        "replicated: kill -9 of {victim} (leader of {} partitions) under load: live leaders for \
         every partition after {elected:?}, every SKU ordered through n1 and n3 after {serving:?}",
        led.len()
    );

    ledger.wait_acked(ledger.acked() + 30).await;
    let rejoined = shop.restart(victim, false).await;
    eprintln!("replicated: {victim} restarted on its data, a replica of every partition again after {rejoined:?}");
    ledger.wait_acked(ledger.acked() + 30).await;
    load.stop().await;
    eprintln!(
        "replicated: answers under load {:?}",
        ledger.check_answers()
    );
    let orders = audit(&shop.node(victim), &initial, &ledger).await;
    // After the leaders moved twice: streamed from n1, resumed on the restarted node.
    stream::across_a_reconnect(&n1, &shop.node(victim), orders).await;
    // Checked last, so that a slow failover does not hide what the rest finds.
    assert!(
        serving < Duration::from_secs(5),
        "every SKU must take orders again within 5 s of the kill, took {serving:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_rejoins_under_its_name() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut shop = Shop::form(Setup {
        snapshot_logs: Some(SNAPSHOT_LOGS),
        ..Setup::default()
    })
    .await;
    let skus = sku_per_partition();
    let initial = stock_up(&shop.node("n1"), &skus, PLENTY).await;
    // Every partition past four snapshots, its log compacted (the server purges 64 entries at
    // the least): the wiped node can only catch up from snapshots.
    let ledger = Arc::new(Ledger::default());
    let ordering = Instant::now();
    let load = Load::start(8, &shop.gateways(), &skus, &ledger);
    let applied = shop.wait_applied("n1", u64::from(4 * SNAPSHOT_LOGS)).await;
    load.stop().await;
    eprintln!(
        "replicated: {} orders in {:?} wrote, per partition, {applied:?} log entries",
        ledger.acked(),
        ordering.elapsed()
    );

    shop.kill("n3").await;
    let whole = shop.restart("n3", true).await;
    let wiped = Instant::now() - whole;
    shop.wait_caught_up("n3", 2).await;
    let snapshots = shop.snapshots_installed("n3");
    eprintln!(
        "replicated: n3 wiped, rejoined under its name, a replica of every partition again after \
         {whole:?}, as far as the leaders after {:?} ({snapshots} snapshots installed)",
        wiped.elapsed()
    );
    assert!(snapshots > 0, "the wiped n3 caught up without a snapshot");
    let (n1, n3) = (shop.node("n1"), shop.node("n3"));
    for sku in &skus {
        same_through(&[&n1, &n3], &format!("/api/inventory?skuCode={sku}")).await;
    }
    take_everywhere(&[&n3], &skus, &ledger).await;
    eprintln!("replicated: answers {:?}", ledger.check_answers());
    audit(&n3, &initial, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_leader_steps_down() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let shop = Shop::form(Setup::default()).await;
    let skus = skus(6);
    let initial = stock_up(&shop.node("n1"), &skus, PLENTY).await;
    // Not n1: it hosts the Kafka broker.
    let (victim, led) = shop.leader_among(&["n2", "n3"]).await;
    let frozen = shop.node(victim);
    let others = shop.running_but(victim);
    let ledger = Arc::new(Ledger::default());
    take_everywhere(&shop.running(), &skus[..1], &ledger).await;

    frozen.signal("STOP");
    let stopped = Instant::now();
    // An order sent to the frozen leader: answered after SIGCONT, and 201 only if committed.
    let stuck = {
        let (frozen, ledger, sku) = (frozen.clone(), ledger.clone(), skus[0].clone());
        tokio::spawn(async move { ledger.place(&frozen, &sku).await })
    };
    let (elected, serving) = failover(victim, &others, &skus, &ledger, stopped).await;
    eprintln!(
        "replicated: SIGSTOP of {victim} (leader of {} partitions): new leaders after \
         {elected:?}, every SKU ordered through the others after {serving:?}",
        led.len()
    );
    frozen.signal("CONT");
    let resumed = Instant::now();
    let stuck = stuck.await.expect("the order sent to the frozen node");
    eprintln!(
        "replicated: the order sent to the frozen {victim} answered {} after SIGCONT",
        stuck.status
    );
    wait_stepped_down(&frozen, &led).await;
    shop.wait_whole().await;
    eprintln!(
        "replicated: {victim} back in the cluster {:?} after SIGCONT",
        resumed.elapsed()
    );

    take_everywhere(&shop.running(), &skus, &ledger).await;
    eprintln!("replicated: answers {:?}", ledger.check_answers());
    audit(&frozen, &initial, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_answers_only_201_409_or_503() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    // Kafka outside the cluster: the seed's embedded broker would lose, with the seed's process,
    // the events it had acknowledged but not handed to a consumer yet.
    let mut shop = Shop::form(Setup {
        outside_kafka: true,
        ..Setup::default()
    })
    .await;
    let (_, initial) = stock_for_load(&shop.node("n1")).await;
    let everything: Vec<String> = initial.keys().cloned().collect();
    let ledger = Arc::new(Ledger::default());
    let load = Load::start(4, &shop.gateways(), &everything, &ledger);
    ledger.wait_acked(30).await;

    let rolling = Instant::now();
    for node in NODES {
        load.avoid(&shop.node(node));
        let stopped = shop.stop(node).await;
        let back = shop.restart(node, false).await;
        load.send_through(&shop.gateways());
        eprintln!(
            "replicated: {node} stopped in {stopped:?} after SIGTERM, restarted, the cluster \
             whole again {back:?} after its start"
        );
        ledger.wait_acked(ledger.acked() + 20).await;
    }
    eprintln!(
        "replicated: rolling restart of three nodes under load in {:?}",
        rolling.elapsed()
    );
    load.stop().await;
    eprintln!(
        "replicated: answers under load {:?}",
        ledger.check_answers()
    );
    audit(&shop.node("n2"), &initial, &ledger).await;
}

/// A cluster of one member (replication factor 1, where a write completes before the node's
/// flush and the writer waits for the flush before it answers): kill -9 in the middle of an
/// order load, a restart on the same data, and the audit finds every acknowledged order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_one_member_cluster_killed_under_load_keeps_every_acknowledged_order() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let kafka = EmbeddedBroker::start("notificationTopic").expect("a Kafka broker in the test");
    let (cluster, brokers) = (free_addr().to_string(), kafka.bootstrap_servers());
    let env = [
        ("AGORA_NODE", "n1"),
        ("AGORA_CLUSTER", cluster.as_str()),
        ("AGORA_COOKIE", "replicated-test"),
        ("AGORA_KAFKA_BROKERS", brokers.as_str()),
    ];
    let app = Arc::new(TestApp::spawn_process(dir.path(), &env).await);
    led_by_itself(&app).await;
    let (_, initial) = stock_for_load(&app).await;
    let everything: Vec<String> = initial.keys().cloned().collect();
    let ledger = Arc::new(Ledger::default());
    let load = Load::start(8, std::slice::from_ref(&app), &everything, &ledger);
    ledger.wait_acked(100).await;
    app.signal("KILL");
    load.stop().await;
    drop(app);
    let app = TestApp::spawn_process(dir.path(), &env).await;
    led_by_itself(&app).await;
    eprintln!(
        "replicated: one member killed after {} acknowledged orders",
        ledger.acked()
    );
    audit(&app, &initial, &ledger).await;
}

/// Waits until `app`, a cluster of one, leads each of its partitions.
async fn led_by_itself(app: &TestApp) {
    let attempt = || async {
        let view = cluster_view(app).await?;
        let partitions = view["partitions"].as_array().cloned().unwrap_or_default();
        match partitions.iter().all(|p| p["leader"] == view["node"]) {
            true if !partitions.is_empty() => Ok(()),
            _ => Err(format!("not every partition led yet: {view}")),
        }
    };
    retry(POLL, PATIENCE, attempt).await;
}

/// Waits until `path` reads the same through each of `apps` (reads settle no reservation, but a
/// settler may between two of them).
async fn same_through(apps: &[&TestApp], path: &str) {
    let attempt = || async {
        let mut bodies = Vec::new();
        for app in apps {
            bodies.push(read(app, path).await?);
        }
        match bodies.windows(2).all(|two| two[0] == two[1]) {
            true => Ok(()),
            false => Err(format!("GET {path} differs through the nodes: {bodies:?}")),
        }
    };
    retry(POLL, PATIENCE, attempt).await
}

/// Waits until `app` sees, for each partition it led at the terms in `led`, a later term.
async fn wait_stepped_down(app: &TestApp, led: &Terms) {
    let attempt = || async move {
        let now = terms(&cluster_view(app).await?);
        let same = |&(p, term): &(&u64, &u64)| now.get(p).is_none_or(|t| t <= term);
        match led.iter().find(same) {
            Some((p, term)) => Err(format!("partition {p} still at term {term}: {now:?}")),
            None => Ok(()),
        }
    };
    retry(POLL, PATIENCE, attempt).await
}
