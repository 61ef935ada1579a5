//! The types openraft is configured with: node ids, what a node is, what a log entry proposes
//! and what applying it answers. Every raft group of a node (the meta group and each partition)
//! shares this one configuration; the entries of the two kinds of group are variants of one
//! [`Proposal`].

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::storage::Batch;

/// A node's raft id: derived from its `--node` name and its data directory's incarnation, so a
/// node that restarts on its data is the same voter, and one whose data was wiped is a new one
/// (that replaces the old: a voter that forgot its votes must not vote again).
pub type NodeId = u64;

/// Which raft group: [`META`] or a partition number.
pub type GroupId = u32;

/// The group that holds the members of the cluster.
pub const META: GroupId = u32::MAX;

/// A member as raft knows it: enough to reach it and to name it in logs and listings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// Its node-to-node (ractor_cluster) address.
    pub cluster_addr: String,
    /// Its HTTP gateway address, for listings.
    pub http_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.cluster_addr)
    }
}

/// What one log entry asks of the state machine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Proposal {
    /// Writes to this partition's records, applied together, and who makes them durable: a
    /// barrier (no writes), or an entry of an older build.
    Writes(Batch, Flush),
    /// Meta group: `member` belongs to the cluster (joins, or its addresses changed).
    Join { id: NodeId, member: Member },
    /// Record a notification (an encoded record) unless its event id was recorded before:
    /// decided when applied, so two consumers that both received the event record it once.
    Record { event_id: String, record: Vec<u8> },
    /// Writes decided on state read in `term`: applied only if the entry is of that term,
    /// skipped otherwise ([`Applied::fenced`]). The proposer checks its term before it
    /// proposes, but the node may lose the partition and win it back before the entry is
    /// appended; applied in the later term, it would overwrite what the leaders between wrote.
    WritesOfTerm {
        batch: Batch,
        flush: Flush,
        term: u64,
    },
}

/// When an entry of [`Proposal::Writes`] is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Flush {
    /// Before its append completes: what raft needs of every voter, and what an entry that
    /// carries outbox events needs (the notifier sends what is applied).
    OnAppend,
    /// In a group whose only member is its leader, the append may complete before the flush:
    /// the proposer waits for the node's next flush before it answers anyone (`log` holds the
    /// rule, and takes it only while the group has that one member).
    ByProposer,
}

/// What applying an entry answers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    /// The entry's index in its group's log.
    pub index: u64,
    /// For a [`Proposal::Record`]: whether it was new (not a duplicate).
    pub fresh: bool,
    /// For a [`Proposal::WritesOfTerm`]: skipped, since its entry is of another term.
    pub fenced: bool,
}

openraft::declare_raft_types!(
    pub Raft:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Entry = openraft::Entry<Raft>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<Raft>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type RaftHandle = openraft::Raft<Raft>;

/// The raft id of the node named `name` on a data directory of `incarnation` (FNV-1a; 0 is
/// avoided, openraft's default id).
pub fn node_id(name: &str, incarnation: u64) -> NodeId {
    let hash = (name.bytes().chain(incarnation.to_be_bytes()))
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
    hash.max(1)
}
