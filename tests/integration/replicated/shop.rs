//! Three `agora` processes replicating their partitions, formed from one seed without a member
//! list, stopped, killed and restarted, and what a node's `GET /cluster` says about them: the
//! members, and per partition its leader, replicas, term and progress.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agora::broker::EmbeddedBroker;
use reqwest::Method;
use tempfile::TempDir;

use super::proxy::Net;
use super::view::{
    applied, cluster_view, led_by, members, partition_number, partitions, whole, Terms,
};
use crate::integration::support::{free_addr, retry, target_dir, TestApp};

pub const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// Started without `--join`: it bootstraps the cluster, and hosts the Kafka broker unless
/// [`Setup::outside_kafka`].
const SEED: &str = "n1";
/// Few partitions (so few raft groups) keep three nodes light on two cores.
pub const PARTITIONS: usize = 8;
/// `--replicas`: every partition on three nodes (all of them, until a fourth joins).
pub const REPLICAS: usize = 3;
const LOG_FILTER: &str = "warn,agora::cluster=info";
/// Where openraft logs the snapshots it builds and installs, when a test wants them: not in the
/// tail of a failing test's log, as it logs them often.
const SNAPSHOTS: &str = "openraft::core::sm::worker";
/// What a node logs for each snapshot it installs from a leader.
const SNAPSHOT_INSTALLED: &str = "install complete snapshot";
const COOKIE: &str = "replicated-test";
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
    /// Every link between two nodes goes through a proxy of [`Net`] (`AGORA_DIAL`), which a
    /// test can cut, delay and heal.
    pub proxied: bool,
    /// `--replace-after`, in seconds, when not the server's default.
    pub replace_after: Option<u32>,
}

pub struct Shop {
    /// Before `dirs`: the processes die before their directories go.
    nodes: BTreeMap<&'static str, Arc<TestApp>>,
    /// The members the cluster should have: the nodes formed and added, less those that left.
    members: BTreeSet<&'static str>,
    cluster_addrs: BTreeMap<&'static str, String>,
    dirs: BTreeMap<&'static str, TempDir>,
    /// The broker of [`Setup::outside_kafka`], after the nodes that use it.
    outside_kafka: Option<EmbeddedBroker>,
    kafka: String,
    /// `AGORA_SNAPSHOT_LOGS`, when not the server's default.
    snapshot_logs: Option<String>,
    /// The links' proxies of [`Setup::proxied`].
    net: Option<Net>,
    /// `AGORA_REPLACE_AFTER_SECS`, when not the server's default.
    replace_after: Option<String>,
}

impl Shop {
    /// n1 bootstraps, n2 and n3 join it; returns once every node sees the cluster whole.
    pub async fn form(setup: Setup) -> Shop {
        let outside_kafka = setup.outside_kafka.then(|| {
            EmbeddedBroker::start("notificationTopic").expect("a Kafka broker in the test")
        });
        let cluster_addrs: BTreeMap<&'static str, SocketAddr> =
            NODES.map(|n| (n, free_addr())).into();
        let net = match setup.proxied {
            true => {
                let links: Vec<(&str, SocketAddr)> =
                    cluster_addrs.iter().map(|(n, a)| (*n, *a)).collect();
                Some(Net::start(&links).await)
            }
            false => None,
        };
        let mut shop = Shop {
            nodes: BTreeMap::new(),
            members: NODES.into(),
            cluster_addrs: (cluster_addrs.iter())
                .map(|(n, a)| (*n, a.to_string()))
                .collect(),
            dirs: NODES
                .map(|n| (n, tempfile::tempdir().expect("temp dir")))
                .into(),
            kafka: (outside_kafka.as_ref()).map_or_else(String::new, |b| b.bootstrap_servers()),
            outside_kafka,
            snapshot_logs: setup.snapshot_logs.map(|n| n.to_string()),
            net,
            replace_after: setup.replace_after.map(|secs| secs.to_string()),
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
        let (partitions, replicas) = (PARTITIONS.to_string(), REPLICAS.to_string());
        let mut log_filter = match self.snapshot_logs {
            Some(_) => format!("{LOG_FILTER},{SNAPSHOTS}=info"),
            None => LOG_FILTER.to_owned(),
        };
        // More of the nodes' logs for a failure's diagnosis, e.g. `agora=debug`.
        if let Ok(more) = std::env::var("AGORA_TEST_LOG") {
            log_filter = format!("{log_filter},{more}");
        }
        let mut env = vec![
            ("AGORA_NODE", node),
            ("AGORA_CLUSTER", self.cluster_addrs[node].as_str()),
            ("AGORA_COOKIE", COOKIE),
            ("AGORA_PARTITIONS", partitions.as_str()),
            ("AGORA_REPLICAS", &replicas),
            ("AGORA_LEASE_SECS", "2"),
            ("RUST_LOG", &log_filter),
        ];
        if let Some(logs) = &self.snapshot_logs {
            env.push(("AGORA_SNAPSHOT_LOGS", logs.as_str()));
        }
        if let Some(secs) = &self.replace_after {
            env.push(("AGORA_REPLACE_AFTER_SECS", secs.as_str()));
        }
        let (dial, via) = match &self.net {
            Some(net) if node == SEED => (net.dial_env(node), String::new()),
            Some(net) => (net.dial_env(node), net.via(node, SEED).to_string()),
            None => (String::new(), self.cluster_addrs[SEED].clone()),
        };
        if !dial.is_empty() {
            env.push(("AGORA_DIAL", dial.as_str()));
        }
        if node != SEED {
            env.push(("AGORA_JOIN", via.as_str()));
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

    /// The links' proxies ([`Setup::proxied`]).
    pub fn net(&self) -> &Net {
        self.net
            .as_ref()
            .expect("a shop formed with Setup::proxied")
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

    /// Every running node but `node`.
    pub fn gateways_but(&self, node: &str) -> Vec<Arc<TestApp>> {
        let others = self.nodes.iter().filter(|(name, _)| **name != node);
        others.map(|(_, app)| app.clone()).collect()
    }

    /// Takes `node` out of the running ones.
    fn take(&mut self, node: &str) -> Arc<TestApp> {
        let app = self.nodes.remove(node);
        app.unwrap_or_else(|| panic!("{node} is not running"))
    }

    /// Takes `node` out of the running ones once no task holds it any more (its requests in
    /// flight answered).
    async fn release(&mut self, node: &str) -> TestApp {
        let app = self.take(node);
        let unused = || async {
            match Arc::strong_count(&app) {
                1 => Ok(()),
                n => Err(format!("{node} is still used by {} tasks", n - 1)),
            }
        };
        retry(POLL, PATIENCE, unused).await;
        Arc::try_unwrap(app).unwrap_or_else(|_| panic!("{node} is used again"))
    }

    /// kill -9 of `node`, once no task holds it any more.
    pub async fn kill(&mut self, node: &str) {
        self.release(node).await.kill9();
    }

    /// A graceful stop of `node` (SIGTERM), once no task holds it any more (its requests in
    /// flight answered); returns how long it took the process to exit, which it must do cleanly.
    pub async fn stop(&mut self, node: &str) -> Duration {
        let mut app = self.release(node).await;
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

    /// Waits until every running node's `/cluster` passes [`whole`] with the members the
    /// cluster should have.
    pub async fn wait_whole(&self) {
        let expected: BTreeSet<&str> = self.members.iter().copied().collect();
        for app in self.nodes.values() {
            let expected = &expected;
            let attempt = || async move { whole(&cluster_view(app).await?, expected) };
            retry(POLL, PATIENCE, attempt).await;
        }
    }

    /// From now on the cluster should have `members` (the others replaced a node, say).
    pub fn expect_members(&mut self, members: &[&'static str]) {
        self.members = members.iter().copied().collect();
    }

    /// Starts `node`, a new one, joining through the seed; returns once the cluster is whole
    /// with it (its share of replicas caught up as voters), and the time that took.
    pub async fn add(&mut self, node: &'static str) -> Duration {
        let started = Instant::now();
        self.cluster_addrs.insert(node, free_addr().to_string());
        self.dirs
            .insert(node, tempfile::tempdir().expect("temp dir"));
        self.members.insert(node);
        self.start(node).await;
        self.wait_whole().await;
        started.elapsed()
    }

    /// Asks `node` to leave (`POST /cluster/leave`, once no task holds it), waits until it
    /// exits by itself, cleanly, and until the others are whole without it; returns the time
    /// until it exited.
    pub async fn leave(&mut self, node: &'static str) -> Duration {
        let mut app = self.release(node).await;
        let asked = Instant::now();
        let response = (app.http(Method::POST, "/cluster/leave"))
            .basic_auth("operator", Some(COOKIE))
            .send()
            .await
            .expect("POST /cluster/leave answers");
        assert_eq!(response.status(), 202, "POST /cluster/leave on {node}");
        let exit = app.exit_within(PATIENCE).await;
        let exit = exit.unwrap_or_else(|| {
            let tail = app.last_lines(LOG_TAIL).join("\n");
            panic!("{node} still runs {PATIENCE:?} after leaving; it logged last:\n{tail}")
        });
        assert!(exit.success(), "{node} exited with {exit} after leaving");
        let drained = asked.elapsed();
        self.members.remove(node);
        self.wait_whole().await;
        drained
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

/// A failing test shows what each node logged last, and keeps all of it in
/// `<target dir>/cluster-logs/`, with each live node's thread stacks (by gdb, if installed).
impl Drop for Shop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let dir = target_dir().join("cluster-logs");
        for (node, app) in &self.nodes {
            let mut log = app.log.lock().map(|l| l.clone()).unwrap_or_default();
            let path = dir.join(format!("{node}.log"));
            let kept =
                std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, log.join("\n")));
            if let Some(stacks) = app.stacks() {
                let _ = std::fs::write(dir.join(format!("{node}.stacks")), stacks);
            }
            log.retain(|line| !line.contains(SNAPSHOTS));
            let tail = &log[log.len().saturating_sub(LOG_TAIL)..];
            eprintln!(
                "--- {node}, last {} lines (all of them in {}: {kept:?}):\n{}",
                tail.len(),
                path.display(),
                tail.join("\n")
            );
        }
    }
}
