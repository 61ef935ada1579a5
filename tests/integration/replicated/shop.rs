//! Three `agora` processes replicating their partitions, formed from one seed without a member
//! list, and what a node's `GET /cluster` says about them: the members, and per partition its
//! leader, replicas and term.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::integration::support::{free_addr, retry, TestApp};

pub const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// Started without `--join`: it bootstraps the cluster, and hosts the Kafka broker.
const SEED: &str = "n1";
/// Few partitions (so few raft groups) keep three nodes light on two cores.
const PARTITIONS: usize = 8;
const LOG_FILTER: &str = "warn,agora::cluster=info";
/// How many of its last log lines each node shows when a test fails.
const LOG_TAIL: usize = 15;
/// How long forming, electing or rejoining may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);
pub const POLL: Duration = Duration::from_millis(50);

pub struct Shop {
    /// Before `dirs`: the processes die before their directories go.
    nodes: BTreeMap<&'static str, Arc<TestApp>>,
    cluster_addrs: BTreeMap<&'static str, String>,
    dirs: BTreeMap<&'static str, TempDir>,
    kafka: String,
}

impl Shop {
    /// n1 bootstraps, n2 and n3 join it; returns once every node sees the cluster whole.
    pub async fn form() -> Shop {
        let mut shop = Shop {
            nodes: BTreeMap::new(),
            cluster_addrs: NODES.map(|n| (n, free_addr().to_string())).into(),
            dirs: NODES
                .map(|n| (n, tempfile::tempdir().expect("temp dir")))
                .into(),
            kafka: String::new(),
        };
        let started = Instant::now();
        for node in NODES {
            shop.start(node).await;
        }
        shop.wait_whole().await;
        eprintln!(
            "replicated: three nodes formed from one seed in {:?}",
            started.elapsed()
        );
        shop
    }

    /// Starts `node` on its data directory, with the same options every time.
    async fn start(&mut self, node: &'static str) {
        let partitions = PARTITIONS.to_string();
        let mut env = vec![
            ("AGORA_NODE", node),
            ("AGORA_CLUSTER", self.cluster_addrs[node].as_str()),
            ("AGORA_COOKIE", "replicated-test"),
            ("AGORA_PARTITIONS", partitions.as_str()),
            ("AGORA_REPLICAS", "3"),
            ("AGORA_LEASE_SECS", "2"),
            ("RUST_LOG", LOG_FILTER),
        ];
        if node != SEED {
            assert!(!self.kafka.is_empty(), "{node} starts after the seed");
            env.push(("AGORA_JOIN", self.cluster_addrs[SEED].as_str()));
            env.push(("AGORA_KAFKA_BROKERS", self.kafka.as_str()));
        }
        let app = TestApp::spawn_process(self.dirs[node].path(), &env).await;
        if node == SEED {
            self.kafka.clone_from(&app.kafka_brokers);
        }
        self.nodes.insert(node, Arc::new(app));
    }

    pub fn node(&self, node: &str) -> Arc<TestApp> {
        let app = self.nodes.get(node);
        app.unwrap_or_else(|| panic!("{node} is not running"))
            .clone()
    }

    /// Every running node.
    pub fn running(&self) -> Vec<&TestApp> {
        self.nodes.values().map(|app| &**app).collect()
    }

    /// kill -9 of `node`: no task may still hold it.
    pub fn kill(&mut self, node: &str) {
        let app = self.nodes.remove(node);
        let app = app.unwrap_or_else(|| panic!("{node} is not running"));
        Arc::try_unwrap(app)
            .unwrap_or_else(|_| panic!("{node} is still used by a task"))
            .kill9();
    }

    /// Starts the killed `node` again under its name, on its data directory or, with `wipe`, on
    /// an emptied one, once the others see it gone (or they would take it for a second live
    /// node of that name). Returns the time from its start until the cluster is whole again.
    pub async fn restart(&mut self, node: &'static str, wipe: bool) -> Duration {
        assert!(
            !self.nodes.contains_key(node),
            "restart {node}: kill it first"
        );
        for app in self.nodes.values() {
            let attempt = || async move {
                let view = cluster_view(app).await?;
                let mut member = members(&view).filter(|m| m["name"] == node);
                let reachable = member.any(|m| m["reachable"] == true);
                match reachable {
                    true => Err(format!("{} still sees {node} reachable", view["node"])),
                    false => Ok(()),
                }
            };
            retry(POLL, PATIENCE, attempt).await;
        }
        if wipe {
            let dir = self.dirs[node].path();
            std::fs::remove_dir_all(dir).expect("data directory removed");
            std::fs::create_dir(dir).expect("empty data directory");
        }
        let started = Instant::now();
        self.start(node).await;
        self.wait_whole().await;
        started.elapsed()
    }

    /// Waits until every running node's `/cluster` passes [`whole`].
    pub async fn wait_whole(&self) {
        for app in self.nodes.values() {
            let attempt = || async move { whole(&cluster_view(app).await?) };
            retry(POLL, PATIENCE, attempt).await;
        }
    }

    /// Waits until one of `candidates` leads partitions in the seed's view; returns the one that
    /// leads most, with the term of each partition it leads.
    pub async fn leader_among(&self, candidates: &[&'static str]) -> (&'static str, Terms) {
        let seed = &*self.node(SEED);
        let attempt = || async move {
            let view = cluster_view(seed).await?;
            let led = candidates.iter().map(|c| (*c, led_by(&view, c)));
            led.max_by_key(|(_, terms)| terms.len())
                .filter(|(_, terms)| !terms.is_empty())
                .ok_or_else(|| format!("none of {candidates:?} leads a partition: {view}"))
        };
        retry(POLL, PATIENCE, attempt).await
    }
}

/// A failing test shows what each node logged last.
impl Drop for Shop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for (node, app) in &self.nodes {
            let log = app.log.lock().map(|l| l.clone()).unwrap_or_default();
            let tail = &log[log.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "--- {node}, last {} lines:\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

/// Partition → term.
pub type Terms = BTreeMap<u64, u64>;

/// `GET /cluster` on `app`, or why not.
pub async fn cluster_view(app: &TestApp) -> Result<Value, String> {
    let response = app.get("/cluster").await;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET /cluster on {}: {status}", app.base));
    }
    let body = response.json().await;
    body.map_err(|e| format!("GET /cluster on {}: {e}", app.base))
}

fn members(view: &Value) -> impl Iterator<Item = &Value> {
    view["members"].as_array().into_iter().flatten()
}

fn partitions(view: &Value) -> impl Iterator<Item = &Value> {
    view["partitions"].as_array().into_iter().flatten()
}

/// All three nodes reachable members, and each of the `PARTITIONS` partitions with a leader
/// among them and a replica on each of them.
pub fn whole(view: &Value) -> Result<(), String> {
    let seer = &view["node"];
    let reachable = members(view).filter(|m| m["reachable"] == true);
    let names: BTreeSet<&str> = reachable.filter_map(|m| m["name"].as_str()).collect();
    if names != BTreeSet::from(NODES) {
        return Err(format!(
            "{seer} sees the reachable members {names:?}: {view}"
        ));
    }
    let count = partitions(view).count();
    if count != PARTITIONS {
        return Err(format!("{seer} lists {count} partitions, not {PARTITIONS}"));
    }
    for partition in partitions(view) {
        let replicas = partition["replicas"].as_array().map_or(&[][..], |r| &r[..]);
        let replica_names: BTreeSet<&str> = replicas.iter().filter_map(Value::as_str).collect();
        let leader = partition["leader"].as_str();
        if replicas.len() != NODES.len()
            || replica_names != names
            || !leader.is_some_and(|l| names.contains(l))
        {
            return Err(format!("{seer}: partition not whole yet: {partition}"));
        }
    }
    Ok(())
}

/// The partitions `node` leads in `view`, with their terms.
pub fn led_by(view: &Value, node: &str) -> Terms {
    partitions(view)
        .filter(|p| p["leader"] == node)
        .map(|p| (partition_number(p), term(p)))
        .collect()
}

/// Every partition with a leader, and none led by `gone`.
pub fn led_without(view: &Value, gone: &str) -> Result<(), String> {
    let count = partitions(view).count();
    let stale = partitions(view).find(|p| !p["leader"].is_string() || p["leader"] == gone);
    match stale {
        None if count == PARTITIONS => Ok(()),
        None => Err(format!("{} lists {count} partitions", view["node"])),
        Some(p) => Err(format!("{}: no live leader yet: {p}", view["node"])),
    }
}

/// The term of each partition in `view`.
pub fn terms(view: &Value) -> Terms {
    partitions(view)
        .map(|p| (partition_number(p), term(p)))
        .collect()
}

fn partition_number(partition: &Value) -> u64 {
    let number = partition["partition"].as_u64();
    number.unwrap_or_else(|| panic!("a partition without its number: {partition}"))
}

fn term(partition: &Value) -> u64 {
    let term = partition["term"].as_u64();
    term.unwrap_or_else(|| panic!("a partition without its term: {partition}"))
}
