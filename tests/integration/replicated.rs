//! Partitions replicated on openraft, membership from `--join` alone (issue 12): three real
//! processes on loopback formed from one seed, each with its own data directory. Orders through
//! every node; kill -9 of a partition leader under order load, and its restart; a node wiped and
//! rejoining under its name; a frozen leader. Prints the measured failover and catch-up times.
//! One cluster at a time: on two cores, timings of two clusters would measure each other.

mod ledger;
mod shop;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use self::ledger::{audit, failover, take_everywhere, Ledger, Load};
use self::shop::{cluster_view, terms, Shop, Terms, NODES, PATIENCE, POLL};
use super::support::{retry, TestApp};

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Enough stock that only the scarce SKU of the load runs out.
const PLENTY: u32 = 1_000;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_from_one_seed_share_one_shop() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let shop = Shop::form().await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_loses_nothing_and_comes_back() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut shop = Shop::form().await;
    let (n1, n3) = (shop.node("n1"), shop.node("n3"));
    let plenty = skus(6);
    let mut initial = stock_up(&n1, &plenty, PLENTY).await;
    // One SKU runs out under the load: no oversell across the failover.
    let scarce = vec!["r-scarce".to_owned()];
    initial.append(&mut stock_up(&n1, &scarce, 6).await);
    let everything: Vec<String> = initial.keys().cloned().collect();
    let (victim, led) = shop.leader_among(&["n2"]).await;

    let ledger = Arc::new(Ledger::default());
    let load = Load::start(4, &[n1.clone(), n3.clone()], &everything, &ledger);
    ledger.wait_acked(30).await;
    shop.kill(victim);
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
    audit(&shop.node(victim), &initial, &ledger).await;
    // Checked last, so that a slow failover does not hide what the rest finds.
    assert!(
        serving < Duration::from_secs(5),
        "every SKU must take orders again within 5 s of the kill, took {serving:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_node_rejoins_under_its_name() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut shop = Shop::form().await;
    let n1 = shop.node("n1");
    let skus = skus(4);
    let initial = stock_up(&n1, &skus, 50).await;
    let ledger = Ledger::default();
    take_everywhere(&shop.running(), &skus, &ledger).await;
    let mut before = BTreeMap::new();
    for sku in &skus {
        before.insert(sku, n1.stock(sku).await);
    }

    shop.kill("n3");
    let caught_up = shop.restart("n3", true).await;
    eprintln!("replicated: n3 wiped, rejoined under its name, a replica of every partition again after {caught_up:?}");
    let n3 = shop.node("n3");
    for (sku, left) in before {
        assert_eq!(n3.stock(sku).await, left, "{sku} through the wiped n3");
    }
    take_everywhere(&[&n3], &skus, &ledger).await;
    ledger.check_answers();
    audit(&n3, &initial, &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_leader_steps_down() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let shop = Shop::form().await;
    let skus = skus(6);
    let initial = stock_up(&shop.node("n1"), &skus, PLENTY).await;
    // Not n1: it hosts the Kafka broker.
    let (victim, led) = shop.leader_among(&["n2", "n3"]).await;
    let frozen = shop.node(victim);
    let mut others = shop.running();
    others.retain(|app| app.base != frozen.base);
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
