//! [`Replicas`]: where a partition's writes go when the node is one replica among several.
//! The cluster implements it (raft groups, `cluster::raft`); on a node alone there is none and
//! entities write to storage directly.
//!
//! An entity actor works only on its partition's leader, and only for one [`Tenure`]: the term
//! it led in when it loaded its state, and the number of writes of that partition whose fate
//! was left unknown. A new term (leadership went elsewhere and may have come back) or an
//! unknown outcome ends the tenure, and the actor reloads its state from what the log applied
//! before it decides anything again: so no decision is taken on a state older than the log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::ShopError;
use crate::storage::{Batch, Storage};

/// One leadership of one partition as seen by this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tenure {
    pub partition: u32,
    pub term: u64,
    /// Bumped whenever a write of this partition failed with an unknown outcome.
    pub epoch: u64,
}

/// How a committed write is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// On a majority of the partition's replicas, each durable.
    Durable,
    /// On this node, the partition's only replica, once the node's next flush is done
    /// ([`Storage::durable`]): the writer waits for it before it answers.
    Unflushed,
}

/// The replicated partitions, as entity actors see them.
#[async_trait::async_trait]
pub trait Replicas: Send + Sync + 'static {
    /// The partition of the key whose text is `key`.
    fn partition(&self, key: &str) -> u32;

    /// How many partitions there are.
    fn partitions(&self) -> u32;

    /// Whether this node leads `partition`, as far as it knows now (no round trip: for work
    /// that tolerates a stale answer, like which outbox events to send).
    fn leads(&self, partition: u32) -> bool;

    /// Confirms that this node leads `partition` (a read index: a quorum answers a heartbeat)
    /// and waits until every entry committed before is applied here; `Unavailable` otherwise.
    async fn lead(&self, partition: u32) -> Result<Tenure, ShopError>;

    /// Records a notification (`record`, encoded) in the partition of `event_id`, through its
    /// leader wherever it is, unless that event id was recorded before (decided as the log
    /// applies, so once cluster-wide). Whether it was new.
    async fn record_once(&self, event_id: &str, record: Vec<u8>) -> Result<bool, ShopError>;

    /// Appends `batch` to the partition's log under `tenure` and returns once it is committed
    /// and applied here: on a majority, each replica durable, or on this node alone before
    /// its flush ([`Committed`]).
    async fn commit(&self, tenure: Tenure, batch: Batch) -> Result<Committed, ShopError>;
}

/// What an entity's writes go through: the replicas with the actor's tenure, or nothing.
#[derive(Clone, Default)]
pub(super) struct Writes {
    pub(super) replicas: Option<Arc<dyn Replicas>>,
    /// Set once the actor loaded its state as leader; `None` on a node alone.
    pub(super) tenure: Option<Tenure>,
    /// Set when a write of this actor failed: its state may differ from storage's, so the
    /// actor stops after the command and the next one loads afresh. One per actor.
    pub(super) stale: Arc<AtomicBool>,
    /// Set when a write of this actor was committed [`Committed::Unflushed`]: the next
    /// [`Writes::flush_needed`] says so, once.
    pub(super) unflushed: Arc<AtomicBool>,
}

impl Writes {
    pub(super) async fn commit(&self, storage: &Storage, batch: Batch) -> Result<(), ShopError> {
        let result = match (&self.replicas, self.tenure) {
            (Some(replicas), Some(tenure)) => replicas.commit(tenure, batch).await,
            (Some(_), None) => Err(ShopError::NotLeader(
                "this node does not lead the partition".into(),
            )),
            (None, _) => {
                (storage.apply(batch).map_err(ShopError::from)).map(|()| Committed::Unflushed)
            }
        };
        match result {
            Ok(Committed::Unflushed) => self.unflushed.store(true, Ordering::Relaxed),
            Ok(Committed::Durable) => {}
            Err(_) => self.stale.store(true, Ordering::Relaxed),
        }
        result.map(drop)
    }

    /// Whether a write of this actor may not be durable yet (always on a node alone); clears
    /// the mark.
    pub(super) fn flush_needed(&self) -> bool {
        self.replicas.is_none() || self.unflushed.swap(false, Ordering::Relaxed)
    }

    /// This actor's own flags, cleared.
    pub(super) fn for_new_actor(&mut self) {
        self.stale = Arc::new(AtomicBool::new(false));
        self.unflushed = Arc::new(AtomicBool::new(false));
    }

    pub(super) fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }
}
