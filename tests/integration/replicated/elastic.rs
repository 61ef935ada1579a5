//! The cluster changing shape while it serves (issue 13): a fourth node joins under order load
//! and takes its share of replicas and leaderships; a node leaves gracefully (`POST
//! /cluster/leave`) and exits once the others hold its partitions; then a node is killed.
//! Clients order and read stock throughout into a `History`, whose checker then finds nothing
//! wrong (answers only 201, 409 and 503 with `Retry-After`, nothing acknowledged lost, stock
//! accounted for, one event per order, reads never back in time). Prints how long each step
//! took and the partitions per node before and after.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::clients::{serving_through, Clients};
use super::history::History;
use super::ledger::wait_led_without;
use super::shop::{Setup, Shop, PATIENCE, POLL};
use super::view::{cluster_view, partition_number, partitions};
use super::{stock_for_load, ONE_CLUSTER_AT_A_TIME};
use crate::integration::support::{retry, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cluster_grows_and_shrinks_under_load() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut shop = Shop::form(Setup::default()).await;
    let n1 = shop.node("n1");
    let (plenty, initial) = stock_for_load(&n1).await;
    let everything: Vec<String> = initial.keys().cloned().collect();
    let history = Arc::new(History::new("elastic", 0));
    let clients = Clients::start(4, &history, &shop.gateways(), &everything);
    clients.wait_placed(20).await;
    eprintln!("elastic: before n4 joins: {}", shares(&n1).await);

    let gaps = Gaps::watch(n1.clone());
    let asked = Instant::now();
    history.note(asked, "n4 joins");
    let joined = shop.add("n4").await;
    let n4 = shop.node("n4");
    let attempt = || async {
        let view = cluster_view(&n4).await?;
        let leads = partitions(&view).filter(|p| p["leader"] == "n4").count();
        (leads > 0)
            .then_some(leads)
            .ok_or_else(|| "n4 leads no partition yet".to_owned())
    };
    let leads = retry(POLL, PATIENCE, attempt).await;
    drop(n4);
    eprintln!(
        "elastic: n4 joined under load, a voter of its share after {joined:?}, leader of \
         {leads} partitions after {:?}: {}",
        asked.elapsed(),
        shares(&n1).await
    );
    clients.route(&shop.gateways());
    clients.wait_more(20).await;
    eprintln!(
        "elastic: partitions without a leader while n4 joined, as n1 saw them every 50 ms: {}",
        gaps.stop().await
    );

    clients.route(&shop.gateways_but("n2"));
    let gaps = Gaps::watch(n1.clone());
    history.note(Instant::now(), "n2 leaves");
    let drained = shop.leave("n2").await;
    eprintln!(
        "elastic: n2 left under load: exited {drained:?} after POST /cluster/leave: {}",
        shares(&n1).await
    );
    clients.wait_more(20).await;
    eprintln!(
        "elastic: partitions without a leader while n2 left: {}",
        gaps.stop().await
    );

    clients.route(&shop.gateways_but("n3"));
    shop.kill("n3").await;
    let killed = Instant::now();
    history.note(killed, "kill -9 n3");
    wait_led_without(&shop.running(), "n3").await;
    let running = shop.gateways();
    let elected = killed.elapsed();
    let serving = serving_through(&history, &running, &plenty, killed).await;
    eprintln!(
        "elastic: kill -9 of n3: live leaders after {elected:?}, every SKU orderable after \
         {serving:?}"
    );
    clients.wait_more(20).await;
    clients.stop().await;
    history.verify(&n1, &initial).await;
}

/// With `--replace-after 3` and four members: a node killed for longer is removed, its
/// replicas rebuilt on the other three (every partition whole on them); restarted on its data,
/// it is admitted again and receives its share back. The history checker finds nothing wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_gone_past_replace_after_is_replaced_and_comes_back_as_a_new_member() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let setup = Setup {
        replace_after: Some(3),
        ..Setup::default()
    };
    let mut shop = Shop::form(setup).await;
    let n1 = shop.node("n1");
    let (_, initial) = stock_for_load(&n1).await;
    let everything: Vec<String> = initial.keys().cloned().collect();
    let history = Arc::new(History::new("replaced", 0));
    let gateways = [n1.clone(), shop.node("n2")];
    let clients = Clients::start(4, &history, &gateways, &everything);
    clients.wait_placed(20).await;
    shop.add("n4").await;

    shop.kill("n3").await;
    let killed = Instant::now();
    history.note(killed, "kill -9 n3");
    shop.expect_members(&["n1", "n2", "n4"]);
    shop.wait_whole().await;
    eprintln!(
        "elastic: n3 killed, replaced (every partition whole on n1, n2 and n4) after {:?}",
        killed.elapsed()
    );
    clients.wait_more(20).await;
    shop.expect_members(&["n1", "n2", "n3", "n4"]);
    history.note(Instant::now(), "n3 restarts");
    let back = shop.restart("n3", false).await;
    eprintln!("elastic: n3 restarted, admitted again and whole after {back:?}");
    clients.wait_more(20).await;
    clients.stop().await;
    history.verify(&n1, &initial).await;
}

/// Per member, how many partitions it leads and holds a replica of, as `app` sees it.
async fn shares(app: &TestApp) -> String {
    let view = cluster_view(app).await.expect("GET /cluster");
    let mut shares: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for partition in partitions(&view) {
        let replicas = partition["replicas"].as_array().into_iter().flatten();
        for name in replicas.filter_map(|r| r.as_str()) {
            shares.entry(name.to_owned()).or_default().1 += 1;
        }
        if let Some(leader) = partition["leader"].as_str() {
            shares.entry(leader.to_owned()).or_default().0 += 1;
        }
    }
    let shares = shares
        .iter()
        .map(|(n, (l, r))| format!("{n} leads {l}, holds {r}"));
    shares.collect::<Vec<_>>().join("; ")
}

/// Watches `app`'s `GET /cluster` every 50 ms for partitions without a leader, and how long
/// each such stretch lasted: the unavailability a leader change costs a partition.
struct Gaps {
    stop: Arc<AtomicBool>,
    task: JoinHandle<BTreeMap<u64, Vec<Duration>>>,
}

impl Gaps {
    fn watch(app: Arc<TestApp>) -> Gaps {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut since: BTreeMap<u64, Instant> = BTreeMap::new();
            let mut gaps: BTreeMap<u64, Vec<Duration>> = BTreeMap::new();
            while !stopped.load(Ordering::SeqCst) {
                if let Ok(view) = cluster_view(&app).await {
                    for partition in partitions(&view) {
                        let number = partition_number(partition);
                        match partition["leader"].is_string() {
                            false => drop(since.entry(number).or_insert_with(Instant::now)),
                            true => {
                                if let Some(start) = since.remove(&number) {
                                    gaps.entry(number).or_default().push(start.elapsed());
                                }
                            }
                        }
                    }
                }
                tokio::time::sleep(POLL).await;
            }
            gaps
        });
        Gaps { stop, task }
    }

    /// Stops watching; describes the stretches seen (count and longest, per partition).
    async fn stop(self) -> String {
        self.stop.store(true, Ordering::SeqCst);
        let gaps = self.task.await.expect("the watch ended cleanly");
        if gaps.is_empty() {
            return "none".to_owned();
        }
        let each = gaps.iter().map(|(p, g)| {
            let longest = g.iter().max().copied().unwrap_or_default();
            format!("p{p}: {} gap(s), longest {longest:?}", g.len())
        });
        each.collect::<Vec<_>>().join("; ")
    }
}
