//! Leaving the cluster, and replacing a member that is gone.
//!
//! A node asked to leave (`POST /cluster/leave`) has the meta group's leader remove it from the
//! members; placement then moves its replicas to the others (the partitions it leads too: it
//! changes their voters to placement's, without itself, and steps down once that commits). It
//! asks the other members which partitions they lead until every partition is led elsewhere
//! and lists it no more, then stops the node (exit 0).
//!
//! On the meta leader, a member with no session for longer than `--replace-after` is removed
//! the same way, so that its replicas are rebuilt on the others (only when the others are at
//! least `--replicas`, so there is somewhere to rebuild them); a node that comes back after
//! that rejoins as a new member (`join`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use openraft::ChangeMembers;
use tokio::sync::watch;

use super::hints::Leadership;
use super::join::live_copies;
use super::network::{self, RaftRpc};
use super::types::NodeId;
use super::{Groups, WAIT};

/// How often a leaving node checks how far it got.
const EVERY: Duration = Duration::from_secs(1);
/// How long a removal may take to commit.
const CHANGE_WITHIN: Duration = Duration::from_secs(10);

impl Groups {
    /// Starts leaving the cluster (see the module header); [`Groups::left`] turns true when
    /// it is done. Once only: `false` when this node was leaving already.
    pub fn leave(&self) -> bool {
        if self.0.leaving.swap(true, Ordering::AcqRel) {
            return false;
        }
        tracing::info!(
            node = self.name(),
            "leaving the cluster: moving its replicas to the others"
        );
        tokio::spawn(drain(self.clone()));
        true
    }

    /// Turns true once this node has left the cluster: the node stops then.
    pub fn left(&self) -> watch::Receiver<bool> {
        self.0.left.subscribe()
    }

    /// Whether this node was asked to leave.
    pub fn is_leaving(&self) -> bool {
        self.0.leaving.load(Ordering::Acquire)
    }

    /// Removes `id` from the members, on the meta leader (another node passes it there).
    pub async fn remove_member(&self, id: NodeId) -> Result<(), String> {
        let meta = &self.0.meta;
        let leader = meta.current_leader().await;
        if leader != Some(self.0.me) {
            let name = self.name_of(leader)?;
            return (network::call(&name, &RaftRpc::Remove(id), WAIT).await)
                .map_err(|e| e.to_string());
        }
        let Some(member) = self.members().remove(&id) else {
            return Ok(());
        };
        tracing::info!(node = %member, "removing a member of the cluster");
        let change = match self.voters(meta).contains(&id) {
            true => ChangeMembers::RemoveVoters(BTreeSet::from([id])),
            false => ChangeMembers::RemoveNodes(BTreeSet::from([id])),
        };
        // Without a quorum a change waits forever: give up, and let the caller try again.
        match tokio::time::timeout(CHANGE_WITHIN, meta.change_membership(change, false)).await {
            Ok(changed) => changed.map(drop).map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "the removal did not commit within {CHANGE_WITHIN:?}"
            )),
        }
    }

    /// The name of the node with raft id `id`, for a call to it.
    fn name_of(&self, id: Option<NodeId>) -> Result<String, String> {
        id.and_then(|id| self.member(id))
            .map(|m| m.name)
            .ok_or_else(|| "the cluster has no leader yet".to_owned())
    }
}

/// Removes this node from the members, then waits until the others lead every partition
/// without it; [`Groups::left`] turns true then.
async fn drain(groups: Groups) {
    let me = groups.0.me;
    let started = Instant::now();
    let mut tick = tokio::time::interval(EVERY);
    let mut removed = false;
    loop {
        tick.tick().await;
        if !removed {
            // Once: a node no longer a member hears of the meta group's leader no more.
            if let Err(e) = groups.remove_member(me).await {
                tracing::info!(error = %e, "not removed from the members yet");
                continue;
            }
            removed = true;
        }
        // What the others lead, by their claims (placement's loop asks them every second).
        let name = groups.name();
        let holds = |l: &Leadership| {
            let replicas = l.voters.iter().chain(&l.learners);
            l.leader == name || replicas.into_iter().any(|n| n == name)
        };
        let hints = groups.0.hints.borrow().clone();
        let holding: Vec<u32> = (0..groups.partitions())
            .filter(|p| hints.get(p).is_none_or(holds))
            .collect();
        if holding.is_empty() {
            tracing::info!(after = ?started.elapsed(), "left the cluster: every partition is led by the others without this node");
            groups.0.left.send_replace(true);
            return;
        }
        tracing::info!(
            partitions = holding.len(),
            ?holding,
            "leaving: partitions not yet led by the others without this node"
        );
    }
}

/// On the meta leader, forever: removes every member that has had no session for
/// `--replace-after`.
pub async fn replace_gone(groups: Groups) {
    let after = groups.0.settings.replace_after;
    let mut gone_since: BTreeMap<NodeId, Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        let leader = groups.0.meta.metrics().borrow().current_leader;
        if leader != Some(groups.0.me) || groups.is_leaving() {
            gone_since.clear();
            continue;
        }
        let members = groups.members();
        gone_since.retain(|id, _| members.contains_key(id));
        // Only where the others can hold every replica without it: else a removal rebuilds
        // nothing and only makes the node's return cost a full copy.
        if members.len() <= groups.0.settings.replicas {
            gone_since.clear();
            continue;
        }
        for (id, member) in members.iter().filter(|(id, _)| **id != groups.0.me) {
            if live_copies(&member.name) > 0 {
                gone_since.remove(id);
                continue;
            }
            let since = *gone_since.entry(*id).or_insert_with(Instant::now);
            if since.elapsed() >= after {
                tracing::warn!(node = %member, gone_for = ?since.elapsed(), "a member has been gone for longer than --replace-after: its replicas are rebuilt on the others");
                match groups.remove_member(*id).await {
                    Ok(()) => drop(gone_since.remove(id)),
                    Err(e) => {
                        tracing::warn!(node = %member, error = %e, "cannot remove a gone member yet")
                    }
                }
            }
        }
    }
}
