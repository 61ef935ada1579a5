//! Time to recover from a kill -9, in the replicated cluster the `cluster` scenario measured:
//! under one-line order load through two of its nodes, the third is killed with SIGKILL: the
//! one of n2 and n3 that leads most partitions (not n1, which hosts the Kafka broker). From the
//! kill on, two clocks: until both survivors' `/cluster` name a live leader for every
//! partition, and until every SKU has taken an order (201) through a survivor again (a probe
//! that keeps ordering each SKU not served yet, alternating the survivors; the time is the
//! slowest SKU's first 201). Then the audit through a survivor: every acknowledged order
//! present, stock + sold = initial, every event once; an order whose answer the kill cut off
//! may be placed without having been acknowledged.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::cluster::{leaders, tails, view, Node, Plan};
use crate::driver;
use crate::report::{answer_names, Audit, Side};

/// Load before the kill.
const BEFORE: Duration = Duration::from_secs(2);
/// Load after the kill (the probe goes on alone if it needs longer).
const AFTER: Duration = Duration::from_secs(8);
/// Recovery slower than this fails the run.
const PATIENCE: Duration = Duration::from_secs(60);
/// Probe orders in flight at once.
const PROBES: usize = 16;

#[derive(Debug, Serialize)]
pub struct Failover {
    pub victim: String,
    pub partitions: usize,
    pub partitions_led: usize,
    pub connections: usize,
    /// From the kill until both survivors name a live leader for every partition.
    pub leaders_secs: f64,
    /// From the kill until every SKU took an order (201) through a survivor.
    pub every_sku_secs: f64,
    /// From the kill until the probe's last answer other than 201: the recovery lies between
    /// this and `every_sku_secs`.
    pub last_refused_secs: f64,
    /// SKUs that took the probe's first order after the kill.
    pub skus_at_once: usize,
    pub skus: usize,
    /// The load through the survivors, from `BEFORE` the kill to `AFTER` it.
    pub load: Side,
    /// The probe's answers other than 201 (`connection`: no answer).
    pub probe_answers: BTreeMap<String, u64>,
    pub audit: Audit,
    /// 503 answers the audit waited out and retried.
    pub retried_503: u64,
}

impl Failover {
    pub fn clean(&self) -> bool {
        self.audit.lossless() && self.load.stalled == 0
    }

    pub fn line(&self) -> String {
        let answers: Vec<String> = (self.probe_answers.iter())
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        format!(
            "cluster: kill -9 of {} (leader of {} of {} partitions) under {} connections: live leaders after {:.2} s, \
             every SKU ordered (201) through the survivors after {:.2} s (the last refusal at {:.2} s; {} of {} SKUs at the first try; probe's other answers: {}); \
             load through the survivors {:.0} orders/s, {}; audit {}: {}; 503s retried by the audit {}",
            self.victim,
            self.partitions_led,
            self.partitions,
            self.connections,
            self.leaders_secs,
            self.every_sku_secs,
            self.last_refused_secs,
            self.skus_at_once,
            self.skus,
            if answers.is_empty() { "none".to_owned() } else { answers.join(", ") },
            self.load.requests_per_sec,
            self.load.errors_line(),
            self.audit.line(),
            match self.clean() {
                true => self.audit.verdict(),
                false => "FAILED".to_owned(),
            },
            self.retried_503
        )
    }
}

/// Kills a leader of `nodes` (a settled three-node cluster whose orders so far are `acked`)
/// under load, measures the recovery and audits.
pub async fn run(
    plan: &Plan,
    mut nodes: Vec<Node>,
    mut acked: Vec<String>,
) -> anyhow::Result<Failover> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let seen = view(&client, nodes[0].http)
        .await
        .map_err(anyhow::Error::msg)?;
    let led = leaders(&seen);
    let count = |name: &str| led.values().filter(|l| l.as_deref() == Some(name)).count();
    let victim = (1..nodes.len())
        .max_by_key(|i| count(&nodes[*i].name))
        .filter(|i| count(&nodes[*i].name) > 0)
        .ok_or_else(|| anyhow::anyhow!("neither n2 nor n3 leads a partition: {led:?}"))?;
    let partitions_led = count(&nodes[victim].name);
    let gateways: Vec<SocketAddr> = (nodes.iter().enumerate())
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n.http)
        .collect();

    let load = {
        let (gateways, make) = (gateways.clone(), plan.make.clone());
        let connections = plan.failover_connections;
        tokio::spawn(async move {
            driver::run(&gateways, connections, make, Duration::ZERO, BEFORE + AFTER).await
        })
    };
    tokio::time::sleep(BEFORE).await;
    let victim = nodes.remove(victim);
    let name = victim.name.clone();
    drop(victim);
    let killed = Instant::now();
    let (elected, probed) = tokio::join!(
        elected(&client, &gateways, &name, killed),
        probe(&client, &gateways, killed)
    );
    let (leaders_at, probed) = (elected?, probed?);
    let outcome = load.await?;
    acked.extend(crate::order_numbers(&outcome));
    acked.extend(probed.acked);
    let base = format!("http://{}", nodes[0].http);
    let retried = crate::RETRIED_503.load(Ordering::Relaxed);
    let audit = crate::audit(&client, &base, &acked).await;
    let audit = audit.with_context(|| format!("the audit failed\n{}", tails(&nodes)))?;
    Ok(Failover {
        victim: name,
        partitions: led.len(),
        partitions_led,
        connections: plan.failover_connections,
        leaders_secs: leaders_at.as_secs_f64(),
        every_sku_secs: probed.served.as_secs_f64(),
        last_refused_secs: probed.last_refused.as_secs_f64(),
        skus_at_once: probed.at_once,
        skus: crate::PRODUCTS + 1,
        load: Side::of(&outcome),
        probe_answers: answer_names(&probed.answers),
        audit,
        retried_503: crate::RETRIED_503.load(Ordering::Relaxed) - retried,
    })
}

/// Waits until every survivor names a leader other than `gone` for every partition.
async fn elected(
    client: &reqwest::Client,
    gateways: &[SocketAddr],
    gone: &str,
    since: Instant,
) -> anyhow::Result<Duration> {
    for gateway in gateways {
        loop {
            let seen = view(client, *gateway).await.map(|v| leaders(&v));
            let live = |l: &Option<String>| l.as_deref().is_some_and(|l| l != gone);
            if seen.is_ok_and(|led| led.values().all(live)) {
                break;
            }
            anyhow::ensure!(since.elapsed() < PATIENCE, "no live leaders on {gateway}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(since.elapsed())
}

/// What the probe found.
#[derive(Default)]
struct Probed {
    /// The slowest SKU's first 201 after the kill.
    served: Duration,
    /// The last answer other than 201.
    last_refused: Duration,
    at_once: usize,
    answers: BTreeMap<u16, u64>,
    acked: Vec<String>,
}

impl Probed {
    /// Counts one answer of the probe's; whether it was a 201.
    fn record(
        &mut self,
        answer: reqwest::Result<(u16, Option<String>, Instant)>,
        tries: usize,
        since: Instant,
    ) -> bool {
        let (status, at) = match answer {
            Ok((201, number, at)) => {
                self.served = self.served.max(at - since);
                self.at_once += usize::from(tries == 0);
                self.acked.extend(number);
                return true;
            }
            Ok((status, _, at)) => (status, at),
            Err(_) => (0, Instant::now()),
        };
        *self.answers.entry(status).or_default() += 1;
        self.last_refused = self.last_refused.max(at - since);
        false
    }
}

/// Orders one of every SKU through the survivors, again for each not served yet, until each
/// has taken one: `PROBES` workers take the SKUs from a queue, and put a refused one back at
/// its end (no rounds: a SKU is retried as soon as a worker is free).
async fn probe(
    client: &reqwest::Client,
    gateways: &[SocketAddr],
    since: Instant,
) -> anyhow::Result<Probed> {
    let queue: VecDeque<(String, usize)> = (0..crate::PRODUCTS)
        .map(|i| format!("p{i}"))
        .chain([crate::HOT.to_owned()])
        .map(|sku| (sku, 0))
        .collect();
    let (queue, probed) = (&Mutex::new(queue), &Mutex::new(Probed::default()));
    let worker = |w: usize| async move {
        loop {
            let next = queue.lock().expect("queue").pop_front();
            let Some((sku, tries)) = next else {
                return Ok(());
            };
            let gateway = gateways[(w + tries) % gateways.len()];
            let answer = order(client, gateway, &sku).await;
            let served = probed
                .lock()
                .expect("probe results")
                .record(answer, tries, since);
            if served {
                continue;
            }
            anyhow::ensure!(
                since.elapsed() < PATIENCE,
                "{sku} still takes no orders after {PATIENCE:?}"
            );
            queue.lock().expect("queue").push_back((sku, tries + 1));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    futures::future::try_join_all((0..PROBES).map(worker)).await?;
    let probed = std::mem::take(&mut *probed.lock().expect("probe results"));
    Ok(probed)
}

/// One one-line order of `sku` through `gateway`: its status, order number, and when it was
/// answered.
async fn order(
    client: &reqwest::Client,
    gateway: SocketAddr,
    sku: &str,
) -> reqwest::Result<(u16, Option<String>, Instant)> {
    let call = crate::order_call(&[sku]);
    let response = client
        .post(format!("http://{gateway}{}", call.path))
        .header("content-type", "application/json")
        .body(call.body)
        .send()
        .await?;
    let at = Instant::now();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let number = body["orderNumber"].as_str().map(str::to_owned);
    Ok((status, number.filter(|_| status == 201), at))
}
