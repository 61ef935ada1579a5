//! openraft's storage test suite, run on a [`LogStore`] and a [`Machine`] over a fresh database.

use tempfile::TempDir;

use super::LogStore;
use crate::cluster::raft::machine::Machine;
use crate::cluster::raft::types::{GroupId, Raft, StorageError, META};
use crate::storage::Storage;

/// Opens a fresh database in a temporary directory for each test of the suite.
struct Builder {
    group: GroupId,
}

impl openraft::testing::StoreBuilder<Raft, LogStore, Machine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, Machine), StorageError> {
        let io = |e: &dyn std::fmt::Display| {
            openraft::StorageIOError::write(openraft::AnyError::error(e))
        };
        let dir = tempfile::tempdir().map_err(|e| io(&e))?;
        let storage = Storage::open(dir.path()).map_err(|e| io(&e))?;
        let log = LogStore::open(&storage, self.group, u64::MAX)?;
        let (members, _) = tokio::sync::watch::channel(Default::default());
        let machine = Machine::open(storage, self.group, 4, members)?;
        Ok((dir, log, machine))
    }
}

#[test]
fn a_partition_group_passes_the_openraft_storage_suite() {
    openraft::testing::Suite::test_all(Builder { group: 2 }).unwrap();
}

#[test]
fn the_meta_group_passes_the_openraft_storage_suite() {
    openraft::testing::Suite::test_all(Builder { group: META }).unwrap();
}

/// The suite runs one group on a fresh database; here two groups share one, across a reopen.
#[tokio::test]
async fn groups_keep_their_own_logs_and_votes_across_a_reopen() {
    use openraft::storage::RaftLogStorage;
    use openraft::testing::{blank_ent, log_id};
    use openraft::{RaftLogReader, Vote};

    let dir = tempfile::tempdir().unwrap();
    {
        let storage = Storage::open(dir.path()).unwrap();
        let (mut a, mut b) = (
            LogStore::open(&storage, 0, u64::MAX).unwrap(),
            LogStore::open(&storage, 1, u64::MAX).unwrap(),
        );
        a.insert((1..=5).map(|i| blank_ent::<Raft>(1, 1, i)))
            .unwrap();
        b.insert((1..=3).map(|i| blank_ent::<Raft>(2, 2, i)))
            .unwrap();
        a.save_vote(&Vote::new(1, 1)).await.unwrap();
        b.save_vote(&Vote::new(2, 2)).await.unwrap();
        a.purge(log_id(1, 1, 2)).await.unwrap();
        b.truncate(log_id(2, 2, 3)).await.unwrap();
        b.save_committed(Some(log_id(2, 2, 2))).await.unwrap();
        storage.durable().await.unwrap();
    }
    let storage = loop {
        match Storage::open(dir.path()) {
            Ok(storage) => break storage,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    let (mut a, mut b) = (
        LogStore::open(&storage, 0, u64::MAX).unwrap(),
        LogStore::open(&storage, 1, u64::MAX).unwrap(),
    );
    let state = a.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(1, 1, 5)));
    let indexes = |entries: Vec<crate::cluster::raft::types::Entry>| {
        entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>()
    };
    assert_eq!(indexes(a.try_get_log_entries(..).await.unwrap()), [3, 4, 5]);
    assert_eq!(indexes(a.try_get_log_entries(4..=9).await.unwrap()), [4, 5]);
    assert_eq!(indexes(b.try_get_log_entries(0..10).await.unwrap()), [1, 2]);
    assert_eq!(
        b.get_log_state().await.unwrap().last_log_id,
        Some(log_id(2, 2, 2))
    );
    assert_eq!(a.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
    assert_eq!(b.read_vote().await.unwrap(), Some(Vote::new(2, 2)));
    assert_eq!(a.read_committed().await.unwrap(), None);
    assert_eq!(b.read_committed().await.unwrap(), Some(log_id(2, 2, 2)));
}
