//! Raft groups: the meta group (the members of the cluster) and one group per partition, every
//! one an openraft `Raft` on this node, sharing the node's sled database and its group commit
//! (`log`, `machine`), talking over the cluster's peer actors (`network`).
//!
//! [`Groups`] is what the rest of the node sees: the leader of a partition (routing asks it
//! through the cluster's `Remote`), [`Replicas`] for the entity actors (a read index before a
//! decision, a commit for each write), admission of joining nodes, and a listing for `/cluster`
//! and `/health`. `placement` keeps each partition's replicas where rendezvous hashing puts
//! them and hands leadership to each partition's preferred replica.

mod gauges;
mod hints;
mod join;
mod leave;
pub mod log;
pub mod machine;
pub mod network;
mod placement;
mod replicas;
pub mod types;
mod view;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use openraft::{Config, SnapshotPolicy};
use tokio::sync::watch;

use self::log::LogStore;
use self::machine::Machine;
use self::network::{Network, RaftRpc};
use self::types::{node_id, Applied, GroupId, Member, NodeId, Proposal, RaftHandle, META};
use crate::cluster::peer::RaftDoor;
use crate::error::ShopError;
use crate::metrics::Metrics;
use crate::storage::Storage;

use self::hints::Leadership;
pub use self::join::{become_member, JoinWatch};
use self::join::{live_copies, REFUSED};
pub use self::leave::replace_gone;
pub use self::placement::{keep_placed, replicas_of};

/// How long a read index or a commit may take before the caller hears `Unavailable`.
pub(super) const WAIT: Duration = Duration::from_secs(3);
/// What the data directory remembers: its incarnation (part of the node's raft id) and the id
/// of its cluster.
const INCARNATION: &str = "incarnation";
const CLUSTER: &str = "cluster";

/// What the groups are built with.
#[derive(Debug, Clone)]
pub struct RaftSettings {
    pub partitions: u32,
    /// Replicas per partition (capped by the number of members).
    pub replicas: usize,
    /// Log entries between two snapshots of a group.
    pub snapshot_logs: u64,
    /// How long a member may have no session before the meta leader removes it.
    pub replace_after: Duration,
}

/// This node's raft groups; cheap to clone.
#[derive(Clone)]
pub struct Groups(Arc<Inner>);

struct Inner {
    me: NodeId,
    /// Where the cluster id and the incarnation are kept.
    storage: Storage,
    member: Member,
    settings: RaftSettings,
    meta: RaftHandle,
    /// One per partition, indexed by partition number.
    parts: Vec<RaftHandle>,
    /// Per partition: writes whose outcome is unknown so far (see `Tenure`).
    epochs: Vec<AtomicU64>,
    /// Per partition: whether its membership is this node alone (kept by its log store).
    lone: Vec<Arc<AtomicBool>>,
    /// Per partition: the epoch (of `epochs`) a read index last confirmed, so that a write of
    /// unknown outcome is followed by a read index, which waits for it, before any decision.
    confirmed: Vec<AtomicU64>,
    metrics: Arc<Metrics>,
    /// Set once, when this node is asked to leave: from then on placement leaves it out and it
    /// never rejoins.
    leaving: AtomicBool,
    /// Turns true once it has left.
    left: watch::Sender<bool>,
    /// Per partition, the newest leader another member claimed to be (see `hints`).
    hints: watch::Sender<BTreeMap<u32, Leadership>>,
}

impl Groups {
    /// Opens every group on `storage`; none is started as a member yet (see
    /// [`Groups::bootstrap`] and [`Groups::join`]).
    pub async fn start(
        storage: &Storage,
        member: Member,
        settings: RaftSettings,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Groups> {
        let incarnation = match storage.recall(INCARNATION)? {
            Some(incarnation) => incarnation,
            None => {
                let fresh = uuid::Uuid::new_v4().as_u64_pair().0;
                storage.remember(INCARNATION, fresh)?;
                fresh
            }
        };
        let me = node_id(&member.name, incarnation);
        let config = Config {
            cluster_name: "agora".into(),
            heartbeat_interval: 200,
            election_timeout_min: 750,
            election_timeout_max: 1500,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(settings.snapshot_logs.max(1)),
            max_in_snapshot_log_to_keep: settings.snapshot_logs / 10,
            purge_batch_size: 64,
            ..Default::default()
        };
        let config = Arc::new(config.validate().context("raft settings")?);
        let (members, _) = watch::channel(BTreeMap::new());
        let open = |group: GroupId| {
            let (config, members) = (config.clone(), members.clone());
            async move {
                let log = LogStore::open(storage, group, me)
                    .with_context(|| format!("cannot open the raft log of group {group}"))?;
                let lone = log.lone();
                let machine = Machine::open(storage.clone(), group, settings.partitions, members)
                    .with_context(|| format!("cannot open the state of group {group}"))?;
                let raft = RaftHandle::new(me, config, Network { group }, log, machine)
                    .await
                    .with_context(|| format!("cannot start raft group {group}"))?;
                // The membership it starts with, from the core itself (its metrics are not
                // published yet); its log store follows every later one.
                let alone = raft
                    .with_raft_state(move |state| {
                        let effective = state.membership_state.effective();
                        let mut nodes = effective.nodes().map(|(id, _)| *id);
                        nodes.next() == Some(me) && nodes.next().is_none()
                    })
                    .await
                    .with_context(|| format!("raft group {group} stopped at start"))?;
                lone.store(alone, Ordering::Release);
                anyhow::Ok((raft, lone))
            }
        };
        let (meta, _) = open(META).await?;
        let (mut parts, mut lone) = (Vec::new(), Vec::new());
        for partition in 0..settings.partitions {
            let (raft, alone) = open(partition).await?;
            parts.push(raft);
            lone.push(alone);
        }
        let epochs = parts.iter().map(|_| AtomicU64::new(0)).collect();
        let confirmed = parts.iter().map(|_| AtomicU64::new(0)).collect();
        Ok(Groups(Arc::new(Inner {
            me,
            storage: storage.clone(),
            member,
            settings,
            meta,
            parts,
            epochs,
            lone,
            confirmed,
            metrics,
            leaving: AtomicBool::new(false),
            left: watch::Sender::new(false),
            hints: watch::Sender::new(BTreeMap::new()),
        })))
    }

    /// Starts a new cluster with this node its only member, unless it already is one; the
    /// cluster's id is this node's.
    pub async fn found(&self) -> anyhow::Result<()> {
        // The id first: a founder that stops before its groups are initialized initializes
        // them when it restarts, never without an id.
        if self.cluster_id().is_none() {
            self.0.storage.remember(CLUSTER, self.0.me)?;
        }
        self.bootstrap().await
    }

    /// Keeps `cluster` as this node's cluster id (a member that stopped before it kept it).
    pub fn adopt(&self, cluster: u64) -> Result<(), String> {
        (self.0.storage.remember(CLUSTER, cluster)).map_err(|e| e.to_string())
    }

    /// The id of the cluster this node's data belongs to, once it founded or joined one.
    pub fn cluster_id(&self) -> Option<u64> {
        self.0.storage.recall(CLUSTER).ok().flatten()
    }

    /// Initializes every group not initialized yet with this node its only member.
    async fn bootstrap(&self) -> anyhow::Result<()> {
        let alone = BTreeMap::from([(self.0.me, self.0.member.clone())]);
        for raft in std::iter::once(&self.0.meta).chain(&self.0.parts) {
            if !raft.is_initialized().await? {
                raft.initialize(alone.clone())
                    .await
                    .context("cannot start a new cluster")?;
            }
        }
        Ok(())
    }

    /// Whether this node is in the meta group's membership (it joined, now or before).
    pub fn is_member(&self) -> bool {
        self.member(self.0.me).is_some()
    }

    /// Asks `peer` (any node of the cluster) to admit this node, and keeps the cluster's id.
    pub async fn join(&self, peer: &str) -> Result<(), String> {
        if self.is_leaving() {
            return Err("this node is leaving the cluster".into());
        }
        let rpc = RaftRpc::Join(self.0.me, self.0.member.clone(), self.cluster_id());
        let cluster: u64 = network::call(peer, &rpc, Duration::from_secs(30))
            .await
            .map_err(|e| e.to_string())?;
        self.adopt(cluster)
    }

    /// Admits `member` (id `id`, of data belonging to `cluster` if any) to the cluster, on the
    /// meta leader (another node passes it there): a learner of the meta group first, then a
    /// voter, replacing an earlier incarnation of the same name (a node whose data was wiped).
    /// Placement then gives it partitions. Answers the cluster's id.
    pub async fn admit(
        &self,
        id: NodeId,
        member: Member,
        cluster: Option<u64>,
    ) -> Result<u64, String> {
        let meta = &self.0.meta;
        let leader = meta.current_leader().await;
        if leader != Some(self.0.me) {
            let name = leader
                .and_then(|id| self.member(id))
                .map(|m| m.name)
                .ok_or("the cluster has no leader yet")?;
            let rpc = RaftRpc::Join(id, member, cluster);
            return network::call(&name, &rpc, Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string());
        }
        let ours = self
            .cluster_id()
            .ok_or("this node has not joined a cluster yet")?;
        if cluster.is_some_and(|theirs| theirs != ours) {
            return Err(format!(
                "{REFUSED}the data directory of {} belongs to another cluster",
                member.name
            ));
        }
        let earlier: Vec<NodeId> = (self.members().into_iter())
            .filter(|(other, m)| m.name == member.name && *other != id)
            .map(|(other, _)| other)
            .collect();
        if !earlier.is_empty() && live_copies(&member.name) > 1 {
            return Err(format!(
                "{REFUSED}a live node named {} is already a member",
                member.name
            ));
        }
        tracing::info!(node = %member.name, addr = %member.cluster_addr, replaces = ?earlier, "admitting a node to the cluster");
        meta.add_learner(id, member, true)
            .await
            .map_err(|e| e.to_string())?;
        let mut voters: BTreeSet<NodeId> = self.voters(meta);
        let before = voters.clone();
        voters.insert(id);
        voters.retain(|v| !earlier.contains(v));
        if voters != before {
            meta.change_membership(voters, false)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(ours)
    }

    /// Commits `proposal` in `group` through its leader, wherever it is (one hop).
    pub async fn propose(&self, group: GroupId, proposal: Proposal) -> Result<Applied, String> {
        let raft = self
            .group(group)
            .ok_or_else(|| format!("no group {group}"))?;
        let leader = match group {
            META => (raft.metrics().borrow().current_leader)
                .and_then(|id| self.member(id))
                .map(|m| m.name),
            partition => self.leader_of(partition),
        };
        match leader {
            Some(leader) if leader == self.name() => self.propose_here(group, proposal).await,
            Some(leader) => {
                let rpc = RaftRpc::Propose(group, proposal);
                network::call(&leader, &rpc, WAIT)
                    .await
                    .map_err(|e| e.to_string())
            }
            None => Err(format!(
                "group {group} has no leader (an election is under way)"
            )),
        }
    }

    /// Commits `proposal` in `group`, which this node must lead.
    pub async fn propose_here(
        &self,
        group: GroupId,
        proposal: Proposal,
    ) -> Result<Applied, String> {
        let raft = self
            .group(group)
            .ok_or_else(|| format!("no group {group}"))?;
        match tokio::time::timeout(WAIT, raft.client_write(proposal)).await {
            Ok(Ok(written)) => Ok(written.data),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("not committed in time".into()),
        }
    }

    /// The members of the cluster, by id.
    pub fn members(&self) -> BTreeMap<NodeId, Member> {
        let metrics = self.0.meta.metrics();
        let metrics = metrics.borrow();
        (metrics.membership_config.nodes())
            .map(|(id, m)| (*id, m.clone()))
            .collect()
    }

    fn member(&self, id: NodeId) -> Option<Member> {
        let metrics = self.0.meta.metrics();
        let member = metrics
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned();
        member
    }

    fn voters(&self, raft: &RaftHandle) -> BTreeSet<NodeId> {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        metrics.membership_config.membership().voter_ids().collect()
    }

    /// The group `group` of this node.
    pub fn group(&self, group: GroupId) -> Option<&RaftHandle> {
        match group {
            META => Some(&self.0.meta),
            p => self.0.parts.get(p as usize),
        }
    }

    /// Whether this node is a voter of `partition`.
    fn is_replica(&self, partition: u32) -> bool {
        (self.0.parts.get(partition as usize))
            .is_some_and(|raft| self.voters(raft).contains(&self.0.me))
    }

    /// The group `group` of this node, for a message addressed to raft id `to`.
    pub fn addressed(&self, to: NodeId, group: GroupId) -> Result<&RaftHandle, String> {
        if to != self.0.me {
            return Err(format!("{} is not raft node {to} (any more)", self.name()));
        }
        self.group(group)
            .ok_or_else(|| format!("no group {group} here"))
    }

    pub fn name(&self) -> &str {
        &self.0.member.name
    }

    pub fn partitions(&self) -> u32 {
        self.0.settings.partitions
    }

    /// Stops every group (shutdown).
    pub async fn shutdown(&self) {
        for raft in std::iter::once(&self.0.meta).chain(&self.0.parts) {
            let _ = raft.shutdown().await;
        }
    }

    fn part(&self, partition: u32) -> Result<&RaftHandle, ShopError> {
        (self.0.parts.get(partition as usize))
            .ok_or_else(|| ShopError::Internal(format!("no partition {partition}")))
    }

    fn unavailable(partition: u32, why: impl std::fmt::Display) -> ShopError {
        ShopError::NotLeader(format!(
            "partition {partition} is not led by this node ({why}): retry"
        ))
    }
}

#[async_trait::async_trait]
impl RaftDoor for Groups {
    async fn serve(&self, message: Vec<u8>) -> Vec<u8> {
        network::serve(self, &message).await
    }
}
