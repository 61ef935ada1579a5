//! Leadership hints: who leads each partition, for the partitions this node holds no replica
//! of (a cluster of more members than `--replicas`), and for those whose replica here no longer
//! hears from its group (a node moved off a partition keeps the last leader it saw).
//!
//! Once a second (`placement`'s tick) this node asks every connected member which partitions
//! it leads ([`Groups::led`], over `RaftRpc::Led`). Of what it hears and what its own replica
//! says, the higher term wins: raft has one leader per term, so a stale claim always carries
//! an older term. A hint that went stale since sends a request to a node that answers 503
//! with `Retry-After` (it leads the partition no more), never to a wrong answer.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use openraft::{RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};

use super::network::{self, RaftRpc};
use super::types::{Member, NodeId};
use super::{Groups, RaftHandle};

/// How long one member may take to say what it leads.
const ASK: Duration = Duration::from_secs(1);

/// A partition as its leader describes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Leadership {
    pub partition: u32,
    pub term: u64,
    pub leader: String,
    pub voters: Vec<String>,
    pub learners: Vec<String>,
    /// The replicas that had every entry of the leader's log when it answered (so one of
    /// them can win an election at once: a preferred replica claims leadership only then).
    pub caught_up: Vec<String>,
}

/// The leader `metrics` know, but not this node (`me`) unless it is the leader now: openraft
/// names the node its vote is for, and a leader that committed a membership without itself
/// keeps that vote while it is a learner or out of the group.
pub(super) fn known_leader(metrics: &RaftMetrics<NodeId, Member>, me: NodeId) -> Option<NodeId> {
    let leader = metrics.current_leader?;
    (leader != me || metrics.state == ServerState::Leader).then_some(leader)
}

impl Groups {
    /// The partitions this node leads.
    pub fn led(&self) -> Vec<Leadership> {
        (0..)
            .zip(&self.0.parts)
            .filter_map(|(partition, raft)| self.local(partition, raft))
            .filter(|l| l.leader == self.name())
            .collect()
    }

    /// `partition` as this node's replica sees it, or as a leader said, whichever is newer.
    pub fn leadership(&self, partition: u32) -> Option<Leadership> {
        let local = self.local(partition, self.0.parts.get(partition as usize)?);
        let hint = self.0.hints.borrow().get(&partition).cloned();
        match (local, hint) {
            (Some(local), Some(hint)) if hint.term > local.term => Some(hint),
            (local, hint) => local.or(hint),
        }
    }

    /// The name of the node leading `partition`, as this node last heard.
    pub fn leader_of(&self, partition: u32) -> Option<String> {
        // Every request routed in a cluster asks this: one look at the partition's own
        // membership (it names its nodes) and one at the hints, no copy of either.
        let metrics = self.0.parts.get(partition as usize)?.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let local = (known_leader(&metrics, self.0.me).as_ref())
            .and_then(|id| membership.get_node(id))
            .map(|m| (metrics.current_term, &m.name));
        let hints = self.0.hints.borrow();
        let hint = hints.get(&partition).map(|h| (h.term, &h.leader));
        match (local, hint) {
            (Some(local), Some(hint)) if hint.0 > local.0 => Some(hint.1.clone()),
            (local, hint) => local.or(hint).map(|(_, name)| name.clone()),
        }
    }

    /// Whether the leader of `partition` said, when last asked, that this node's replica had
    /// every entry of its log.
    pub(super) fn caught_up(&self, partition: u32) -> bool {
        let hints = self.0.hints.borrow();
        let hint = hints.get(&partition);
        hint.is_some_and(|h| h.caught_up.iter().any(|n| n == self.name()))
    }

    /// Asks every connected member what it leads and keeps the newest claim per partition;
    /// a claim stays until a newer one replaces it, its node answers without it, or its node
    /// is no longer a member (it left, or was replaced).
    pub(super) async fn refresh_hints(&self) {
        let me = self.name().to_owned();
        let members = self.members();
        let names: BTreeSet<String> = members.values().map(|m| m.name.clone()).collect();
        let others = members.into_values().filter(|m| m.name != me);
        let asks = others.map(|m| async move {
            let led = network::call::<Vec<Leadership>>(&m.name, &RaftRpc::Led, ASK).await;
            (m.name, led)
        });
        let answers = futures::future::join_all(asks).await;
        for (node, led) in &answers {
            if let Err(e) = led {
                tracing::debug!(node, error = %e, "no leadership hints from a member");
            }
        }
        let mut hints: BTreeMap<u32, Leadership> = self.0.hints.borrow().clone();
        hints.retain(|_, h| names.contains(&h.leader));
        for (node, led) in &answers {
            if let Ok(led) = led {
                hints.retain(|p, h| h.leader != *node || led.iter().any(|l| l.partition == *p));
            }
        }
        for leadership in answers
            .into_iter()
            .filter_map(|(_, led)| led.ok())
            .flatten()
        {
            let newer =
                (hints.get(&leadership.partition)).is_none_or(|h| h.term <= leadership.term);
            if newer {
                hints.insert(leadership.partition, leadership);
            }
        }
        tracing::debug!(hinted = ?hints.iter().map(|(p, h)| (*p, h.term, h.leader.clone())).collect::<Vec<_>>(), "leadership hints");
        self.0.hints.send_replace(hints);
    }

    /// `partition` as its replica on this node sees it, if it knows a leader.
    fn local(&self, partition: u32, raft: &RaftHandle) -> Option<Leadership> {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let name = |id: &u64| membership.get_node(id).map(|m| m.name.clone());
        let last = metrics.last_log_index;
        let matched = (metrics.replication.iter().flatten())
            .filter(|(_, matched)| matched.map(|m| m.index) >= last)
            .filter_map(|(id, _)| name(id));
        Some(Leadership {
            partition,
            term: metrics.current_term,
            leader: name(&known_leader(&metrics, self.0.me)?)?,
            voters: membership.voter_ids().filter_map(|id| name(&id)).collect(),
            learners: membership
                .learner_ids()
                .filter_map(|id| name(&id))
                .collect(),
            caught_up: matched.collect(),
        })
    }
}
