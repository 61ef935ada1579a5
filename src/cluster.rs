//! Cluster: joins this node to the others with ractor_cluster and keeps it joined.
//!
//! It runs the node server (cookie-authenticated TCP between nodes, full mesh from one seed),
//! dials the seeds and the members again whenever they are not connected (ractor_cluster never
//! reconnects by itself; with `--dial`, the mesh is only what this node dials), logs a session that closes before authenticating as a refused cookie, forwards the
//! registry's changes to every peer, and spawns the peer actor that serves other nodes. The links
//! and peer actors run under service supervisors (`crate::service`), which restart them.
//! Which node owns a key is `layout`; calls to another node go through `links` (the routing
//! layer's `Remote`); what crosses the wire and how it is served is `peer`; request ids follow
//! calls through `trace`; `settler` finishes sagas that a node's death left half done on
//! another node.

pub mod layout;
pub mod links;
pub mod peer;
pub mod raft;
pub mod settler;
pub mod trace;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use self::layout::Layout;
use self::links::{start_links, Links};
use self::peer::{spawn_peer, PeerArgs, RaftDoor};
use self::raft::types::Member;
use self::raft::{become_member, keep_placed, replace_gone, Groups, JoinWatch};
use crate::codec;
use crate::config::ClusterConfig;
use crate::registry::Registry;
use crate::routing::Directory;
use crate::service::Supervision;

/// How often the seeds are dialled again when they are not connected.
const REDIAL: Duration = Duration::from_secs(1);

/// A node's membership in a cluster.
pub struct Cluster {
    node: String,
    listen: SocketAddr,
    seeds: Vec<String>,
    /// `--dial`: where this node reaches a node by name, instead of its advertised address.
    dial: BTreeMap<String, String>,
    links: Links,
    /// In a replicated cluster, this node's raft groups.
    groups: Option<Groups>,
    /// Sessions refused before they authenticated.
    refused: Arc<AtomicU64>,
    server: ActorRef<NodeServerMessage>,
    tasks: Vec<JoinHandle<()>>,
}

impl Cluster {
    /// Starts the node server on `listen` and the links to the members; the registry's changes
    /// go to the peers from now on.
    pub async fn start(
        layout: Arc<Layout>,
        config: &ClusterConfig,
        listen: SocketAddr,
        groups: Option<Groups>,
        registry: &Registry,
        timeout: Duration,
        supervision: &Supervision,
    ) -> anyhow::Result<Cluster> {
        let cookie = (config.cookie.as_ref()).context("--cookie is required with --cluster")?;
        let seeds = config.join.clone();
        let dial: BTreeMap<String, String> = (config.dial.iter())
            .map(|d| (d.name.clone(), d.addr.clone()))
            .collect();
        // Transitive mode dials the addresses peers list, which would go around `--dial`.
        let mode = match dial.is_empty() {
            true => NodeConnectionMode::Transitive,
            false => NodeConnectionMode::Isolated,
        };
        let host = config.host.clone();
        let node = layout.node().to_owned();
        let links = start_links(
            layout,
            groups.clone(),
            registry.clone(),
            timeout,
            supervision,
        );
        let links = links.await?;
        let server = NodeServer::new(
            listen.port(),
            cookie.expose().to_owned(),
            node.clone(),
            host.unwrap_or_else(|| listen.ip().to_string()),
            None,
            Some(mode),
        )
        .with_listen_addr(listen.ip());
        let refused = Arc::new(AtomicU64::new(0));
        let (server, _) = Actor::spawn(Some(format!("{node}/node-server")), server, ())
            .await
            .with_context(|| format!("cannot start the cluster listener on {listen}"))?;
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "agora".into(),
                subscription: Box::new(SessionLog {
                    refused: refused.clone(),
                    ..SessionLog::default()
                }),
            })
            .context("cannot watch cluster sessions")?;
        let (sink, changes) = mpsc::unbounded_channel();
        registry.replicate_to(sink);
        let forwarder = tokio::spawn(forward_changes(changes, links.clone()));
        Ok(Cluster {
            node,
            listen,
            seeds,
            dial,
            links,
            groups,
            refused,
            server,
            tasks: vec![forwarder],
        })
    }

    pub fn links(&self) -> Links {
        self.links.clone()
    }

    /// Resolves once this node has left its replicated cluster (never in any other).
    pub fn left(&self) -> impl std::future::Future<Output = ()> {
        let left = self.groups.as_ref().map(Groups::left);
        async move {
            if let Some(mut left) = left {
                if left.wait_for(|l| *l).await.is_ok() {
                    return;
                }
            }
            std::future::pending().await
        }
    }

    /// Opens this node to the others (its peer actor) and starts dialling the seeds.
    /// In a replicated cluster it becomes a member; a refusal goes to `fatal`.
    pub async fn open(
        &mut self,
        directory: Directory,
        registry: Registry,
        supervision: &Supervision,
        fatal: mpsc::UnboundedSender<String>,
    ) -> anyhow::Result<()> {
        let args = PeerArgs {
            node: self.node.clone(),
            directory,
            registry,
            groups: (self.groups.clone()).map(|g| Arc::new(g) as Arc<dyn RaftDoor>),
        };
        spawn_peer(args, supervision).await?;
        let own = self.listen.to_string();
        let seeds: Vec<String> = self.seeds.iter().filter(|s| **s != own).cloned().collect();
        if let Some(groups) = &self.groups {
            let founder = seeds.is_empty();
            let watch = JoinWatch {
                fatal,
                refused: self.refused.clone(),
            };
            self.tasks
                .push(tokio::spawn(become_member(groups.clone(), founder, watch)));
            self.tasks.push(tokio::spawn(keep_placed(groups.clone())));
            self.tasks.push(tokio::spawn(replace_gone(groups.clone())));
        }
        let dialler = Dialler {
            server: self.server.clone(),
            node: self.node.clone(),
            seeds,
            dial: self.dial.clone(),
            groups: self.groups.clone(),
        };
        self.tasks.push(tokio::spawn(dialler.run()));
        tracing::info!(node = %self.node, listen = %self.listen, seeds = ?self.seeds, "cluster node started");
        Ok(())
    }

    /// Leaves the cluster: stops dialling, stops the raft groups and closes every session.
    pub async fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
        if let Some(groups) = &self.groups {
            groups.shutdown().await;
        }
        self.server.stop(Some("shutdown".into()));
    }
}

/// Sends each registry change made here to every peer.
async fn forward_changes(
    mut changes: mpsc::UnboundedReceiver<crate::registry::Replication>,
    links: Links,
) {
    while let Some(change) = changes.recv().await {
        match codec::encode(&change) {
            Ok(bytes) => links.broadcast(bytes),
            Err(e) => tracing::warn!(error = %e, "a registry change does not encode"),
        }
    }
}

/// Keeps this node connected: to its seeds until it is connected to a member, and to every
/// member of the meta group it has no session with.
struct Dialler {
    server: ActorRef<NodeServerMessage>,
    node: String,
    seeds: Vec<String>,
    dial: BTreeMap<String, String>,
    groups: Option<Groups>,
}

impl Dialler {
    /// Dials what is not connected, every [`REDIAL`], forever.
    async fn run(self) {
        let mut tick = tokio::time::interval(REDIAL);
        loop {
            tick.tick().await;
            let Ok(sessions) = ractor::call_t!(self.server, NodeServerMessage::GetSessions, 1000)
            else {
                continue;
            };
            let mut connected = HashSet::new();
            for session in sessions.into_values() {
                connected.insert(session.peer_addr.to_string());
                if let Some(peer) = session.peer_name {
                    // ractor_cluster names a node `NAME@HOST`.
                    let name = peer.name.split('@').next().unwrap_or_default().to_owned();
                    connected.extend([name, peer.connection_string]);
                }
            }
            // At once and each within a bound: a blackholed address would hold the others
            // back for as long as the kernel retries a connect.
            let server = &self.server;
            let dials = self.targets(&connected).into_iter().map(|addr| async move {
                tracing::debug!(addr, "dialling a cluster node");
                let dialled = ractor_cluster::client_connect(server, addr.as_str());
                match tokio::time::timeout(REDIAL, dialled).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(addr, error = %e, "cluster node not reachable yet")
                    }
                    Err(_) => {
                        tracing::debug!(addr, "cluster node did not accept within {REDIAL:?}")
                    }
                }
            });
            futures::future::join_all(dials).await;
        }
    }

    /// The addresses to dial, given what is `connected` (peer names and addresses).
    fn targets(&self, connected: &HashSet<String>) -> Vec<String> {
        let members = (self.groups.as_ref())
            .map(Groups::members)
            .unwrap_or_default();
        let others = members.into_values().filter(|m| m.name != self.node);
        let (met, unmet): (Vec<Member>, Vec<Member>) =
            others.partition(|m| connected.contains(&m.name));
        let mut targets: Vec<String> = (unmet.into_iter())
            .map(|m| self.dial.get(&m.name).cloned().unwrap_or(m.cluster_addr))
            .collect();
        let member = (self.groups.as_ref()).is_some_and(Groups::is_member);
        if !member || met.is_empty() {
            let seeds = self.seeds.iter().filter(|s| !connected.contains(*s));
            targets.extend(seeds.cloned());
        }
        targets.sort();
        targets.dedup();
        targets
    }
}

/// Logs sessions as they come and go; one that closes before it authenticated was refused,
/// which with a reachable peer means the cookies differ.
#[derive(Default)]
struct SessionLog {
    /// Sessions that authenticated and have not closed. The node server actor owns this
    /// subscription and calls it from its handler; the trait takes `&self`, hence the lock.
    authenticated: std::sync::Mutex<HashSet<u64>>,
    /// Counts sessions refused before they authenticated (a joining node gives up on them).
    refused: Arc<AtomicU64>,
}

impl NodeEventSubscription for SessionLog {
    fn node_session_opened(&self, _ses: NodeServerSessionInformation) {}

    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        if let Ok(mut set) = self.authenticated.lock() {
            set.insert(ses.node_id);
        }
    }

    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let peer = ses.peer_name.map(|p| p.name).unwrap_or_default();
        tracing::info!(peer, addr = %ses.peer_addr, "joined a cluster node");
    }

    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let was_authenticated = self
            .authenticated
            .lock()
            .map(|mut set| set.remove(&ses.node_id))
            .unwrap_or(false);
        let peer = ses.peer_name.map(|p| p.name).unwrap_or_default();
        if was_authenticated {
            tracing::warn!(peer, addr = %ses.peer_addr, "lost the session with a cluster node");
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                peer,
                addr = %ses.peer_addr,
                "cluster session refused before authentication: the cookies differ (check --cookie)"
            );
        }
    }
}
