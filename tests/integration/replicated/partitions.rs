//! Network partitions (issue 13): three nodes whose every link goes through a proxy (`proxy`),
//! clients ordering and reading stock through every node into one `History`, and faults on the
//! links: one node cut off from the others, then a seeded schedule of cuts, one-way links,
//! flaps, delays and resets (`nemesis`; `AGORA_NEMESIS_SECS` makes it a soak, which also
//! freezes one node after the other with SIGSTOP now and then). The history
//! checker then finds every acknowledged order kept, no refused one, the stock accounted for,
//! one event per order and no stock read going back in time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::task::JoinHandle;

use super::history::{History, Outcome};
use super::nemesis::{seed, soak_secs, Nemesis};
use super::shop::{Setup, Shop, NODES, PATIENCE, POLL};
use super::{stock_for_load, ONE_CLUSTER_AT_A_TIME};
use crate::integration::support::{retry, TestApp};

/// How long the isolated node stays cut off: past the election timeout and the lease.
const ISOLATED: Duration = Duration::from_secs(6);
/// The nemesis's schedule in `cargo test`, without `AGORA_NEMESIS_SECS`.
const NEMESIS_SECS: u64 = 20;
/// How long each fault of the schedule lasts.
const STEP: Duration = Duration::from_secs(2);
/// In a soak, how often a node is frozen, and for how long.
const PAUSE_EVERY: Duration = Duration::from_secs(7);
const PAUSED: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_isolated_node_acknowledges_nothing_while_the_majority_serves() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let shop = Shop::form(partitioned()).await;
    let (plenty, initial) = stock_for_load(&shop.node("n1")).await;
    let history = Arc::new(History::new("isolated_node", 0));
    let skus: Vec<String> = initial.keys().cloned().collect();
    let clients = Clients::start(&history, &shop.gateways(), &skus);
    clients.wait_placed(20).await;

    let (victim, led) = shop.leader_among(&["n2", "n3"]).await;
    let majority: Vec<Arc<TestApp>> = (NODES.into_iter())
        .filter(|n| *n != victim)
        .map(|n| shop.node(n))
        .collect();
    shop.net().isolate(victim);
    let cut = Instant::now();
    history.note(cut, format!("isolate {victim}"));
    let served = serving_through(&history, &majority, &plenty).await;
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
    let shop = Shop::form(partitioned()).await;
    let (_, initial) = stock_for_load(&shop.node("n1")).await;
    let seed = seed();
    let history = Arc::new(History::new("nemesis", seed));
    let skus: Vec<String> = initial.keys().cloned().collect();
    let clients = Clients::start(&history, &shop.gateways(), &skus);
    clients.wait_placed(20).await;

    let length = Duration::from_secs(soak_secs().unwrap_or(NEMESIS_SECS));
    let mut nemesis = Nemesis::new(seed, NODES.map(str::to_owned).to_vec());
    let pauses = soak_secs().map(|_| tokio::spawn(pause_now_and_then(shop.gateways(), length)));
    let faults = nemesis.run(shop.net(), length, STEP).await;
    for (at, pause) in match pauses {
        Some(pauses) => pauses.await.expect("the pauses ended cleanly"),
        None => Vec::new(),
    } {
        history.note(at, pause);
    }
    for applied in &faults {
        history.note(applied.at, applied.fault.to_string());
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

/// In a soak, besides the links' faults: every 7 s one node after the other is frozen
/// (SIGSTOP) for 3 s, past the election timeout and the lease. Returns what it did, when.
async fn pause_now_and_then(nodes: Vec<Arc<TestApp>>, length: Duration) -> Vec<(Instant, String)> {
    let started = Instant::now();
    let mut done = Vec::new();
    for app in nodes.iter().cycle() {
        tokio::time::sleep(PAUSE_EVERY).await;
        if started.elapsed() + PAUSED >= length {
            return done;
        }
        app.signal("STOP");
        done.push((Instant::now(), format!("SIGSTOP {}", app.base)));
        tokio::time::sleep(PAUSED).await;
        app.signal("CONT");
        done.push((Instant::now(), format!("SIGCONT {}", app.base)));
    }
    done
}

fn partitioned() -> Setup {
    Setup {
        proxied: true,
        ..Setup::default()
    }
}

/// Waits until every SKU of `skus` takes an order through each of `gateways`; returns when.
async fn serving_through(
    history: &History,
    gateways: &[Arc<TestApp>],
    skus: &[String],
) -> Duration {
    let since = Instant::now();
    let probes = gateways.iter().flat_map(|app| {
        skus.iter().map(move |sku| {
            let attempt = move || async move {
                match history.order(usize::MAX - 1, app, sku).await {
                    Outcome::Placed => Ok(()),
                    other => Err(format!("{sku} through {}: {other:?}", app.base)),
                }
            };
            retry(POLL, PATIENCE, attempt)
        })
    });
    join_all(probes).await;
    since.elapsed()
}

/// Clients ordering one unit (three times in four) or reading a SKU's stock, each through its
/// gateway, without pause but 20 ms after an answer other than 201 or a stock.
struct Clients {
    stop: Arc<AtomicBool>,
    placed: Arc<Mutex<usize>>,
    clients: Vec<JoinHandle<()>>,
}

impl Clients {
    fn start(history: &Arc<History>, gateways: &[Arc<TestApp>], skus: &[String]) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let placed = Arc::new(Mutex::new(0));
        let clients = (0..gateways.len() * 2).map(|client| {
            let (stop, placed, history) = (stop.clone(), placed.clone(), history.clone());
            let (app, skus) = (gateways[client % gateways.len()].clone(), skus.to_vec());
            tokio::spawn(async move {
                for (turn, sku) in skus.iter().cycle().skip(client).enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let outcome = match turn % 4 {
                        3 => history.read_stock(client, &app, sku).await,
                        _ => history.order(client, &app, sku).await,
                    };
                    match outcome {
                        Outcome::Placed => *placed.lock().expect("placed") += 1,
                        Outcome::Stock(_) => {}
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        });
        let clients = clients.collect();
        Clients {
            stop,
            placed,
            clients,
        }
    }

    /// Waits until the clients placed `n` orders.
    async fn wait_placed(&self, n: usize) {
        let attempt = || async {
            let placed = *self.placed.lock().expect("placed");
            (placed >= n)
                .then_some(())
                .ok_or_else(|| format!("{placed} orders placed, not {n}"))
        };
        retry(POLL, PATIENCE, attempt).await
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.await.expect("a client ended cleanly");
        }
    }
}
