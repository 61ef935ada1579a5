//! Every answer a test's orders got (status and order number), the order load of several
//! clients, the wait for a failover, and the audit of what the cluster kept against the answers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora::domain::OrderNumber;
use futures::future::join_all;
use reqwest::Method;
use serde_json::Value;
use tokio::task::JoinHandle;

use super::history::levels;
use super::shop::{PATIENCE, POLL};
use super::view::{cluster_view, led_without};
use crate::integration::support::{
    notification_counts, order_body, order_line, retry, sold, TestApp,
};

/// The answer to one order of one unit.
#[derive(Debug, Clone)]
pub struct Answer {
    gateway: String,
    sku: String,
    /// 0 when no answer came.
    pub status: u16,
    /// No connection to the gateway (refused): no answer, and no order either.
    unreached: bool,
    retry_after: bool,
    /// From the body of a 201; else the number the Idempotency-Key names.
    number: String,
    body: Value,
}

impl Answer {
    /// 201, 409, or 503 in JSON with `Retry-After`: nothing else may answer an order here.
    fn allowed(&self) -> bool {
        matches!(self.status, 201 | 409)
            || (self.status == 503 && self.retry_after && self.body.is_object())
    }
}

#[derive(Default)]
pub struct Ledger {
    answers: Mutex<Vec<Answer>>,
}

impl Ledger {
    /// Orders one unit of `sku` through `app` under a fresh Idempotency-Key; records the answer.
    pub async fn place(&self, app: &TestApp, sku: &str) -> Answer {
        let key = uuid::Uuid::new_v4().to_string();
        let sent = app
            .http(Method::POST, "/api/order")
            .header("idempotency-key", &key)
            .json(&order_body(vec![order_line(sku, 1)]))
            .send()
            .await;
        let (status, unreached, retry_after, body) = match sent {
            Ok(response) => (
                response.status().as_u16(),
                false,
                response.headers().contains_key("retry-after"),
                response.json().await.unwrap_or_default(),
            ),
            Err(e) => (0, e.is_connect(), false, Value::String(e.to_string())),
        };
        let number = match body["orderNumber"].as_str() {
            Some(number) if status == 201 => number.to_owned(),
            _ => OrderNumber::for_idempotency_key(&key).to_string(),
        };
        let answer = Answer {
            gateway: app.base.clone(),
            sku: sku.to_owned(),
            status,
            unreached,
            retry_after,
            number,
            body,
        };
        self.answers.lock().expect("ledger").push(answer.clone());
        answer
    }

    pub fn acked(&self) -> usize {
        let answers = self.answers.lock().expect("ledger");
        answers.iter().filter(|a| a.status == 201).count()
    }

    /// Waits until at least `n` orders were acknowledged.
    pub async fn wait_acked(&self, n: usize) {
        let attempt = || async move {
            let acked = self.acked();
            (acked >= n)
                .then_some(())
                .ok_or_else(|| format!("{acked} orders acknowledged, not {n}"))
        };
        retry(POLL, PATIENCE, attempt).await
    }

    /// Fails on any answer but 201, 409 and 503 with `Retry-After`; returns the count of each
    /// (under 0, the orders whose gateway refused the connection: not answers).
    pub fn check_answers(&self) -> BTreeMap<u16, usize> {
        let answers = self.answers.lock().expect("ledger");
        let wrong = answers.iter().filter(|a| !a.allowed() && !a.unreached);
        let wrong: Vec<&Answer> = wrong.collect();
        assert!(
            wrong.is_empty(),
            "{} answers other than 201, 409 and 503 with Retry-After, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        let mut tally = BTreeMap::new();
        for answer in answers.iter() {
            *tally.entry(answer.status).or_insert(0) += 1;
        }
        tally
    }

    /// The numbers of the acknowledged orders, and of the refused (409) ones.
    fn outcomes(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        let answers = self.answers.lock().expect("ledger");
        let numbers = |status| {
            let with = answers.iter().filter(|a| a.status == status);
            with.map(|a| a.number.clone()).collect()
        };
        (numbers(201), numbers(409))
    }
}

/// Clients ordering without pause (but 20 ms after a refusal), each through one gateway of a
/// list the test may change while they run.
pub struct Load {
    stop: Arc<AtomicBool>,
    gateways: Arc<Mutex<Vec<Arc<TestApp>>>>,
    clients: Vec<JoinHandle<()>>,
}

impl Load {
    /// `clients` clients spread round-robin over `gateways`, each ordering one unit of every SKU
    /// in turn, from its own place in the list.
    pub fn start(
        clients: usize,
        gateways: &[Arc<TestApp>],
        skus: &[String],
        ledger: &Arc<Ledger>,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let gateways = Arc::new(Mutex::new(gateways.to_vec()));
        let clients = (0..clients).map(|client| {
            let (stop, ledger) = (stop.clone(), ledger.clone());
            let (gateways, skus) = (gateways.clone(), skus.to_vec());
            tokio::spawn(async move {
                for sku in skus.iter().cycle().skip(client) {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let gateway = {
                        let gateways = gateways.lock().expect("gateways");
                        gateways[client % gateways.len()].clone()
                    };
                    if ledger.place(&gateway, sku).await.status != 201 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            })
        });
        let clients = clients.collect();
        Load {
            stop,
            gateways,
            clients,
        }
    }

    /// From their next order on, the clients send nothing through `app`.
    pub fn avoid(&self, app: &TestApp) {
        let mut gateways = self.gateways.lock().expect("gateways");
        gateways.retain(|gateway| gateway.base != app.base);
    }

    /// From their next order on, the clients send through `gateways`.
    pub fn send_through(&self, gateways: &[Arc<TestApp>]) {
        *self.gateways.lock().expect("gateways") = gateways.to_vec();
    }

    pub async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for client in self.clients {
            client.await.expect("a load client ended cleanly");
        }
    }
}

/// Waits until every SKU took a 201 through each of `gateways` (every 50 ms a new order).
pub async fn take_everywhere(gateways: &[&TestApp], skus: &[String], ledger: &Ledger) {
    let probes = gateways.iter().flat_map(|app| {
        skus.iter().map(move |sku| {
            let attempt = move || async move {
                let answer = ledger.place(app, sku).await;
                match answer.status {
                    201 => Ok(()),
                    _ => Err(format!(
                        "{} through {}: still {answer:?}",
                        answer.sku, answer.gateway
                    )),
                }
            };
            retry(POLL, PATIENCE, attempt)
        })
    });
    join_all(probes).await;
}

/// After `gone` died or froze at `since`: the time until each of `gateways` sees a live leader
/// for every partition, and the time until every SKU then took a 201 through each of them.
pub async fn failover(
    gone: &str,
    gateways: &[&TestApp],
    skus: &[String],
    ledger: &Ledger,
    since: Instant,
) -> (Duration, Duration) {
    wait_led_without(gateways, gone).await;
    let elected = since.elapsed();
    take_everywhere(gateways, skus, ledger).await;
    (elected, since.elapsed())
}

/// Waits until each of `gateways` sees every partition led, none by `gone`.
pub async fn wait_led_without(gateways: &[&TestApp], gone: &str) {
    for app in gateways {
        let attempt = || async move { led_without(&cluster_view(app).await?, gone) };
        retry(POLL, PATIENCE, attempt).await;
    }
}

/// Through `app`: every acknowledged order is listed and no refused one; per SKU, stock + sold
/// = `initial` and stock never below zero; each listed order's `OrderPlaced` arrived exactly
/// once and no event twice. Retried a while, as events reach the notifications after the answer.
/// Returns how many orders are listed.
pub async fn audit(app: &TestApp, initial: &BTreeMap<String, u64>, ledger: &Ledger) -> usize {
    let (acked, refused) = ledger.outcomes();
    let (acked, refused) = (&acked, &refused);
    let attempt = || async move {
        let orders = app.all_orders().await;
        let numbers = orders.iter().filter_map(|o| o["orderNumber"].as_str());
        let listed: BTreeSet<&str> = numbers.collect();
        if listed.len() != orders.len() {
            let extra = orders.len() - listed.len();
            return Err(format!(
                "{extra} repeated entries among {} listed orders",
                orders.len()
            ));
        }
        if let Some(lost) = acked.iter().find(|n| !listed.contains(n.as_str())) {
            return Err(format!("acknowledged order {lost} is not listed"));
        }
        if let Some(both) = refused.iter().find(|n| listed.contains(n.as_str())) {
            return Err(format!("order {both} was refused (409) and is listed"));
        }
        let sold = sold(&orders);
        let levels = stock_levels(app, initial.keys()).await?;
        for (sku, start) in initial {
            let (left, sold) = (levels[sku], sold.get(sku).copied().unwrap_or(0));
            if left < 0 || left as u64 + sold != *start {
                return Err(format!("{sku}: {left} in stock + {sold} sold ≠ {start}"));
            }
        }
        let counts = notification_counts(&app.notifications().await);
        if let Some(((number, kind), n)) = counts.iter().find(|(_, n)| **n != 1) {
            return Err(format!("{kind} of {number} arrived {n} times"));
        }
        let placed = |n: &&str| counts.contains_key(&(n.to_string(), "OrderPlaced".to_owned()));
        if let Some(missing) = listed.iter().find(|n| !placed(n)) {
            return Err(format!("no OrderPlaced for {missing} (yet)"));
        }
        Ok(orders.len())
    };
    let orders = retry(Duration::from_millis(200), PATIENCE, attempt).await;
    eprintln!(
        "replicated: audit through {} clean: {orders} orders, {} acknowledged, {} refused",
        app.base,
        acked.len(),
        refused.len()
    );
    orders
}

/// The stock of each of `skus`, in one request.
async fn stock_levels(
    app: &TestApp,
    skus: impl Iterator<Item = &String>,
) -> Result<BTreeMap<String, i64>, String> {
    let query: Vec<String> = skus.map(|s| format!("skuCode={s}")).collect();
    let path = format!("/api/inventory?{}", query.join("&"));
    let response = app.get(&path).await;
    if !response.status().is_success() {
        return Err(format!("GET {path}: {}", response.status()));
    }
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    let levels = levels(&body);
    match levels.len() == query.len() {
        true => Ok(levels),
        false => Err(format!("GET {path} gave {levels:?}")),
    }
}
