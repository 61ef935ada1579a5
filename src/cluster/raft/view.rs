//! What the groups look like from this node: members, and each partition's leader, voters,
//! learners and progress, for `GET /cluster` and `/health`.

use crate::actors::entity::{ClusterView, MemberView, PartitionView};

use super::Groups;

impl Groups {
    /// The cluster as this node sees it; `reachable` says whether a member answers now.
    pub fn describe(&self, reachable: impl Fn(&str) -> bool) -> ClusterView {
        let members = self.members();
        let name_of = |id: &u64| members.get(id).map(|m| m.name.clone());
        let partitions = (self.0.parts.iter().enumerate())
            .map(|(partition, raft)| {
                let metrics = raft.metrics();
                let metrics = metrics.borrow();
                let membership = metrics.membership_config.membership();
                PartitionView {
                    partition: partition as u32,
                    leader: metrics.current_leader.as_ref().and_then(name_of),
                    replicas: membership
                        .voter_ids()
                        .filter_map(|id| name_of(&id))
                        .collect(),
                    learners: membership
                        .learner_ids()
                        .filter_map(|id| name_of(&id))
                        .collect(),
                    term: metrics.current_term,
                    last_applied: metrics.last_applied.map(|id| id.index),
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
