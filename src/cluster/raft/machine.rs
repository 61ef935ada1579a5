//! The raft state machine of one group: applies its committed entries to the node's database
//! and snapshots what the group owns.
//!
//! A partition's machine applies [`Proposal::WritesOfTerm`] (those of their own term) and
//! [`Proposal::Writes`] batches through [`Storage::apply_committed`] to the shared tables; its
//! state is every row of those tables whose key belongs to the partition ([`belongs`]). The
//! meta group's machine applies [`Proposal::Join`] to the cluster's members (storage's
//! `cluster_members` tree) and publishes the whole map on a watch, for the cluster layer.
//! openraft drives it from each group's state-machine worker ([`RaftStateMachine`]) and its
//! snapshot task ([`SnapshotBuilder`]).
//!
//! Per group, `raft_state` (see `super::log`) holds `applied`, `membership` and the current
//! snapshot (`snapshot`: meta and data, so a restart still serves it). `applied` is written after
//! the data of the entries it covers: sled recovers a prefix of its log, so after a crash the
//! data may be ahead of `applied`, never behind, and openraft re-applies the difference (puts and
//! removals, idempotent). Installing a snapshot stores it first; a machine that opens with a
//! stored snapshot newer than its `applied` finishes that interrupted install.

// openraft's traits return its `StorageError` (over 200 bytes); the helpers here return it too,
// so `?` carries their errors through, on paths that are not hot.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::Cursor;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use self::frames::{push_framed, snapshot_record, split_pieces, split_record};
use super::log::{read_state, write_state};
use super::types::{
    Applied, Entry, GroupId, LogId, Member, NodeId, Proposal, Raft, SnapshotMeta, StorageError,
    StoredMembership, META,
};
use crate::cluster::layout::partition_of;
use crate::codec;
use crate::domain::{OrderNumber, ProductId, Sku};
use crate::storage::{event_group, RaftTrees, Rows, Storage, TableId, TableKey};

const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const SNAPSHOT: &str = "snapshot";

/// The members of the cluster, by raft id.
pub type Members = BTreeMap<NodeId, Member>;

/// One piece of a snapshot's data. The data is a sequence of pieces, each a codec record behind
/// its length (4 bytes big-endian), so a snapshot of any size decodes within the codec's limit
/// on one record.
#[derive(Debug, Serialize, Deserialize)]
enum Piece {
    /// A partition's row, as stored.
    Row {
        table: TableId,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// A member of the cluster (meta group).
    Member { id: NodeId, member: Member },
}

/// The state machine of one group.
pub struct Machine {
    storage: Storage,
    trees: RaftTrees,
    group: GroupId,
    partitions: u32,
    /// Where the meta group publishes the members; unused by partitions.
    publish: watch::Sender<Members>,
    /// The meta group's members (empty for a partition).
    members: Members,
    applied: Option<LogId>,
    membership: StoredMembership,
}

impl Machine {
    /// The machine of `group` (one of `partitions`, or [`META`]) in `storage`'s database. The
    /// meta machine publishes its members on `members` now and after each change; a partition's
    /// machine never uses it.
    pub fn open(
        storage: Storage,
        group: GroupId,
        partitions: u32,
        members: watch::Sender<Members>,
    ) -> Result<Machine, StorageError> {
        let trees = storage.raft_trees();
        let applied: Option<Option<LogId>> =
            read_state(&trees.state, group, APPLIED).map_err(StorageIOError::read_state_machine)?;
        let applied = applied.flatten();
        let membership = read_state(&trees.state, group, MEMBERSHIP)
            .map_err(StorageIOError::read_state_machine)?
            .unwrap_or_default();
        let mut machine = Machine {
            storage,
            trees,
            group,
            partitions,
            publish: members,
            members: Members::new(),
            applied,
            membership,
        };
        if group == META {
            machine.members = load_members(&machine.trees.members)?;
        }
        if let Some((meta, data)) = machine.stored_snapshot()? {
            if meta.last_log_id > machine.applied {
                tracing::info!(group, snapshot = %meta.snapshot_id, "finishing an interrupted snapshot install");
                machine.restore(&meta, &data)?;
            }
        }
        if group == META {
            machine.publish.send_replace(machine.members.clone());
        }
        Ok(machine)
    }

    /// Whether the row under `key` of `table` belongs to this partition.
    fn belongs(&self, table: TableId, key: &[u8]) -> bool {
        belongs(self.group, self.partitions, table, key)
    }

    /// The current snapshot as stored: its meta and its data.
    fn stored_snapshot(&self) -> Result<Option<(SnapshotMeta, Vec<u8>)>, StorageError> {
        let key = super::log::state_key(self.group, SNAPSHOT);
        let Some(record) =
            (self.trees.state.get(key)).map_err(|e| StorageIOError::read_snapshot(None, &e))?
        else {
            return Ok(None);
        };
        let (meta, data) =
            split_record(&record).map_err(|e| StorageIOError::read_snapshot(None, e))?;
        Ok(Some((meta, data.to_vec())))
    }

    /// Copies what this group owns and the applied state it reflects, now.
    fn copied(&self) -> Result<Snapshot<Raft>, StorageError> {
        let data = self.copy().map_err(StorageIOError::read_state_machine)?;
        let nonce = (self.storage.next_id()).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let last = (self.applied).map_or_else(|| "none".into(), |l| l.to_string());
        let meta = SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!("{}-{last}-{nonce}", self.group),
        };
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    /// Copies what this group owns, now, as a snapshot's data.
    fn copy(&self) -> Result<Vec<u8>, AnyError> {
        let mut data = Vec::new();
        if self.group == META {
            for (id, member) in &self.members {
                let member = member.clone();
                push_framed(&mut data, &Piece::Member { id: *id, member })?;
            }
            return Ok(data);
        }
        for table in TableId::ALL {
            let rows = (self.storage)
                .rows_of(table, |key| self.belongs(table, key))
                .map_err(any)?;
            for (key, value) in rows {
                push_framed(&mut data, &Piece::Row { table, key, value })?;
            }
        }
        Ok(data)
    }

    /// Makes the snapshot `data` this group's state, and `meta` its applied state (not flushed).
    fn restore(&mut self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), StorageError> {
        let write = |e: AnyError| StorageIOError::write_snapshot(Some(meta.signature()), e);
        let pieces = split_pieces(data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), e))?;
        let mismatch = || write(AnyError::error("a snapshot of another kind of group"));
        if self.group == META {
            let mut members = Members::new();
            for piece in pieces {
                let Piece::Member { id, member } = piece else {
                    return Err(mismatch().into());
                };
                members.insert(id, member);
            }
            replace_members(&self.trees.members, &members).map_err(write)?;
            self.members = members;
        } else {
            let mut rows: BTreeMap<TableId, Rows> = BTreeMap::new();
            for piece in pieces {
                let Piece::Row { table, key, value } = piece else {
                    return Err(mismatch().into());
                };
                rows.entry(table).or_default().push((key, value));
            }
            for table in TableId::ALL {
                let rows = rows.remove(&table).unwrap_or_default();
                (self.storage)
                    .replace_rows(table, |key| self.belongs(table, key), rows)
                    .map_err(|e| write(any(e)))?;
            }
        }
        self.membership = meta.last_membership.clone();
        self.applied = meta.last_log_id;
        self.save_applied().map_err(write)?;
        Ok(())
    }

    /// Writes the membership, then `applied` (see the module header).
    fn save_applied(&self) -> Result<(), AnyError> {
        write_state(&self.trees.state, self.group, MEMBERSHIP, &self.membership)?;
        write_state(&self.trees.state, self.group, APPLIED, &self.applied)
    }

    /// The meta group: `member` belongs to the cluster as `id`.
    fn join(&mut self, id: NodeId, member: Member) -> Result<(), AnyError> {
        let bytes = codec::encode(&member).map_err(any)?;
        (self.trees.members)
            .insert(id.to_be_bytes(), bytes)
            .map_err(any)?;
        self.members.insert(id, member);
        Ok(())
    }
}

/// Whether the row under `key` of `table` belongs to partition `group` of `partitions`: outbox
/// and notification keys by the group their entry wrote them in, the other keys by
/// [`partition_of`] their text, as the routing layer places them.
pub fn belongs(group: GroupId, partitions: u32, table: TableId, key: &[u8]) -> bool {
    let of = |text: Option<String>| text.is_some_and(|t| partition_of(&t, partitions) == group);
    match table {
        TableId::Outbox | TableId::Notifications => {
            u64::decode(key).is_some_and(|key| event_group(key) == u64::from(group))
        }
        TableId::Products => of(ProductId::decode(key).map(|k| k.to_string())),
        TableId::Stock | TableId::PendingStock => of(Sku::decode(key).map(|k| k.to_string())),
        TableId::Orders | TableId::Unrestocked => {
            of(OrderNumber::decode(key).map(|k| k.to_string()))
        }
        TableId::SeenEvents => of(String::decode(key)),
        // The node's own: never part of a partition.
        TableId::Delivered => false,
    }
}

fn load_members(tree: &sled::Tree) -> Result<Members, StorageError> {
    let mut members = Members::new();
    for item in tree.iter() {
        let (key, bytes) = item.map_err(|e| StorageIOError::read_state_machine(&e))?;
        let id = u64::decode(&key).ok_or_else(|| {
            StorageIOError::read_state_machine(AnyError::error("a member key is not a node id"))
        })?;
        let member = codec::decode(&bytes).map_err(|e| StorageIOError::read_state_machine(&e))?;
        members.insert(id, member);
    }
    Ok(members)
}

/// Makes `members` the contents of the members tree.
fn replace_members(tree: &sled::Tree, members: &Members) -> Result<(), AnyError> {
    for (id, member) in members {
        let bytes = codec::encode(member).map_err(any)?;
        tree.insert(id.to_be_bytes(), bytes).map_err(any)?;
    }
    for key in tree.iter().keys() {
        let key = key.map_err(any)?;
        if !u64::decode(&key).is_some_and(|id| members.contains_key(&id)) {
            tree.remove(key).map_err(any)?;
        }
    }
    Ok(())
}

fn any<E: std::error::Error + 'static>(e: E) -> AnyError {
    AnyError::new(&e)
}

/// Builds a snapshot from the copy [`Machine::get_snapshot_builder`] took.
pub struct SnapshotBuilder {
    storage: Storage,
    state: sled::Tree,
    group: GroupId,
    /// The copy, with the applied state it reflects; taken by the first build.
    copy: Option<Result<Snapshot<Raft>, StorageError>>,
}

impl RaftSnapshotBuilder<Raft> for SnapshotBuilder {
    /// Stores the copy as the group's current snapshot (unless a newer one is stored) and
    /// returns once that is durable.
    async fn build_snapshot(&mut self) -> Result<Snapshot<Raft>, StorageError> {
        let snapshot = self.copy.take().ok_or_else(|| {
            StorageIOError::read_state_machine(AnyError::error("snapshot already built"))
        })??;
        let signature = Some(snapshot.meta.signature());
        let record = snapshot_record(&snapshot.meta, snapshot.snapshot.get_ref())
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), e))?;
        let last = snapshot.meta.last_log_id;
        let newer =
            |stored: &[u8]| split_record(stored).is_ok_and(|(old, _)| old.last_log_id > last);
        (self.state)
            .fetch_and_update(
                super::log::state_key(self.group, SNAPSHOT),
                |old| match old {
                    Some(old) if newer(old) => Some(old.to_vec()),
                    _ => Some(record.clone()),
                },
            )
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
        (self.storage.durable().await)
            .map_err(|e| StorageIOError::write_snapshot(signature, &e))?;
        Ok(snapshot)
    }
}

impl RaftStateMachine<Raft> for Machine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut replies = Vec::new();
        let mut joined = false;
        for entry in entries {
            let log_id = entry.log_id;
            let (mut fresh, mut fenced) = (false, false);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(log_id), membership);
                }
                EntryPayload::Normal(Proposal::WritesOfTerm { term, .. })
                    if term != log_id.leader_id.term =>
                {
                    fenced = true;
                }
                EntryPayload::Normal(
                    Proposal::Writes(batch, _) | Proposal::WritesOfTerm { batch, .. },
                ) => (self.storage)
                    .apply_committed(self.group, log_id.index, &batch)
                    .map_err(|e| StorageIOError::apply(log_id, &e))?,
                EntryPayload::Normal(Proposal::Record { event_id, record }) => {
                    fresh = (self.storage)
                        .record_once(self.group, log_id.index, &event_id, record)
                        .map_err(|e| StorageIOError::apply(log_id, &e))?;
                }
                EntryPayload::Normal(Proposal::Join { id, member }) if self.group == META => {
                    self.join(id, member)
                        .map_err(|e| StorageIOError::apply(log_id, e))?;
                    joined = true;
                }
                EntryPayload::Normal(Proposal::Join { id, .. }) => {
                    tracing::warn!(
                        group = self.group,
                        id,
                        "a join proposed to a partition: ignored"
                    );
                }
            }
            self.applied = Some(log_id);
            let index = log_id.index;
            replies.push(Applied {
                index,
                fresh,
                fenced,
            });
        }
        if !replies.is_empty() {
            self.save_applied()
                .map_err(StorageIOError::write_state_machine)?;
        }
        if joined {
            self.publish.send_replace(self.members.clone());
        }
        Ok(replies)
    }

    /// Copies the group's state now (sled has no point-in-time view, and applies go on while
    /// the builder runs).
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        let copy = self.copied();
        SnapshotBuilder {
            storage: self.storage.clone(),
            state: self.trees.state.clone(),
            group: self.group,
            copy: Some(copy),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Stores the snapshot as current, replaces the group's state by it, and returns once all
    /// of that is durable.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let signature = Some(meta.signature());
        let record = snapshot_record(meta, &data)
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), e))?;
        (self.trees.state)
            .insert(super::log::state_key(self.group, SNAPSHOT), record)
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), &e))?;
        self.restore(meta, &data)?;
        (self.storage.durable().await)
            .map_err(|e| StorageIOError::write_snapshot(signature, &e))?;
        if self.group == META {
            self.publish.send_replace(self.members.clone());
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Raft>>, StorageError> {
        Ok(self.stored_snapshot()?.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

mod frames;
#[cfg(test)]
mod tests;
