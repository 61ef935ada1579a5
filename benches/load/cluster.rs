//! The cluster scenario: the same one-line order load against one node and against a
//! three-node cluster on this machine, as a ratio. Every node is a real `agora` process with
//! its own data directory; the load generator spreads its connections over the gateways, and
//! each side is audited like the main run.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::driver::{self, MakeCall};
use crate::report::{Audit, Side};

/// An `agora serve` child process; killed when dropped.
struct Node {
    child: Child,
    http: SocketAddr,
    kafka: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a node and reads its gateway and Kafka addresses from its start-up lines; its
/// output is drained for as long as it runs.
fn spawn(data: &Path, args: &[String]) -> anyhow::Result<Node> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agora"))
        .args(["serve", "--http", "127.0.0.1:0", "--data"])
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut http = None;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
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
    let (http, kafka) = rx.recv_timeout(Duration::from_secs(60))?;
    Ok(Node { child, http, kafka })
}

/// Polls `/health` until its `cluster` component is UP.
async fn ready(client: &reqwest::Client, node: &Node) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let health: Option<serde_json::Value> = async {
            let response = client
                .get(format!("http://{}/health", node.http))
                .send()
                .await
                .ok()?;
            response.json().await.ok()
        }
        .await;
        if health.is_some_and(|h| h["components"]["cluster"]["status"] == "UP") {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "node {} never got ready",
            node.http
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub connections: usize,
    pub one_node: Side,
    pub three_nodes: Side,
    /// Three nodes' orders/s over one node's, measured back to back in this run.
    pub ratio: f64,
    pub audit_one_node: Audit,
    pub audit_three_nodes: Audit,
}

impl Comparison {
    pub fn clean(&self) -> bool {
        self.audit_one_node.clean() && self.audit_three_nodes.clean()
    }
}

/// Seeds, loads and audits the nodes (the first one serves the seeding and the audit).
async fn measure(
    nodes: &[Node],
    make: MakeCall,
    connections: usize,
    warmup: Duration,
    secs: Duration,
) -> anyhow::Result<(Side, Audit)> {
    let client = reqwest::Client::new();
    for node in nodes {
        ready(&client, node).await?;
    }
    let base = format!("http://{}", nodes[0].http);
    crate::seed(&client, &base).await?;
    let gateways: Vec<SocketAddr> = nodes.iter().map(|n| n.http).collect();
    let outcome = driver::run(&gateways, connections, make, warmup, secs).await;
    let acked = crate::order_numbers(&outcome);
    let audit = crate::audit(&client, &base, &acked).await?;
    Ok((Side::of(&outcome), audit))
}

pub async fn compare(
    make: MakeCall,
    connections: usize,
    warmup: Duration,
    secs: Duration,
) -> anyhow::Result<Comparison> {
    let dirs: Vec<tempfile::TempDir> = (0..4)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let alone = spawn(dirs[0].path(), &[])?;
    let (one_node, audit_one_node) =
        measure(&[alone], make.clone(), connections, warmup, secs).await?;

    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
    };
    let addrs = (0..3)
        .map(|_| Ok(format!("127.0.0.1:{}", port()?)))
        .collect::<std::io::Result<Vec<String>>>()?;
    let member = |i: usize, extra: &[String]| -> Vec<String> {
        let mut args: Vec<String> = [
            "--node",
            &format!("n{}", i + 1),
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
    let first = spawn(dirs[1].path(), &member(0, &[]))?;
    let others = [
        "--kafka-brokers",
        &first.kafka,
        "--roles",
        "gateway,product,inventory,order",
    ]
    .map(str::to_owned);
    let second = spawn(dirs[2].path(), &member(1, &others))?;
    let third = spawn(dirs[3].path(), &member(2, &others))?;
    let (three_nodes, audit_three_nodes) =
        measure(&[first, second, third], make, connections, warmup, secs).await?;
    let ratio = three_nodes.requests_per_sec / one_node.requests_per_sec.max(1.0);
    Ok(Comparison {
        connections,
        one_node,
        three_nodes,
        ratio,
        audit_one_node,
        audit_three_nodes,
    })
}
