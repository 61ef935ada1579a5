//! The raft groups' series at `/metrics`, refreshed once a second by placement's loop: the
//! partitions this node leads and follows, and per partition its leader changes, log size,
//! snapshots and, where this node leads, each replica's lag (commit latency is timed where a
//! write commits, in `replicas`).

use std::collections::BTreeMap;

use super::types::NodeId;
use super::Groups;

/// What the last refresh saw per partition: its leader and last snapshot's index.
#[derive(Default)]
pub struct Seen {
    leaders: BTreeMap<u32, Option<NodeId>>,
    snapshots: BTreeMap<u32, Option<u64>>,
}

impl Groups {
    /// Updates the gauges and counts what changed since `seen`.
    pub(super) fn observe(&self, seen: &mut Seen) {
        let metrics = &self.0.metrics;
        let (mut leads, mut follows) = (0, 0);
        for (partition, raft) in (0..).zip(&self.0.parts) {
            let label = partition.to_string();
            let m = raft.metrics();
            let m = m.borrow();
            let leader = m.current_leader;
            match leader {
                Some(id) if id == self.0.me => leads += 1,
                _ if self.is_replica(partition) => follows += 1,
                _ => {}
            }
            if (seen.leaders.insert(partition, leader)).is_some_and(|before| before != leader) {
                metrics
                    .raft_leader_changes
                    .with_label_values(&[&label])
                    .inc();
            }
            let snapshot = m.snapshot.map(|s| s.index);
            if (seen.snapshots.insert(partition, snapshot)).is_some_and(|before| before != snapshot)
            {
                metrics.raft_snapshots.with_label_values(&[&label]).inc();
            }
            let (last, purged) = (
                m.last_log_index.unwrap_or(0),
                m.purged.map_or(0, |p| p.index),
            );
            let entries = last.saturating_sub(purged) as i64;
            metrics
                .raft_log_entries
                .with_label_values(&[&label])
                .set(entries);
            let membership = m.membership_config.membership();
            for (id, matched) in m.replication.iter().flatten() {
                let Some(replica) = membership.get_node(id) else {
                    continue;
                };
                let lag = last.saturating_sub(matched.map_or(0, |l| l.index)) as i64;
                let labels = [label.as_str(), replica.name.as_str()];
                metrics
                    .raft_replication_lag
                    .with_label_values(&labels)
                    .set(lag);
            }
        }
        let gauge = &metrics.raft_partitions;
        gauge.with_label_values(&["leader"]).set(leads);
        gauge.with_label_values(&["follower"]).set(follows);
    }
}
