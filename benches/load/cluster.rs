//! The cluster scenarios: the same one-line order load, over the same number of connections,
//! against one node and against three nodes on this machine, as a ratio. Every node is a real
//! `agora serve` process with its own data directory; the load generator spreads its
//! connections over the gateways, and each side is audited like the main run.
//!
//! - `cluster`: three nodes replicating every partition on all three (`--replicas 3`), formed
//!   from one seed by `--join` alone (no member list), measured once every partition has a
//!   leader and three replicas and the leaders have settled; also one such node alone
//!   (replication factor 1). Then a kill -9 of a partition leader under load, and the time
//!   until every SKU takes orders again through the survivors ([`crate::failover`]).
//! - `cluster_static`: the static cluster (`--members n1,n2,n3`, each key on one node only).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora::actors::entity::ClusterView;
use anyhow::Context;
use serde::Serialize;

use crate::driver::{self, MakeCall};
use crate::failover::Failover;
use crate::report::{Audit, Side};

const NAMES: [&str; 3] = ["n1", "n2", "n3"];
/// How long forming a cluster or electing its leaders may take.
const PATIENCE: Duration = Duration::from_secs(60);
/// Leaders unchanged for this long count as settled (placement hands each partition's
/// leadership to its preferred replica after forming).
const SETTLED: Duration = Duration::from_secs(1);
/// What the nodes log (their output is shown when a side fails).
const LOG_FILTER: &str = "warn,agora::cluster=info";
/// Lines of each node's output kept for that.
const LOG_TAIL: usize = 20;

/// What the cluster scenarios measure.
pub struct Plan {
    pub make: MakeCall,
    pub connections: usize,
    pub warmup: Duration,
    pub secs: Duration,
    /// Partitions of the replicated cluster (`--partitions`).
    pub partitions: u32,
    /// The replicated cluster, its single member and its failover (`cluster`).
    pub replicated: bool,
    /// The static cluster (`cluster_static`).
    pub fixed: bool,
    /// Connections of the load under which a node is killed.
    pub failover_connections: usize,
}

/// An `agora serve` child process; kill -9 when dropped.
pub struct Node {
    child: Child,
    pub name: String,
    pub http: SocketAddr,
    kafka: String,
    /// The last [`LOG_TAIL`] lines of its output.
    log: Arc<Mutex<VecDeque<String>>>,
}

/// What each of `nodes` printed last.
pub fn tails(nodes: &[Node]) -> String {
    let tail = |n: &Node| {
        let log = n.log.lock().map(|l| l.clone()).unwrap_or_default();
        format!(
            "--- {} ({}), last lines:\n{}",
            n.name,
            n.http,
            Vec::from(log).join("\n")
        )
    };
    nodes.iter().map(tail).collect::<Vec<_>>().join("\n")
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node and reads its gateway and Kafka addresses from its start-up lines; its
/// output is drained for as long as it runs.
fn spawn(name: &str, data: &Path, args: &[String], env: &[(&str, &str)]) -> anyhow::Result<Node> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["serve", "--node", name, "--http", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", LOG_FILTER)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let log = Arc::new(Mutex::new(VecDeque::new()));
    let lines = log.clone();
    std::thread::spawn(move || {
        let mut http = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(mut lines) = lines.lock() {
                if lines.len() == LOG_TAIL {
                    lines.pop_front();
                }
                lines.push_back(line.clone());
            }
            let words: Vec<&str> = line.split_whitespace().take(2).collect();
            match words[..] {
                ["gateway", url] => {
                    http = url.strip_prefix("http://")?.split('/').next()?.parse().ok()
                }
                ["kafka", brokers] => tx.send((http?, brokers.to_owned())).ok()?,
                _ => {}
            }
        }
        Some(())
    });
    let (http, kafka) = rx.recv_timeout(PATIENCE)?;
    Ok(Node {
        child,
        name: name.to_owned(),
        http,
        kafka,
        log,
    })
}

/// Retries `check` every 100 ms until it holds, for at most [`PATIENCE`].
async fn until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let why = match check().await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        anyhow::ensure!(Instant::now() < deadline, "{what}: {why}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `/health` until its `cluster` component is UP.
async fn ready(client: &reqwest::Client, node: &Node) -> anyhow::Result<()> {
    until(&format!("node {} never got ready", node.http), || async {
        let health: serde_json::Value = async {
            let response = client.get(format!("http://{}/health", node.http));
            response.send().await?.json().await
        }
        .await
        .map_err(|e| e.to_string())?;
        match health["components"]["cluster"]["status"] == "UP" {
            true => Ok(()),
            false => Err(health["components"]["cluster"].to_string()),
        }
    })
    .await
}

/// `GET /cluster` on `node`.
pub async fn view(client: &reqwest::Client, node: SocketAddr) -> Result<ClusterView, String> {
    let response = client.get(format!("http://{node}/cluster")).send().await;
    let response = response.and_then(|r| r.error_for_status());
    let view = async { response?.json().await }.await;
    view.map_err(|e| format!("GET /cluster on {node}: {e}"))
}

/// Partition → leader.
pub fn leaders(view: &ClusterView) -> BTreeMap<u32, Option<String>> {
    (view.partitions.iter())
        .map(|p| (p.partition, p.leader.clone()))
        .collect()
}

/// Every one of `names` a reachable member; each of `partitions` partitions with a leader
/// among them and a replica on each of them.
fn whole(view: &ClusterView, names: &BTreeSet<String>, partitions: u32) -> Result<(), String> {
    let reachable = view.members.iter().filter(|m| m.reachable);
    let members: BTreeSet<String> = reachable.map(|m| m.name.clone()).collect();
    if &members != names {
        return Err(format!("{} sees the members {members:?}", view.node));
    }
    if view.partitions.len() != partitions as usize {
        return Err(format!(
            "{} lists {} partitions",
            view.node,
            view.partitions.len()
        ));
    }
    let incomplete = view.partitions.iter().find(|p| {
        let replicas: BTreeSet<String> = p.replicas.iter().cloned().collect();
        &replicas != names || !p.leader.as_ref().is_some_and(|l| names.contains(l))
    });
    match incomplete {
        Some(p) => Err(format!("{}: partition not whole yet: {p:?}", view.node)),
        None => Ok(()),
    }
}

/// Waits until every node's `/cluster` is [`whole`] and the leaders have not moved for
/// [`SETTLED`]; returns how long that took.
async fn settled(
    client: &reqwest::Client,
    nodes: &[Node],
    partitions: u32,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let names: BTreeSet<String> = nodes.iter().map(|n| n.name.clone()).collect();
    let (mut last, mut since) = (None, Instant::now());
    loop {
        let now = async {
            let mut seen = BTreeSet::new();
            for node in nodes {
                let view = view(client, node.http).await?;
                whole(&view, &names, partitions)?;
                seen.insert(leaders(&view));
            }
            match seen.len() {
                1 => Ok(seen.pop_first()),
                _ => Err(format!("the nodes disagree on the leaders: {seen:?}")),
            }
        };
        let moving = || "the leaders still move".to_owned();
        let why = match now.await {
            Ok(now) if now == last && since.elapsed() >= SETTLED => return Ok(started.elapsed()),
            Ok(now) if now == last => moving(),
            Ok(now) => {
                (last, since) = (now, Instant::now());
                moving()
            }
            Err(why) => {
                last = None;
                why
            }
        };
        anyhow::ensure!(
            started.elapsed() < PATIENCE,
            "the replicated cluster never settled: {why}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One side of a comparison.
#[derive(Debug, Serialize)]
pub struct Run {
    pub nodes: usize,
    pub load: Side,
    /// Orders/s over the single node's, measured in this run.
    pub ratio: f64,
    pub audit: Audit,
    /// 503 answers the seeding and the audit waited out and retried.
    pub retried_503: u64,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub connections: usize,
    pub measured_secs: f64,
    pub partitions: u32,
    /// One `agora serve`, no cluster.
    pub one_node: Run,
    /// One member of a replicated cluster (replication factor 1).
    pub one_member: Option<Run>,
    /// Three members, replication factor 3.
    pub replicated: Option<Run>,
    /// Time from starting the seed until the three-node cluster was whole and settled.
    pub formed_secs: Option<f64>,
    pub failover: Option<Failover>,
    /// Three nodes of a static cluster (`--members`, no replication).
    pub static_members: Option<Run>,
}

impl Comparison {
    pub fn clean(&self) -> bool {
        let runs = [&self.one_member, &self.replicated, &self.static_members];
        let lossless = |r: &Option<Run>| r.as_ref().is_none_or(|r| r.audit.lossless());
        self.one_node.audit.lossless()
            && runs.into_iter().all(lossless)
            && self.failover.as_ref().is_none_or(Failover::clean)
    }

    /// A summary line per side, and the failover's.
    pub fn lines(&self) -> Vec<String> {
        let side = |label: &str, run: &Run| {
            format!(
                "cluster: {label}: {:.0} orders/s (x{:.2}), p50 {:.2} ms, p99 {:.2} ms, {}; audit {}: {}; 503s retried by seeding and audit {}",
                run.load.requests_per_sec,
                run.ratio,
                run.load.p50_ms,
                run.load.p99_ms,
                run.load.errors_line(),
                run.audit.line(),
                run.audit.verdict(),
                run.retried_503
            )
        };
        let mut lines = vec![side("one node", &self.one_node)];
        for (label, run) in [
            ("one replicated member (RF 1)", &self.one_member),
            ("three replicated nodes (RF 3)", &self.replicated),
        ] {
            lines.extend(run.as_ref().map(|run| side(label, run)));
        }
        lines.extend(self.failover.as_ref().map(Failover::line));
        let fixed = self.static_members.as_ref();
        lines.extend(fixed.map(|run| side("three static nodes (--members)", run)));
        lines
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "Cluster, order_1_line at {} connections for {:.0} s a side (every node a process on this machine, {} partitions):\n\n",
            self.connections, self.measured_secs, self.partitions
        );
        for line in self.lines() {
            out += &format!("- {}\n", line.trim_start_matches("cluster: "));
        }
        out
    }
}

/// Data directories, removed after the processes that use them are gone.
fn data_dirs(n: usize) -> anyhow::Result<Vec<tempfile::TempDir>> {
    Ok((0..n)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?)
}

/// Free loopback addresses for the nodes' cluster links.
fn cluster_addrs() -> std::io::Result<Vec<String>> {
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
    };
    (0..NAMES.len())
        .map(|_| Ok(format!("127.0.0.1:{}", port()?)))
        .collect()
}

/// Seeds through the first node, loads over every node's gateway, audits through the first.
/// Returns the acknowledged orders too.
async fn measure(plan: &Plan, nodes: &[Node], baseline: f64) -> anyhow::Result<(Run, Vec<String>)> {
    let client = reqwest::Client::new();
    let base = format!("http://{}", nodes[0].http);
    let retried = crate::RETRIED_503.load(Ordering::Relaxed);
    let seeded = crate::seed(&client, &base).await;
    seeded.with_context(|| format!("seeding failed\n{}", tails(nodes)))?;
    let gateways: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    let outcome = driver::run(
        &gateways,
        plan.connections,
        plan.make.clone(),
        plan.warmup,
        plan.secs,
    )
    .await;
    let acked = crate::order_numbers(&outcome);
    let audit = crate::audit(&client, &base, &acked).await;
    let audit = audit.with_context(|| format!("the audit failed\n{}", tails(nodes)))?;
    let retried_503 = crate::RETRIED_503.load(Ordering::Relaxed) - retried;
    let load = Side::of(&outcome);
    let ratio = load.requests_per_sec / baseline.max(1.0);
    let run = Run {
        nodes: nodes.len(),
        load,
        ratio,
        audit,
        retried_503,
    };
    Ok((run, acked))
}

/// A replicated cluster of `count` nodes from `NAMES`: n1 founds it (and hosts the Kafka
/// broker), the others join it. Returns once it is whole and its leaders settled.
async fn replicated(
    plan: &Plan,
    dirs: &[tempfile::TempDir],
    count: usize,
) -> anyhow::Result<(Vec<Node>, Duration)> {
    let addrs = cluster_addrs()?;
    let partitions = plan.partitions.to_string();
    let started = Instant::now();
    let mut nodes: Vec<Node> = Vec::new();
    for (i, name) in NAMES.iter().take(count).enumerate() {
        let mut args = ["--cluster", &addrs[i], "--cookie", "bench"]
            .map(str::to_owned)
            .to_vec();
        args.extend(["--partitions", &partitions, "--replicas", "3"].map(str::to_owned));
        let kafka = nodes.first().map(|seed| seed.kafka.clone());
        if kafka.is_some() {
            args.extend(["--join".to_owned(), addrs[0].clone()]);
        }
        let env: Vec<(&str, &str)> = kafka
            .iter()
            .map(|k| ("AGORA_KAFKA_BROKERS", k.as_str()))
            .collect();
        nodes.push(spawn(name, dirs[i].path(), &args, &env)?);
    }
    settled(&reqwest::Client::new(), &nodes, plan.partitions).await?;
    Ok((nodes, started.elapsed()))
}

/// The static cluster: three nodes with `--members n1,n2,n3`, the notification service on n1.
async fn fixed(dirs: &[tempfile::TempDir]) -> anyhow::Result<Vec<Node>> {
    let addrs = cluster_addrs()?;
    let member = |i: usize, extra: &[String]| -> Vec<String> {
        let mut args: Vec<String> = [
            "--cluster",
            &addrs[i],
            "--join",
            &addrs[0],
            "--cookie",
            "bench",
            "--members",
            "n1,n2,n3",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend_from_slice(extra);
        args
    };
    let first = spawn(NAMES[0], dirs[0].path(), &member(0, &[]), &[])?;
    let others = [
        "--kafka-brokers",
        &first.kafka,
        "--roles",
        "gateway,product,inventory,order",
    ]
    .map(str::to_owned);
    let second = spawn(NAMES[1], dirs[1].path(), &member(1, &others), &[])?;
    let third = spawn(NAMES[2], dirs[2].path(), &member(2, &others), &[])?;
    let nodes = vec![first, second, third];
    let client = reqwest::Client::new();
    for node in &nodes {
        ready(&client, node).await?;
    }
    Ok(nodes)
}

pub async fn compare(plan: Plan) -> anyhow::Result<Comparison> {
    let alone_dir = data_dirs(1)?;
    let alone = spawn(NAMES[0], alone_dir[0].path(), &[], &[])?;
    ready(&reqwest::Client::new(), &alone).await?;
    let (one_node, _) = measure(&plan, std::slice::from_ref(&alone), 0.0).await?;
    drop(alone);
    let baseline = one_node.load.requests_per_sec;
    let mut comparison = Comparison {
        connections: plan.connections,
        measured_secs: plan.secs.as_secs_f64(),
        partitions: plan.partitions,
        one_node: Run {
            ratio: 1.0,
            ..one_node
        },
        one_member: None,
        replicated: None,
        formed_secs: None,
        failover: None,
        static_members: None,
    };
    eprintln!("{}", comparison.lines()[0]);
    if plan.replicated {
        let dirs = data_dirs(1)?;
        let (member, _) = replicated(&plan, &dirs, 1).await?;
        let (run, _) = measure(&plan, &member, baseline).await?;
        drop(member);
        comparison.one_member = Some(run);

        let dirs = data_dirs(NAMES.len())?;
        let (nodes, formed) = replicated(&plan, &dirs, NAMES.len()).await?;
        comparison.formed_secs = Some(formed.as_secs_f64());
        let (run, acked) = measure(&plan, &nodes, baseline).await?;
        comparison.replicated = Some(run);
        comparison.failover = Some(crate::failover::run(&plan, nodes, acked).await?);
    }
    if plan.fixed {
        let dirs = data_dirs(NAMES.len())?;
        let nodes = fixed(&dirs).await?;
        let (run, _) = measure(&plan, &nodes, baseline).await?;
        drop(nodes);
        comparison.static_members = Some(run);
    }
    Ok(comparison)
}
