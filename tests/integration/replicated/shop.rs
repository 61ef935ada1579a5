//! Three `agora` processes replicating their partitions, formed from one seed without a member
//! list, stopped, killed and restarted, and what a node's `GET /cluster` says about them: the
//! members, and per partition its leader, replicas, term and progress.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora::broker::EmbeddedBroker;
use agora::cluster::layout::partition_of;
use serde_json::Value;
use tempfile::TempDir;

use crate::integration::support::{free_addr, retry, TestApp};

pub const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// Started without `--join`: it bootstraps the cluster, and hosts the Kafka broker unless
/// [`Setup::outside_kafka`].
const SEED: &str = "n1";
/// Few partitions (so few raft groups) keep three nodes light on two cores.
const PARTITIONS: usize = 8;
const LOG_FILTER: &str = "warn,agora::cluster=info";
/// Where openraft logs the snapshots it builds and installs, when a test wants them: not in the
/// tail of a failing test's log, as it logs them often.
const SNAPSHOTS: &str = "openraft::core::sm::worker";
/// What a node logs for each snapshot it installs from a leader.
const SNAPSHOT_INSTALLED: &str = "install complete snapshot";
/// How many of its last log lines each node shows when a test fails.
const LOG_TAIL: usize = 15;
/// How long forming, electing or rejoining may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);
pub const POLL: Duration = Duration::from_millis(50);

/// How a test's cluster is set up; the default is the server's defaults.
#[derive(Default, Clone, Copy)]
pub struct Setup {
    /// Partitions snapshot (and compact their logs) after this many log entries.
    pub snapshot_logs: Option<u32>,
    /// The Kafka broker runs in the test process rather than embedded in the seed, so that it
    /// outlives every node: the seed's embedded broker is in memory, and what it held is lost
    /// with the seed's process (events it had acknowledged but not yet handed out included).
    pub outside_kafka: bool,
}

pub struct Shop {
    /// Before `dirs`: the processes die before their directories go.
    nodes: BTreeMap<&'static str, Arc<TestApp>>,
    cluster_addrs: BTreeMap<&'static str, String>,
    dirs: BTreeMap<&'static str, TempDir>,
    /// The broker of [`Setup::outside_kafka`], after the nodes that use it.
    outside_kafka: Option<EmbeddedBroker>,
    kafka: String,
    /// `AGORA_SNAPSHOT_LOGS`, when not the server's default.
    snapshot_logs: Option<String>,
}

impl Shop {
    /// n1 bootstraps, n2 and n3 join it; returns once every node sees the cluster whole.
    pub async fn form(setup: Setup) -> Shop {
        let outside_kafka = setup.outside_kafka.then(|| {
            EmbeddedBroker::start("notificationTopic").expect("a Kafka broker in the test")
        });
        let mut shop = Shop {
            nodes: BTreeMap::new(),
            cluster_addrs: NODES.map(|n| (n, free_addr().to_string())).into(),
            dirs: NODES
                .map(|n| (n, tempfile::tempdir().expect("temp dir")))
                .into(),
            kafka: (outside_kafka.as_ref()).map_or_else(String::new, |b| b.bootstrap_servers()),
            outside_kafka,
            snapshot_logs: setup.snapshot_logs.map(|n| n.to_string()),
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
        let log_filter = match self.snapshot_logs {
            Some(_) => format!("{LOG_FILTER},{SNAPSHOTS}=info"),
            None => LOG_FILTER.to_owned(),
        };
        let mut env = vec![
            ("AGORA_NODE", node),
            ("AGORA_CLUSTER", self.cluster_addrs[node].as_str()),
            ("AGORA_COOKIE", "replicated-test"),
            ("AGORA_PARTITIONS", partitions.as_str()),
            ("AGORA_REPLICAS", "3"),
            ("AGORA_LEASE_SECS", "2"),
            ("RUST_LOG", &log_filter),
        ];
        if let Some(logs) = &self.snapshot_logs {
            env.push(("AGORA_SNAPSHOT_LOGS", logs.as_str()));
        }
        if node != SEED {
            env.push(("AGORA_JOIN", self.cluster_addrs[SEED].as_str()));
        }
        let embeds = node == SEED && self.outside_kafka.is_none();
        if !embeds {
            assert!(!self.kafka.is_empty(), "{node} starts after the seed");
            env.push(("AGORA_KAFKA_BROKERS", self.kafka.as_str()));
        }
        let app = TestApp::spawn_process(self.dirs[node].path(), &env).await;
        if embeds {
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

    /// Every running node but `node`.
    pub fn running_but(&self, node: &str) -> Vec<&TestApp> {
        let others = self.nodes.iter().filter(|(name, _)| **name != node);
        others.map(|(_, app)| &**app).collect()
    }

    /// Every running node, for a load to send through.
    pub fn gateways(&self) -> Vec<Arc<TestApp>> {
        self.nodes.values().cloned().collect()
    }

    /// Takes `node` out of the running ones.
    fn take(&mut self, node: &str) -> Arc<TestApp> {
        let app = self.nodes.remove(node);
        app.unwrap_or_else(|| panic!("{node} is not running"))
    }

    /// kill -9 of `node`: no task may still hold it.
    pub fn kill(&mut self, node: &str) {
        Arc::try_unwrap(self.take(node))
            .unwrap_or_else(|_| panic!("{node} is still used by a task"))
            .kill9();
    }

    /// A graceful stop of `node` (SIGTERM), once no task holds it any more (its requests in
    /// flight answered); returns how long it took the process to exit, which it must do cleanly.
    pub async fn stop(&mut self, node: &str) -> Duration {
        let app = self.take(node);
        let unused = || async {
            match Arc::strong_count(&app) {
                1 => Ok(()),
                n => Err(format!("{node} is still used by {} tasks", n - 1)),
            }
        };
        retry(POLL, PATIENCE, unused).await;
        let mut app = Arc::try_unwrap(app).unwrap_or_else(|_| panic!("{node} is used again"));
        app.signal("TERM");
        let signalled = Instant::now();
        let exit = app.exit_within(PATIENCE).await;
        let exit = exit.unwrap_or_else(|| panic!("{node} still runs {PATIENCE:?} after SIGTERM"));
        assert!(exit.success(), "{node} exited with {exit} after SIGTERM");
        signalled.elapsed()
    }

    /// Starts the killed or stopped `node` again under its name, on its data directory or, with
    /// `wipe`, on an emptied one, once the others see it gone (or they would take it for a second
    /// live node of that name). Returns the time from its start until the cluster is whole again.
    pub async fn restart(&mut self, node: &'static str, wipe: bool) -> Duration {
        assert!(
            !self.nodes.contains_key(node),
            "restart {node}: stop or kill it first"
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

    /// Waits until one of `candidates` leads partitions in the seed's view; returns the first
    /// that does, in their order, with the term of each partition it leads.
    pub async fn leader_among(&self, candidates: &[&'static str]) -> (&'static str, Terms) {
        let seed = &*self.node(SEED);
        let attempt = || async move {
            let view = cluster_view(seed).await?;
            let mut led = candidates.iter().map(|c| (*c, led_by(&view, c)));
            led.find(|(_, terms)| !terms.is_empty())
                .ok_or_else(|| format!("none of {candidates:?} leads a partition: {view}"))
        };
        retry(POLL, PATIENCE, attempt).await
    }

    /// Waits until `node` has applied more than `entries` log entries in every partition;
    /// returns how many each.
    pub async fn wait_applied(&self, node: &str, entries: u64) -> BTreeMap<u64, u64> {
        let app = &*self.node(node);
        let attempt = || async move {
            let applied = applied(&cluster_view(app).await?);
            match applied.values().all(|&applied| applied > entries) {
                true => Ok(applied),
                false => Err(format!(
                    "{node}: not every partition past {entries} entries: {applied:?}"
                )),
            }
        };
        retry(POLL, PATIENCE, attempt).await
    }

    /// How many snapshots `node` installed from leaders (logged with `snapshot_logs` only).
    pub fn snapshots_installed(&self, node: &str) -> usize {
        let log = self.node(node).log.lock().expect("log").clone();
        log.iter()
            .filter(|l| l.contains(SNAPSHOT_INSTALLED))
            .count()
    }

    /// Waits until `node` has applied, in every partition, all but at most `slack` of the
    /// entries its leader has applied.
    pub async fn wait_caught_up(&self, node: &str, slack: u64) {
        let app = &*self.node(node);
        let attempt = || async move {
            let view = cluster_view(app).await?;
            let own = applied(&view);
            for partition in partitions(&view) {
                let leader = partition["leader"].as_str();
                let leader = leader.ok_or_else(|| format!("{node}: no leader in {partition}"))?;
                let number = partition_number(partition);
                let leading = self.nodes.get(leader);
                let leading = leading.ok_or_else(|| format!("{node} sees {leader} lead"))?;
                let theirs = applied(&cluster_view(leading).await?)[&number];
                let mine = own[&number];
                if mine + slack < theirs {
                    return Err(format!(
                        "partition {number}: {node} applied {mine}, its leader {leader} {theirs}"
                    ));
                }
            }
            Ok(())
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
            let mut log = app.log.lock().map(|l| l.clone()).unwrap_or_default();
            log.retain(|line| !line.contains(SNAPSHOTS));
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
    read(app, "/cluster").await
}

/// The JSON body of `GET path` on `app`, or why not.
pub async fn read(app: &TestApp, path: &str) -> Result<Value, String> {
    let response = app.get(path).await;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {path} on {}: {status}", app.base));
    }
    let body = response.json().await;
    body.map_err(|e| format!("GET {path} on {}: {e}", app.base))
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

/// SKUs whose stock lives in each partition, one per partition (placed as the server places
/// keys), for orders that write to every partition alike.
pub fn sku_per_partition() -> Vec<String> {
    let mut skus: Vec<Option<String>> = vec![None; PARTITIONS];
    for name in (0..).map(|i| format!("r-{i}")) {
        if !skus.contains(&None) {
            break;
        }
        let partition = partition_of(&name, PARTITIONS as u32) as usize;
        skus[partition].get_or_insert(name);
    }
    skus.into_iter().flatten().collect()
}

/// How far each partition in `view` is applied on the node that answered (0: not at all).
fn applied(view: &Value) -> BTreeMap<u64, u64> {
    let applied = |p: &Value| p["lastApplied"].as_u64().unwrap_or(0);
    partitions(view)
        .map(|p| (partition_number(p), applied(p)))
        .collect()
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
