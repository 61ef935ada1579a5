//! What the groups look like from this node: members, and each partition's leader, voters,
//! learners and progress, for `GET /cluster` and `/health`. A partition's leader, term and
//! replicas are its replica's here or, when newer, a leader's claim (`hints`); progress is
//! always this node's own.

use crate::actors::entity::{ClusterView, MemberView, PartitionView};

use super::Groups;

impl Groups {
    /// The cluster as this node sees it; `reachable` says whether a member answers now.
    pub fn describe(&self, reachable: impl Fn(&str) -> bool) -> ClusterView {
        let members = self.members();
        let partitions = (0..)
            .zip(&self.0.parts)
            .map(|(partition, raft)| {
                let (applied, term) = {
                    let metrics = raft.metrics();
                    let metrics = metrics.borrow();
                    (
                        metrics.last_applied.map(|id| id.index),
                        metrics.current_term,
                    )
                };
                match self.leadership(partition) {
                    Some(l) => PartitionView {
                        partition,
                        leader: Some(l.leader),
                        replicas: l.voters,
                        learners: l.learners,
                        term: l.term,
                        last_applied: applied,
                    },
                    None => PartitionView {
                        partition,
                        leader: None,
                        replicas: Vec::new(),
                        learners: Vec::new(),
                        term,
                        last_applied: applied,
                    },
                }
            })
            .collect();
        let replicas_wanted = self.0.settings.replicas.min(members.len()).max(1);
        let members = (members.values())
            .map(|m| MemberView {
                name: m.name.clone(),
                cluster_addr: m.cluster_addr.clone(),
                http_addr: m.http_addr.clone(),
                reachable: reachable(&m.name),
            })
            .collect();
        ClusterView {
            node: self.name().to_owned(),
            replicas_wanted,
            members,
            partitions,
        }
    }
}
