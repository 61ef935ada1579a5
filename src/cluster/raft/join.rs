//! Becoming a member: a node started without seeds founds the cluster (once: a restart finds
//! its groups initialized); a node with seeds asks any connected node to admit it, until the
//! meta group's log, replicated to it, lists it. A node that restarts on its data directory is
//! a member already and only checks that its peers are of its cluster.
//!
//! Refused, with a log line and a fatal stop of the node (a non-zero exit): a second live node
//! with this node's name, a data directory of another cluster, and seeds that keep refusing the
//! session (a wrong cookie).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::network::{self, RaftRpc};
use super::Groups;
use crate::cluster::peer::group_of;

/// How long to wait between attempts to be admitted.
const RETRY: Duration = Duration::from_secs(1);
/// How often a member checks with a peer that it still is one.
const RECHECK: Duration = Duration::from_secs(5);
/// How long sessions may keep being refused before the node gives up.
const REFUSED_FOR: Duration = Duration::from_secs(10);
/// What an admission refused for good starts with (not worth retrying).
pub const REFUSED: &str = "refused: ";

/// What a joining node reports to, and reads from, the rest of the node.
pub struct JoinWatch {
    /// Where a refusal stops the node (the root supervisor's fatal channel).
    pub fatal: mpsc::UnboundedSender<String>,
    /// Cluster sessions refused before they authenticated (counted by the session log).
    pub refused: Arc<AtomicU64>,
}

impl JoinWatch {
    /// Logs why this node cannot be in the cluster, and stops it.
    fn refuse(&self, why: String) {
        tracing::error!("refused: {}", why.trim_start_matches(REFUSED));
        let _ = self.fatal.send(why);
    }
}

/// Runs until this node is a member (see the module header).
pub async fn become_member(groups: Groups, founder: bool, watch: JoinWatch) {
    if founder {
        match groups.found().await {
            Ok(()) => tracing::info!(node = groups.name(), "founder of the cluster: running"),
            Err(e) => return watch.refuse(format!("cannot found the cluster: {e:#}")),
        }
        return stay_member(groups).await;
    }
    let started = Instant::now();
    let mut admitted = false;
    loop {
        let peers = connected_peers(groups.name());
        if live_copies(groups.name()) > 1 {
            let name = groups.name();
            return watch.refuse(format!(
                "a live node named {name} is already in the cluster"
            ));
        }
        if groups.is_member() {
            if let Some(peer) = peers.first() {
                match check_cluster(&groups, peer).await {
                    Ok(()) => {
                        tracing::info!(node = groups.name(), "member of the cluster");
                        return stay_member(groups).await;
                    }
                    Err(why) if why.starts_with(REFUSED) => return watch.refuse(why),
                    Err(why) => tracing::debug!(why, "cannot check the cluster yet"),
                }
            }
        } else if !admitted {
            for peer in &peers {
                match groups.join(peer).await {
                    Ok(()) => {
                        tracing::info!(via = %peer, "admitted to the cluster");
                        admitted = true;
                        break;
                    }
                    Err(why) if why.starts_with(REFUSED) => {
                        let why = why.trim_start_matches(REFUSED);
                        return watch.refuse(format!("not admitted to the cluster: {why}"));
                    }
                    Err(why) => tracing::info!(via = %peer, why, "not admitted yet"),
                }
            }
        }
        let refused = watch.refused.load(Ordering::Relaxed) > 0;
        if peers.is_empty() && refused && started.elapsed() > REFUSED_FOR {
            // ractor_cluster refuses the handshake of a second node with a connected name too.
            return watch.refuse(format!(
                "every seed refused the session for 10 s: the cookies differ (check --cookie), \
                 or a live node named {} is already in the cluster",
                groups.name()
            ));
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// Runs once this node is a member, until it leaves: a member that the others removed while it
/// was away (`leave`) hears it from a peer that is a member, and asks to be admitted again.
async fn stay_member(groups: Groups) {
    loop {
        tokio::time::sleep(RECHECK).await;
        if groups.is_leaving() {
            return;
        }
        for peer in connected_peers(groups.name()) {
            let rpc = RaftRpc::IsMember(groups.0.me);
            match network::call::<Option<bool>>(&peer, &rpc, Duration::from_secs(5)).await {
                Ok(Some(true)) => break,
                // Leaving since the loop began: removed on purpose.
                Ok(Some(false)) if groups.is_leaving() => return,
                Ok(Some(false)) => {
                    tracing::warn!(via = %peer, "no longer a member (away for longer than --replace-after): asking to be admitted again");
                    match groups.join(&peer).await {
                        Ok(()) => tracing::info!(via = %peer, "admitted to the cluster again"),
                        Err(why) => tracing::warn!(via = %peer, why, "not admitted again yet"),
                    }
                    break;
                }
                // Not a member itself (joining), or unreachable: ask another.
                Ok(None) | Err(_) => continue,
            }
        }
    }
}

/// Whether `peer` is of this node's cluster.
async fn check_cluster(groups: &Groups, peer: &str) -> Result<(), String> {
    let theirs: Option<u64> = network::call(peer, &RaftRpc::Hello, Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    match (groups.cluster_id(), theirs) {
        (Some(mine), Some(theirs)) if mine != theirs => Err(format!(
            "{REFUSED}this data directory belongs to cluster {mine:x}, but {peer} is of cluster \
             {theirs:x}: start it with an empty --data directory to join this cluster"
        )),
        (None, Some(theirs)) => groups.adopt(theirs),
        _ => Ok(()),
    }
}

/// How many nodes named `name` have a peer actor in the cluster now (this one included).
pub fn live_copies(name: &str) -> usize {
    ractor::pg::get_members(&group_of(name)).len()
}

/// The other nodes with a session to this one, by name.
fn connected_peers(own: &str) -> Vec<String> {
    let prefix = group_of("");
    ractor::pg::which_groups()
        .into_iter()
        .filter_map(|group| group.strip_prefix(&prefix).map(str::to_owned))
        .filter(|name| name != own)
        .filter(|name| {
            ractor::pg::get_members(&group_of(name))
                .iter()
                .any(|cell| !cell.get_id().is_local())
        })
        .collect()
}
