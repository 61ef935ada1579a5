//! Cluster: joins this node to the others with ractor_cluster and keeps it joined.
//!
//! It runs the node server (cookie-authenticated TCP between nodes, full mesh from one seed),
//! dials the seeds again whenever they are not connected (ractor_cluster never reconnects by
//! itself), logs a session that closes before authenticating as a refused cookie, forwards the
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

use std::collections::HashSet;
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
use self::raft::{become_member, keep_placed, Groups, JoinWatch};
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
            Some(NodeConnectionMode::Transitive),
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
        }
        self.tasks
            .push(tokio::spawn(redial(self.server.clone(), seeds)));
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

/// Dials every seed that has no session, forever.
async fn redial(server: ActorRef<NodeServerMessage>, seeds: Vec<String>) {
    let mut tick = tokio::time::interval(REDIAL);
    loop {
        tick.tick().await;
        let connected: HashSet<String> =
            match ractor::call_t!(server, NodeServerMessage::GetSessions, 1000) {
                Ok(sessions) => sessions
                    .into_values()
                    .flat_map(|s| {
                        let name = s.peer_name.map(|p| p.connection_string);
                        [Some(s.peer_addr), name].into_iter().flatten()
                    })
                    .collect(),
                Err(_) => continue,
            };
        for seed in seeds.iter().filter(|s| !connected.contains(*s)) {
            tracing::debug!(seed, "dialling a seed node");
            if let Err(e) = ractor_cluster::client_connect(&server, seed.as_str()).await {
                tracing::debug!(seed, error = %e, "seed not reachable yet");
            }
        }
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
