//! Network partitions (issue 13): three nodes whose every link goes through a proxy (`proxy`),
//! clients ordering and reading stock through every node into one `History`, and faults on the
//! links: one node cut off from the others, then a seeded schedule of cuts, one-way links,
//! flaps, delays and resets (`nemesis`). `AGORA_NEMESIS_SECS` makes it a soak, which every
//! [`NODE_EVERY`] also pauses, kills, wipes, or removes and adds again one node, the broker
//! then outside the nodes. The history checker then finds every acknowledged order kept, no
//! refused one, the stock accounted for, one event per order and no stock read going back in
//! time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::clients::{serving_through, Clients};
use super::history::{History, Outcome};
use super::nemesis::{seed, soak_secs, Applied, Nemesis, NodeFault};
use super::shop::{Setup, Shop, NODES};
use super::{stock_for_load, stock_lasting, ONE_CLUSTER_AT_A_TIME, PLENTY};
use crate::integration::support::TestApp;

/// How long the isolated node stays cut off: past the election timeout and the lease.
const ISOLATED: Duration = Duration::from_secs(6);
/// The nemesis's schedule in `cargo test`, without `AGORA_NEMESIS_SECS`.
const NEMESIS_SECS: u64 = 20;
/// How long each fault of the schedule lasts.
const STEP: Duration = Duration::from_secs(2);
/// In a soak, how long the links' faults go on between two faults of a node, and how long a
/// paused node stays frozen (past the election timeout and the lease).
const NODE_EVERY: Duration = Duration::from_secs(10);
const PAUSED: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_node_acknowledges_nothing_while_the_majority_serves() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let shop = Shop::form(partitioned()).await;
    let (plenty, initial) = stock_for_load(&shop.node("n1")).await;
    let history = Arc::new(History::new("isolated_node", 0));
    let skus: Vec<String> = initial.keys().cloned().collect();
    let clients = Clients::start(2 * NODES.len(), &history, &shop.gateways(), &skus);
    clients.wait_placed(20).await;

    let (victim, led) = shop.leader_among(&["n2", "n3"]).await;
    let majority: Vec<Arc<TestApp>> = (NODES.into_iter())
        .filter(|n| *n != victim)
        .map(|n| shop.node(n))
        .collect();
    shop.net().isolate(victim);
    let cut = Instant::now();
    history.note(cut, format!("isolate {victim}"));
    let served = serving_through(&history, &majority, &plenty, cut).await;
    eprintln!(
        "partitions: {victim} (leader of {} partitions) cut off; every SKU ordered through the \
         majority after {served:?}",
        led.len()
    );
    let minority = shop.node(victim);
    let mut answers = Vec::new();
    while cut.elapsed() < ISOLATED {
        answers.push(history.order(usize::MAX, &minority, &plenty[0]).await);
    }
    shop.net().heal_all();
    history.note(Instant::now(), "heal");
    drop(minority);
    shop.wait_whole().await;
    eprintln!(
        "partitions: healed after {:?}, whole again after {:?}",
        ISOLATED,
        cut.elapsed()
    );
    let placed_alone = answers.iter().filter(|a| **a == Outcome::Placed).count();
    let unavailable = answers
        .iter()
        .filter(|a| **a == Outcome::Unavailable)
        .count();
    clients.stop().await;
    history.verify(&shop.node("n1"), &initial).await;
    assert_eq!(
        placed_alone, 0,
        "the cut-off {victim} acknowledged orders: {answers:?}"
    );
    assert_eq!(
        unavailable,
        answers.len(),
        "the cut-off {victim} answered orders with other than 503 and Retry-After: {answers:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seeded_cuts_one_way_links_flaps_and_delays_lose_nothing() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    // A soak kills the seed too: the broker must outlive it.
    let setup = Setup {
        outside_kafka: soak_secs().is_some(),
        ..partitioned()
    };
    let mut shop = Shop::form(setup).await;
    let length = Duration::from_secs(soak_secs().unwrap_or(NEMESIS_SECS));
    // About four units a second per SKU sell when nothing is refused.
    let lasting = u32::try_from(length.as_secs() * 6).unwrap_or(u32::MAX);
    let (_, initial) = stock_lasting(&shop.node("n1"), lasting.max(PLENTY)).await;
    let seed = seed();
    let history = Arc::new(History::new("nemesis", seed));
    let skus: Vec<String> = initial.keys().cloned().collect();
    let clients = Clients::start(2 * NODES.len(), &history, &shop.gateways(), &skus);
    clients.wait_placed(20).await;

    let mut links = Nemesis::new(seed, NODES.map(str::to_owned).to_vec());
    let faults = match soak_secs() {
        None => links.run(shop.net(), length, STEP).await,
        Some(_) => soak(&mut shop, &clients, &mut links, seed, length).await,
    };
    for applied in &faults {
        history.note(applied.at, applied.what.clone());
    }
    let healed = Instant::now();
    shop.wait_whole().await;
    eprintln!(
        "partitions: {} faults in {length:?} (seed {seed}), whole {:?} after the last heal",
        faults.len(),
        healed.elapsed()
    );
    clients.stop().await;
    let summary = history.verify(&shop.node("n1"), &initial).await;
    assert!(summary.placed > 0, "no order went through: {summary:?}");
}

/// A soak: faults between the nodes for [`NODE_EVERY`], then a fault of a node (drawn from a
/// second schedule of the same seed) with the links healed, and so on for `length`. The
/// clients avoid a node while it is down. Returns every fault with its time.
async fn soak(
    shop: &mut Shop,
    clients: &Clients,
    links: &mut Nemesis,
    seed: u64,
    length: Duration,
) -> Vec<Applied> {
    let mut nodes = Nemesis::new(seed.rotate_left(32), NODES.map(str::to_owned).to_vec());
    let started = Instant::now();
    let mut faults = Vec::new();
    loop {
        let left = length.saturating_sub(started.elapsed());
        faults.extend(links.run(shop.net(), left.min(NODE_EVERY), STEP).await);
        if started.elapsed() >= length {
            return faults;
        }
        let fault = nodes.next_node_fault();
        eprintln!("nemesis +{:.1?}: {fault}", started.elapsed());
        faults.push(Applied::note(format!("{fault}")));
        let took = suffer(shop, clients, &fault).await;
        faults.push(Applied::note(format!("{fault}: whole again")));
        // Whole is not enough: the clients must get orders through again.
        let since = Instant::now();
        clients.wait_more(5).await;
        eprintln!(
            "nemesis: {fault}: whole again after {took:?}, 5 more orders placed {:?} later",
            since.elapsed()
        );
    }
}

/// Applies `fault` to its node and waits until the cluster is whole again; returns how long
/// that took.
async fn suffer(shop: &mut Shop, clients: &Clients, fault: &NodeFault) -> Duration {
    let started = Instant::now();
    let (NodeFault::Pause(name)
    | NodeFault::Kill(name)
    | NodeFault::Wipe(name)
    | NodeFault::Rejoin(name)) = fault;
    let node = NODES
        .into_iter()
        .find(|n| n == name)
        .expect("a node of the shop");
    if let NodeFault::Pause(_) = fault {
        let app = shop.node(node);
        app.signal("STOP");
        tokio::time::sleep(PAUSED).await;
        app.signal("CONT");
        shop.wait_whole().await;
        return started.elapsed();
    }
    clients.route(&shop.gateways_but(node));
    match fault {
        NodeFault::Rejoin(_) => {
            shop.leave(node).await;
            shop.expect_members(&NODES);
        }
        _ => shop.kill(node).await,
    }
    shop.restart(node, !matches!(fault, NodeFault::Kill(_)))
        .await;
    clients.route(&shop.gateways());
    started.elapsed()
}

fn partitioned() -> Setup {
    Setup {
        proxied: true,
        ..Setup::default()
    }
}
