//! The partition layout: which member node owns a key.
//!
//! A key hashes (FNV-1a of its text) to one of a fixed number of partitions, and each partition
//! goes to one member by rendezvous hashing over the members that own its role. Members and the
//! partition count are fixed for the cluster's life (there is no handoff), so every node computes
//! the same owner without asking anyone, and a key is written by one node only. `Directory` asks
//! this module before it sends a request; `app` stores the layout's fingerprint in sled and
//! refuses to start with a different one.

use crate::config::{MemberSpec, Role};

#[derive(Debug, Clone)]
pub struct Layout {
    /// This node's name.
    node: String,
    partitions: u32,
    /// Sorted by name, no duplicates, never empty.
    members: Vec<MemberSpec>,
}

impl Layout {
    /// Checks the members: unique names, and this node listed exactly with the entity roles it
    /// runs (or absent when it runs none).
    pub fn new(
        node: &str,
        partitions: u32,
        mut members: Vec<MemberSpec>,
        roles: &[Role],
    ) -> Result<Layout, String> {
        let own: Vec<Role> = Role::ENTITIES
            .into_iter()
            .filter(|r| roles.contains(r))
            .collect();
        if members.is_empty() {
            if own.is_empty() {
                return Err("a node without product, inventory or order needs --members".into());
            }
            members.push(MemberSpec {
                name: node.to_owned(),
                roles: own.clone(),
            });
        }
        members.sort_by(|a, b| a.name.cmp(&b.name));
        if members.windows(2).any(|w| w[0].name == w[1].name) {
            return Err("--members names a node twice".into());
        }
        if partitions == 0 {
            return Err("--partitions must be at least 1".into());
        }
        let listed = members.iter().find(|m| m.name == node);
        match listed {
            Some(m) if m.roles.iter().any(|r| !own.contains(r)) || own.len() != m.roles.len() => {
                return Err(format!(
                    "--members gives {node} the roles {:?} but it runs {own:?}",
                    m.roles
                ))
            }
            None if !own.is_empty() => {
                return Err(format!(
                    "{node} runs {own:?} but is not in --members: it would own nothing"
                ))
            }
            _ => {}
        }
        Ok(Layout {
            node: node.to_owned(),
            partitions,
            members,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Whether every key of every role lives on this node (no cluster, or a cluster of one).
    pub fn is_single(&self) -> bool {
        self.members.len() == 1 && self.members[0].name == self.node
    }

    pub fn partition(&self, key: &str) -> u32 {
        partition_of(key, self.partitions)
    }

    /// The member that owns `key` of `role`; `None` if no member owns that role.
    pub fn owner(&self, role: Role, key: &str) -> Option<&str> {
        let partition = self.partition(key);
        self.members_with(role).max_by_key(|name| {
            mix(fnv1a(
                fnv1a(FNV_OFFSET, name.as_bytes()),
                &partition.to_be_bytes(),
            ))
        })
    }

    /// Whether this node owns `key` of `role`.
    pub fn owns(&self, role: Role, key: &str) -> bool {
        self.is_single() || self.owner(role, key) == Some(self.node.as_str())
    }

    /// The members owning partitions of `role`, by name.
    pub fn members_with(&self, role: Role) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .filter(move |m| m.roles.contains(&role))
            .map(|m| m.name.as_str())
    }

    /// Every member but this node.
    pub fn peers(&self) -> impl Iterator<Item = &str> {
        self.members
            .iter()
            .map(|m| m.name.as_str())
            .filter(move |name| *name != self.node)
    }

    /// What must not change while data exists: the partition count and each member's roles
    /// (a node alone owns every key whatever its name).
    pub fn fingerprint(&self) -> String {
        if self.is_single() {
            return "single node".into();
        }
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={:?}", m.name, m.roles))
            .collect();
        format!("partitions={};{}", self.partitions, members.join(","))
    }
}

/// The partition of the key whose text is `key`, among `partitions`.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    (fnv1a(FNV_OFFSET, key.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// splitmix64's finaliser: FNV alone leaves the high bits, which `max` compares first, to
/// the name's first bytes.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

const FNV_OFFSET: u64 = 0xcbf29ce484222325;

/// FNV-1a of `bytes`, continuing from `seed` (start from [`FNV_OFFSET`]): hashing a name and
/// then a partition is the hash of both, without joining them in a buffer.
fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(seed, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Layout {
        let members = ["n1", "n2", "n3"].map(|n| n.parse().unwrap()).to_vec();
        Layout::new("n1", 32, members, &Role::ALL).unwrap()
    }

    #[test]
    fn keys_spread_over_every_member_and_owners_are_stable() {
        let layout = three();
        let mut seen = std::collections::BTreeMap::new();
        for i in 0..300 {
            let key = format!("sku-{i}");
            let owner = layout.owner(Role::Inventory, &key).unwrap();
            assert_eq!(Some(owner), three().owner(Role::Inventory, &key));
            *seen.entry(owner.to_owned()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        assert!(seen.values().all(|&n| n > 50), "{seen:?}");
    }

    #[test]
    fn roles_limit_ownership_and_must_match() {
        let members = vec!["n1".parse().unwrap(), "n2=order".parse().unwrap()];
        let layout = Layout::new("n1", 8, members.clone(), &Role::ALL).unwrap();
        for i in 0..50 {
            assert_eq!(layout.owner(Role::Product, &i.to_string()), Some("n1"));
        }
        assert!(Layout::new("n2", 8, members, &Role::ALL).is_err());
        assert!(Layout::new("n9", 8, vec![], &[Role::Gateway]).is_err());
        assert!(Layout::new("n1", 8, vec![], &Role::ALL)
            .unwrap()
            .is_single());
    }
}
