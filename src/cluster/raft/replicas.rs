//! The partitions as entity actors see them ([`Replicas`]): leadership, commits and notification
//! records, each through the partition's raft group on this node.
//!
//! A decision needs the partition's leader with everything committed before applied: a read
//! index confirms it, except in a group whose only member is this node, where no other leader
//! can exist and the node's own metrics say it. After a write of unknown outcome a read index
//! is not enough (the entry may commit later): an empty entry, committed, settles its fate. A
//! write is one log entry; in such a group an entry without outbox events completes before the
//! node's flush (`log`), and the commit says [`Committed::Unflushed`] so the writer waits for
//! the flush before it answers.

use std::sync::atomic::Ordering;

use super::hints::known_leader;
use super::types::{Flush, Proposal};
use super::{Groups, WAIT};
use crate::actors::entity::{Committed, Replicas, Tenure};
use crate::cluster::layout::partition_of;
use crate::error::ShopError;
use crate::storage::Batch;

impl Groups {
    /// Whether `partition`'s membership is this node alone.
    fn is_lone(&self, partition: u32) -> bool {
        (self.0.lone.get(partition as usize)).is_some_and(|lone| lone.load(Ordering::Acquire))
    }

    /// Whether this node leads `partition` alone and has applied its term's first entry (so
    /// every entry of earlier terms): a decision then needs no read index (unless a write's
    /// outcome was left unknown: see `lead`).
    fn leads_alone(&self, partition: u32) -> bool {
        let Some(raft) = self.0.parts.get(partition as usize) else {
            return false;
        };
        let metrics = raft.metrics();
        let metrics = metrics.borrow();
        self.is_lone(partition)
            && known_leader(&metrics, self.0.me) == Some(self.0.me)
            && metrics.last_applied.map(|applied| applied.leader_id.term)
                == Some(metrics.current_term)
    }
}

#[async_trait::async_trait]
impl Replicas for Groups {
    fn partition(&self, key: &str) -> u32 {
        partition_of(key, self.0.settings.partitions)
    }

    fn partitions(&self) -> u32 {
        self.0.settings.partitions
    }

    fn leads(&self, partition: u32) -> bool {
        (self.0.parts.get(partition as usize)).is_some_and(|raft| {
            known_leader(&raft.metrics().borrow(), self.0.me) == Some(self.0.me)
        })
    }

    async fn lead(&self, partition: u32) -> Result<Tenure, ShopError> {
        let raft = self.part(partition)?;
        let term = raft.metrics().borrow().current_term;
        let epoch = self.0.epochs[partition as usize].load(Ordering::Acquire);
        let unsure = epoch != self.0.confirmed[partition as usize].load(Ordering::Acquire);
        let confirmed = if unsure {
            // A write of unknown outcome may still sit in this leader's log, uncommitted: a
            // read index (the commit index) does not wait for it, and it could commit after a
            // decision that took it for lost. A barrier entry does: once the barrier applies,
            // every entry before it in the leader's log has too, and an entry not in that log
            // can never commit.
            let barrier = Proposal::Writes(Batch::default(), Flush::OnAppend);
            let written = tokio::time::timeout(WAIT, raft.client_write(barrier)).await;
            written.map(|w| w.map(drop).map_err(|e| e.to_string()))
        } else if self.leads_alone(partition) {
            Ok(Ok(()))
        } else {
            let read = tokio::time::timeout(WAIT, raft.ensure_linearizable()).await;
            read.map(|r| r.map(drop).map_err(|e| e.to_string()))
        };
        match confirmed {
            Ok(Ok(())) => {
                // Writes of unknown outcome up to `epoch` were proposed before the barrier, so
                // their fate is settled and applied.
                self.0.confirmed[partition as usize].fetch_max(epoch, Ordering::AcqRel);
            }
            Ok(Err(e)) => {
                tracing::debug!(partition, error = %e, "not the partition's leader");
                let why = match self.leader_of(partition) {
                    Some(leader) => format!("{leader} leads it"),
                    None => "an election is under way".to_owned(),
                };
                return Err(Groups::unavailable(partition, why));
            }
            Err(_) => return Err(Groups::unavailable(partition, "no quorum answered in time")),
        }
        // Confirmed in the term it began in, or not at all: a leader that lost the partition
        // and won it back meanwhile may not have applied what the term between committed.
        if raft.metrics().borrow().current_term != term {
            return Err(Groups::unavailable(
                partition,
                "its leader changed meanwhile",
            ));
        }
        Ok(Tenure {
            partition,
            term,
            epoch: self.0.epochs[partition as usize].load(Ordering::Acquire),
        })
    }

    async fn record_once(&self, event_id: &str, record: Vec<u8>) -> Result<bool, ShopError> {
        let partition = self.partition(event_id);
        let event_id = event_id.to_owned();
        let applied = self.propose(partition, Proposal::Record { event_id, record });
        (applied.await)
            .map(|applied| applied.fresh)
            .map_err(|why| ShopError::Unavailable(format!("partition {partition}: {why}")))
    }

    async fn commit(&self, tenure: Tenure, batch: Batch) -> Result<Committed, ShopError> {
        let partition = tenure.partition;
        let raft = self.part(partition)?;
        // A tenure is the actor's fencing token: its state was loaded and decided on in that
        // term. Proposed in a later term (this node lost the partition and won it back while
        // the command ran), the entry would overwrite what the leaders between wrote.
        if raft.metrics().borrow().current_term != tenure.term {
            return Err(Groups::unavailable(
                partition,
                "its leader changed since the state was read",
            ));
        }
        // The notifier sends what is applied, so an entry with events is durable on append.
        let (flush, committed) = match self.is_lone(partition) && !batch.has_events() {
            true => (Flush::ByProposer, Committed::Unflushed),
            false => (Flush::OnAppend, Committed::Durable),
        };
        let term = tenure.term;
        let proposal = Proposal::WritesOfTerm { batch, flush, term };
        let timer = (self.0.metrics.raft_commit_duration)
            .with_label_values(&[&partition.to_string()])
            .start_timer();
        let written = tokio::time::timeout(WAIT, raft.client_write(proposal)).await;
        let why = match written {
            Ok(Ok(reply)) if reply.data.fenced => {
                return Err(Groups::unavailable(
                    partition,
                    "its leader changed since the state was read",
                ));
            }
            Ok(Ok(_)) => {
                timer.observe_duration();
                return Ok(committed);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "not committed in time".to_owned(),
        };
        // The entry may still commit: the actors of this partition must reload before deciding.
        self.0.epochs[partition as usize].fetch_add(1, Ordering::AcqRel);
        self.0.metrics.raft_unknown_outcomes.inc();
        Err(ShopError::Unavailable(format!(
            "partition {partition}: the write's outcome is unknown ({why}); retry"
        )))
    }
}
