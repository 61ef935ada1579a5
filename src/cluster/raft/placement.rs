//! Placement: which members hold each partition's replicas (rendezvous hashing over the members
//! of the meta group, so a new member takes a share and moves little), and the loop on every
//! node that makes the partitions it leads match that placement (new replicas join as learners,
//! then become voters) and hands each partition's leadership to its preferred replica (the
//! first in placement order), which spreads leaders over the members: that replica claims it
//! by an election once its leader says it has every entry, and backs off after each claim. A leaving node places
//! the partitions it leads without itself.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::ChangeMembers;

use super::gauges::Seen;
use super::types::{Member, NodeId};
use super::Groups;

/// How often placement is checked.
const EVERY: Duration = Duration::from_secs(1);
/// How long a partition must look settled before its preferred replica claims leadership.
const SETTLED_FOR: Duration = Duration::from_secs(3);
/// After a claim, how long before the next one for that partition (doubled after each claim
/// that did not make this node the leader, up to [`LONGEST_BACKOFF`]): a claim that loses
/// leaves the partition without a leader for an election timeout.
const BACKOFF: Duration = Duration::from_secs(5);
const LONGEST_BACKOFF: Duration = Duration::from_secs(60);

/// The replicas of `partition` among `members`, preferred leader first.
pub fn replicas_of(
    members: &BTreeMap<NodeId, Member>,
    partition: u32,
    replicas: usize,
) -> Vec<NodeId> {
    let mut ranked: Vec<(u64, NodeId)> = members
        .iter()
        .map(|(id, m)| (score(&m.name, partition), *id))
        .collect();
    ranked.sort_by(|a, b| b.cmp(a));
    ranked
        .into_iter()
        .take(replicas.max(1))
        .map(|(_, id)| id)
        .collect()
}

fn score(name: &str, partition: u32) -> u64 {
    let hash = name
        .bytes()
        .chain(partition.to_be_bytes())
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
    // splitmix64's finaliser, so the high bits depend on every byte.
    let mut x = hash;
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

/// Runs forever: see the module header.
pub async fn keep_placed(groups: Groups) {
    let mut tick = tokio::time::interval(EVERY);
    // Per partition: since when it looked settled with another leader than its preferred one.
    let mut settled_since: BTreeMap<u32, Instant> = BTreeMap::new();
    let mut seen = Seen::default();
    // Per partition: when this node may claim it next, and the backoff after that claim.
    let mut claims: BTreeMap<u32, (Instant, Duration)> = BTreeMap::new();
    loop {
        tick.tick().await;
        groups.refresh_hints().await;
        groups.observe(&mut seen);
        let mut members = groups.members();
        if groups.is_leaving() {
            // Its partitions go to the others, those it leads too (it steps down then).
            members.remove(&groups.0.me);
        } else if !members.contains_key(&groups.0.me) {
            continue;
        }
        for partition in 0..groups.partitions() {
            let want = replicas_of(&members, partition, groups.0.settings.replicas);
            match place(&groups, &members, partition, &want).await {
                Ok(true) => {
                    let since = settled_since.entry(partition).or_insert_with(Instant::now);
                    let (next, backoff) = claims
                        .get(&partition)
                        .copied()
                        .unwrap_or((*since, BACKOFF / 2));
                    if since.elapsed() >= SETTLED_FOR
                        && Instant::now() >= next
                        && groups.caught_up(partition)
                    {
                        settled_since.remove(&partition);
                        let backoff = (backoff * 2).min(LONGEST_BACKOFF);
                        claims.insert(partition, (Instant::now() + backoff, backoff));
                        claim(&groups, partition).await;
                    }
                }
                Ok(false) => {
                    settled_since.remove(&partition);
                    if groups.leader_of(partition).as_deref() == Some(groups.name()) {
                        claims.remove(&partition);
                    }
                }
                Err(e) => {
                    settled_since.remove(&partition);
                    tracing::debug!(partition, error = %e, "placement not reached yet");
                }
            }
        }
    }
}

/// Moves `partition` towards `want` if this node leads it. `Ok(true)`: the partition has the
/// wanted voters, and this node is its preferred replica while another node leads it.
async fn place(
    groups: &Groups,
    members: &BTreeMap<NodeId, Member>,
    partition: u32,
    want: &[NodeId],
) -> Result<bool, String> {
    let me = groups.0.me;
    let raft = &groups.0.parts[partition as usize];
    let (leader, voters, known) = {
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let known: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        (metrics.current_leader, voters, known)
    };
    let wanted: BTreeSet<NodeId> = want.iter().copied().collect();
    if leader != Some(me) {
        return Ok(voters == wanted && want.first() == Some(&me) && leader.is_some());
    }
    for id in want.iter().filter(|id| !known.contains(id)) {
        if let Some(member) = members.get(id) {
            tracing::info!(partition, node = %member.name, "adding a replica (learner)");
            raft.add_learner(*id, member.clone(), false)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    if voters != wanted && wanted.iter().all(|id| known.contains(id)) {
        tracing::info!(partition, ?wanted, "changing a partition's voters");
        raft.change_membership(wanted, false)
            .await
            .map_err(|e| e.to_string())?;
    } else if voters == wanted && known != wanted {
        // Learners added for a placement that changed before they became voters.
        let extra: BTreeSet<NodeId> = known.difference(&wanted).copied().collect();
        tracing::info!(
            partition,
            ?extra,
            "removing learners placement no longer wants"
        );
        raft.change_membership(ChangeMembers::RemoveNodes(extra), false)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(false)
}

/// Starts an election in `partition`, which this node wins if its log is up to date: the way
/// a preferred replica takes leadership back (openraft 0.9 has no leader transfer).
async fn claim(groups: &Groups, partition: u32) {
    let raft = &groups.0.parts[partition as usize];
    tracing::info!(partition, "claiming leadership as the preferred replica");
    if let Err(e) = raft.trigger().elect().await {
        tracing::warn!(partition, error = %e, "cannot start an election");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> BTreeMap<NodeId, Member> {
        names
            .iter()
            .map(|n| {
                let member = Member {
                    name: n.to_string(),
                    ..Member::default()
                };
                (super::super::types::node_id(n, 7), member)
            })
            .collect()
    }

    #[test]
    fn placement_is_stable_spreads_leaders_and_moves_little() {
        let three = members(&["n1", "n2", "n3"]);
        let mut leaders = BTreeSet::new();
        for p in 0..16 {
            let replicas = replicas_of(&three, p, 3);
            assert_eq!(replicas.len(), 3);
            leaders.insert(replicas[0]);
        }
        assert_eq!(leaders.len(), 3, "every member leads some partition");
        let four = members(&["n1", "n2", "n3", "n4"]);
        let moved = (0..64)
            .filter(|p| {
                let before: BTreeSet<_> = replicas_of(&three, *p, 2).into_iter().collect();
                let after: BTreeSet<_> = replicas_of(&four, *p, 2).into_iter().collect();
                before != after
            })
            .count();
        assert!(moved < 48, "{moved} of 64 partitions moved");
    }
}
