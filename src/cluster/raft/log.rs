//! The raft log store: every group's log and vote, in the node's one sled database.
//!
//! All the groups of a node (the meta group and each partition it replicates) share two trees
//! that storage lends for this ([`Storage::raft_trees`]): `raft_log`, keyed by the group (4 bytes
//! big-endian) then the index (8 bytes big-endian), so a group's entries are one prefix in index
//! order; and `raft_state`, keyed by the group then a name (`vote`, `committed`, `purged`, and the
//! state machine's names, see `super::machine`). Values are the codec's bytes.
//!
//! openraft calls it from each group's raft core ([`RaftLogStorage`]) and its replication tasks
//! (the [`RaftLogReader`] clones). What raft needs durable (a vote, appended entries) is made so by
//! [`Storage::durable`], the node's shared group commit: every group waits for the same
//! `fdatasync`, so many groups share one and none skips it.
//!
//! One exception, for a group whose only member is this node (replication factor 1): there no
//! other voter counts this node's append, so an entry of [`Flush::ByProposer`] completes at
//! once and its proposer waits for the node's flush before it answers anyone, as a node alone
//! does. Every other entry (a membership change first of all, which ends the exception before
//! any other node can receive an entry) waits for the flush; and since sled recovers a prefix
//! of its log, that flush covers every entry appended before. Removals are ordered so that sled's
//! recovery of a prefix of its own log always leaves a contiguous log: truncating removes from the
//! last entry down, purging records `purged` first and removes from the first entry up.

// openraft's traits return its `StorageError` (over 200 bytes); the helpers here return it too,
// so `?` carries their errors through.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftLogReader, StorageIOError};
use serde::{de::DeserializeOwned, Serialize};

use super::types::{Entry, Flush, GroupId, LogId, NodeId, Proposal, Raft, StorageError, Vote};
use crate::codec;
use crate::storage::Storage;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// One group's log and vote. Cheap to clone (its readers are clones).
#[derive(Clone)]
pub struct LogStore {
    storage: Storage,
    log: sled::Tree,
    state: sled::Tree,
    group: GroupId,
    me: NodeId,
    /// Whether the group's membership, as last appended here, is this node alone (see the
    /// module's header). False until known; shared with [`super::Groups`], which sets it from
    /// the membership the group started with.
    lone: Arc<AtomicBool>,
}

impl LogStore {
    /// The log of `group` in `storage`'s database, on node `me`.
    pub fn open(storage: &Storage, group: GroupId, me: NodeId) -> Result<LogStore, StorageError> {
        let trees = storage.raft_trees();
        Ok(LogStore {
            storage: storage.clone(),
            log: trees.log,
            state: trees.state,
            group,
            me,
            lone: Arc::default(),
        })
    }

    /// The flag that says the group is this node alone.
    pub fn lone(&self) -> Arc<AtomicBool> {
        self.lone.clone()
    }

    /// Whether `entries` may complete before the flush: the group is this node alone, and
    /// none of them changes the membership or asks to be durable on append. Updates the flag
    /// with the membership the entries carry.
    fn flush_later(&self, entries: &[Entry]) -> bool {
        let mut later = true;
        for entry in entries {
            // Only this node's own entries as leader: never a leader's, received.
            later &= entry.log_id.leader_id.node_id == self.me;
            match &entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(
                    Proposal::Writes(_, Flush::ByProposer)
                    | Proposal::WritesOfTerm {
                        flush: Flush::ByProposer,
                        ..
                    },
                ) => {}
                EntryPayload::Normal(_) => later = false,
                EntryPayload::Membership(membership) => {
                    let mut nodes = membership.nodes().map(|(id, _)| *id);
                    let alone = nodes.next() == Some(self.me) && nodes.next().is_none();
                    self.lone.store(alone, Ordering::Release);
                    later = false;
                }
            }
        }
        later && self.lone.load(Ordering::Acquire)
    }

    pub fn group(&self) -> GroupId {
        self.group
    }

    fn key(&self, index: u64) -> [u8; 12] {
        let mut key = [0; 12];
        key[..4].copy_from_slice(&self.group.to_be_bytes());
        key[4..].copy_from_slice(&index.to_be_bytes());
        key
    }

    /// The keys of this group's entries from `from` to `to`, in index order.
    fn keys(&self, from: u64, to: u64) -> Result<Vec<sled::IVec>, sled::Error> {
        self.log
            .range(self.key(from)..=self.key(to))
            .keys()
            .collect()
    }

    fn read<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, AnyError> {
        read_state(&self.state, self.group, name)
    }

    fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<(), AnyError> {
        write_state(&self.state, self.group, name, value)
    }

    /// Inserts `entries` (not yet durable).
    fn insert<I: IntoIterator<Item = Entry>>(&self, entries: I) -> Result<(), StorageError> {
        for entry in entries {
            let bytes = codec::encode(&entry).map_err(|e| StorageIOError::write_logs(&e))?;
            self.log
                .insert(self.key(entry.log_id.index), bytes)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(())
    }
}

/// The `raft_state` key of `name` in `group`.
pub(super) fn state_key(group: GroupId, name: &str) -> Vec<u8> {
    let mut key = group.to_be_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    key
}

/// Reads the state `name` of `group` (`None` if never written).
pub(super) fn read_state<T: DeserializeOwned>(
    state: &sled::Tree,
    group: GroupId,
    name: &str,
) -> Result<Option<T>, AnyError> {
    match state.get(state_key(group, name)) {
        Ok(Some(bytes)) => codec::decode(&bytes)
            .map(Some)
            .map_err(|e| AnyError::new(&e).add_context(|| format!("{name} of group {group}"))),
        Ok(None) => Ok(None),
        Err(e) => Err(AnyError::new(&e)),
    }
}

/// Writes the state `name` of `group` (not yet durable).
pub(super) fn write_state<T: Serialize>(
    state: &sled::Tree,
    group: GroupId,
    name: &str,
    value: &T,
) -> Result<(), AnyError> {
    let bytes = codec::encode(value).map_err(|e| AnyError::new(&e))?;
    state
        .insert(state_key(group, name), bytes)
        .map_err(|e| AnyError::new(&e))?;
    Ok(())
}

/// An error for openraft's completion callback.
fn io_error(e: &impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RaftLogReader<Raft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&index) => index,
            Bound::Excluded(&index) => match index.checked_add(1) {
                Some(next) => next,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for item in self.log.range(self.key(start)..=self.key(u64::MAX)) {
            let (key, bytes) = item.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = key
                .get(4..12)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StorageIOError::read_logs(AnyError::error("a short log key")))?;
            if !range.contains(&index) {
                break;
            }
            let entry: Entry =
                codec::decode(&bytes).map_err(|e| StorageIOError::read_log_at_index(index, &e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<Raft> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<Raft>, StorageError> {
        let purged: Option<LogId> = self.read(PURGED).map_err(StorageIOError::read_logs)?;
        let last = match self.log.scan_prefix(self.group.to_be_bytes()).next_back() {
            None => None,
            Some(item) => {
                let (_, bytes) = item.map_err(|e| StorageIOError::read_logs(&e))?;
                let entry: Entry =
                    codec::decode(&bytes).map_err(|e| StorageIOError::read_logs(&e))?;
                Some(entry.log_id)
            }
        };
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last.or(purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    /// Returns once the vote is durable.
    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.write(VOTE, vote).map_err(StorageIOError::write_vote)?;
        self.storage
            .durable()
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.read(VOTE).map_err(StorageIOError::read_vote)?)
    }

    /// Not flushed: a committed id lost in a crash is only re-learned from the leader.
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write(COMMITTED, &committed)
            .map_err(StorageIOError::write)?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed: Option<Option<LogId>> =
            self.read(COMMITTED).map_err(StorageIOError::read)?;
        Ok(committed.flatten())
    }

    /// Inserts the entries, waits for the shared flush (unless the module's exception holds),
    /// then completes `callback`: in order, before the next append starts.
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Raft>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let later = self.flush_later(&entries);
        if let Err(e) = self.insert(entries) {
            callback.log_io_completed(Err(io_error(&e)));
            return Err(e);
        }
        if later {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        match self.storage.durable().await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io_error(&e)));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    /// Removes the entries from `log_id.index` on, the last first. A membership may go with
    /// them, so the group counts as not alone until the next one is appended.
    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lone.store(false, Ordering::Release);
        let keys = self
            .keys(log_id.index, u64::MAX)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        for key in keys.into_iter().rev() {
            self.log
                .remove(key)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(())
    }

    /// Records `log_id` as purged, then removes the entries up to it, the first first.
    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write(PURGED, &log_id)
            .map_err(StorageIOError::write_logs)?;
        let keys = self
            .keys(0, log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        for key in keys {
            self.log
                .remove(key)
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
