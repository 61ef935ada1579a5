//! The notifier's outbox in a replicated cluster. Every replica of a partition holds its
//! outbox events (each applied entry is committed, so each is durable); only the partition's
//! leader sends them, and a delivered event is removed from every replica by a log entry of its
//! partition, proposed in batches. Until that entry applies, a delivered event is not sent
//! again; a leader change before it sends it again from the new leader (at least once; the
//! notification service records each event id once).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ractor::ActorRef;

use super::NotifierMsg;
use crate::actors::entity::Replicas;
use crate::storage::{event_group, Batch, Storage};

pub(super) struct ReplicatedOutbox {
    replicas: Arc<dyn Replicas>,
    /// Delivered events whose removal is proposed or waiting to be.
    removing: HashSet<u64>,
    /// Delivered events whose removal is not proposed yet.
    to_remove: Vec<u64>,
}

impl ReplicatedOutbox {
    pub(super) fn new(replicas: Arc<dyn Replicas>) -> ReplicatedOutbox {
        ReplicatedOutbox {
            replicas,
            removing: HashSet::new(),
            to_remove: Vec::new(),
        }
    }

    /// Whether this node sends the event under `key` now.
    pub(super) fn sends(&self, key: u64) -> bool {
        !self.removing.contains(&key) && self.replicas.leads(event_group(key) as u32)
    }

    pub(super) fn delivered(&mut self, key: u64) {
        if self.removing.insert(key) {
            self.to_remove.push(key);
        }
    }

    /// Proposes the removal of every delivered event, one batch per partition; each batch's
    /// outcome comes back as [`NotifierMsg::Removed`].
    pub(super) fn propose_removals(&mut self, storage: &Storage, notifier: &ActorRef<NotifierMsg>) {
        let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for key in self.to_remove.drain(..) {
            by_partition
                .entry(event_group(key) as u32)
                .or_default()
                .push(key);
        }
        for (partition, keys) in by_partition {
            let mut batch = Batch::default();
            for key in &keys {
                storage.outbox.stage_remove(&mut batch, key);
            }
            let (replicas, notifier) = (self.replicas.clone(), notifier.clone());
            tokio::spawn(async move {
                let removed = match replicas.lead(partition).await {
                    Ok(tenure) => replicas.commit(tenure, batch).await.is_ok(),
                    Err(_) => false,
                };
                let _ = notifier.cast(NotifierMsg::Removed { keys, removed });
            });
        }
    }

    /// A removal's outcome: done, or to be proposed again (by this node while it leads).
    pub(super) fn removed(&mut self, keys: Vec<u64>, removed: bool) {
        for key in keys {
            if removed || !self.replicas.leads(event_group(key) as u32) {
                self.removing.remove(&key);
            } else {
                self.to_remove.push(key);
            }
        }
    }
}
