//! The clients of a history test: tasks ordering one unit (three times in four) or reading a
//! SKU's stock, without pause but 20 ms after an answer other than 201 or a stock, each through
//! a gateway of a shared list the test changes as nodes come and go ([`Clients::route`]). A
//! client takes its gateway for one request at a time, so a test can kill, stop or remove a
//! node between two of them. Every operation goes into the [`History`]. An order that got 503
//! or no answer is sent once more under the same Idempotency-Key through the next gateway, as
//! real clients do: so two sagas of one order may run at once, the first on a leader frozen or
//! cut off, the second on its successor.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tokio::task::JoinHandle;

use super::history::{History, Outcome};
use super::shop::{PATIENCE, POLL};
use crate::integration::support::{retry, TestApp};

/// Where clients send their requests: client `i` uses gateway `i % len`.
type Gateways = Arc<RwLock<Vec<Arc<TestApp>>>>;

pub struct Clients {
    gateways: Gateways,
    stop: Arc<AtomicBool>,
    placed: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<()>>,
}

impl Clients {
    /// `n` clients over `skus`, through `gateways`.
    pub fn start(
        n: usize,
        history: &Arc<History>,
        gateways: &[Arc<TestApp>],
        skus: &[String],
    ) -> Clients {
        let shared: Gateways = Arc::new(RwLock::new(gateways.to_vec()));
        let stop = Arc::new(AtomicBool::new(false));
        let placed = Arc::new(AtomicUsize::new(0));
        let clients = (0..n).map(|client| {
            let (stop, placed, history) = (stop.clone(), placed.clone(), history.clone());
            let (gateways, skus) = (shared.clone(), skus.to_vec());
            tokio::spawn(async move {
                for (turn, sku) in skus.iter().cycle().skip(client).enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let gateway = |nth: usize| {
                        let gateways = gateways.read().expect("gateways");
                        gateways[nth % gateways.len()].clone()
                    };
                    let outcome = match turn % 4 {
                        3 => history.read_stock(client, &gateway(client), sku).await,
                        _ => {
                            let key = uuid::Uuid::new_v4().to_string();
                            let app = gateway(client);
                            match history.order_under(client, &app, sku, &key).await {
                                Outcome::Unavailable | Outcome::Indeterminate(_) => {
                                    drop(app);
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                    let next = gateway(client + 1);
                                    history.order_under(client, &next, sku, &key).await
                                }
                                outcome => outcome,
                            }
                        }
                    };
                    match outcome {
                        Outcome::Placed => drop(placed.fetch_add(1, Ordering::SeqCst)),
                        Outcome::Stock(_) => {}
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        });
        let clients = clients.collect();
        Clients {
            gateways: shared,
            stop,
            placed,
            clients,
        }
    }

    /// From their next request on, the clients go through `gateways` (not empty).
    pub fn route(&self, gateways: &[Arc<TestApp>]) {
        assert!(!gateways.is_empty(), "clients need a gateway");
        *self.gateways.write().expect("gateways") = gateways.to_vec();
    }

    /// How many orders the clients placed so far.
    pub fn placed(&self) -> usize {
        self.placed.load(Ordering::SeqCst)
    }

    /// Waits until the clients placed `n` orders in all.
    pub async fn wait_placed(&self, n: usize) {
        let attempt = || async {
            let placed = self.placed();
            (placed >= n)
                .then_some(())
                .ok_or_else(|| format!("{placed} orders placed, not {n}"))
        };
        retry(POLL, PATIENCE, attempt).await
    }

    /// Waits until the clients placed `n` more orders.
    pub async fn wait_more(&self, n: usize) {
        self.wait_placed(self.placed() + n).await
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.await.expect("a client ended cleanly");
        }
    }
}

/// Waits until every SKU of `skus` takes an order through each of `gateways`, each probe in
/// the history; returns when, from `since`.
pub async fn serving_through(
    history: &History,
    gateways: &[Arc<TestApp>],
    skus: &[String],
    since: Instant,
) -> Duration {
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
