//! Storage: the node's one sled database, its typed tables ([`Table`]), batches of writes
//! ([`Batch`]), and group commit.
//!
//! Entity actors read and write their own records here; nothing else writes them but crash
//! recovery and, on a replicated partition, its raft state machine applying committed batches
//! (each table's field says who writes and who reads it). Tables are the only way in: the sled
//! trees are private, keys are encoded by [`TableKey`], records by the codec. The one exception
//! is [`Storage::raft_trees`], the raw trees of the raft log store and state machines
//! (the cluster's raft groups), which keep their own encodings. A write is
//! acknowledged to a client only after [`Storage::durable`] returns: that call joins the next
//! shared flush, so many writers pay for one `fsync` (group commit) and none skips it.
//!
//! No sled transaction or sled batch is used, on purpose (a [`Batch`] is written one write
//! after another). Either takes sled's process-wide write lock, which waits for the flush in
//! progress (a flush holds the read side while it writes and syncs) while every other operation
//! queues behind it; the first one switches that lock on for the life of the process. With it,
//! the storage work of an order reached 6.8k orders/s on the benchmark machine, without it 36k
//! (`cargo bench --bench storage -- order_storage`). Writes that belong together are ordered
//! instead: sled recovers a prefix of its log, so a later write that survives a crash implies
//! every earlier one did, and recovery repairs the rest.
//!
//! sled's own flush writes its log with `sync_file_range`, which neither persists file
//! metadata nor flushes the drive's cache; every flush here adds an `fdatasync` of the log file
//! so an acknowledged write survives power loss, not only a process crash.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::codec::{self, CodecError};
use crate::domain::{Order, OrderEvent, OrderNumber, Product, ProductId, Sku, StockLevel};

mod batch;
mod indexes;
mod table;

pub use batch::{event_group, first_key, Batch, Rows, TableId, MAX_EVENTS};
pub use table::{Stored, Table, TableKey};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    #[error("corrupt record in {tree} at key {key}: {source}")]
    Corrupt {
        tree: String,
        key: String,
        source: CodecError,
    },
    #[error("key {key} in {tree} is not a key of that tree")]
    Key { tree: String, key: String },
    #[error("record does not encode: {0}")]
    Encode(CodecError),
    #[error("flush failed: {0}")]
    Flush(String),
    #[error("batch cannot be applied: {0}")]
    Batch(String),
}

type FlushWaiter = oneshot::Sender<Result<(), String>>;

/// Flush statistics, for `/metrics`: `waiters / flushes` is the group-commit batch size.
#[derive(Debug, Default)]
pub struct FlushStats {
    pub flushes: AtomicU64,
    pub waiters: AtomicU64,
}

/// Which outbox events are on disk. The notifier sends only those, so Kafka never announces an
/// order that a crash then loses.
#[derive(Debug)]
struct OutboxMark {
    /// The highest outbox key written. Held while an event gets its key and is written with
    /// the record it announces, and while a flush reads it, so every key a flush covers was
    /// written, with its record, before that flush began.
    written: Mutex<u64>,
    /// Every outbox key up to this one is durable.
    durable: AtomicU64,
}

/// The raw sled trees of the raft groups ([`Storage::raft_trees`]). Cheap to clone.
#[derive(Clone)]
pub struct RaftTrees {
    /// Every group's log: group (4 bytes BE) ++ index (8 bytes BE) → encoded entry.
    pub log: sled::Tree,
    /// Every group's raft state: group (4 bytes BE) ++ a name (`vote`, `applied`, ...).
    pub state: sled::Tree,
    /// The cluster's members, the meta group's state: node id (8 bytes BE) → encoded member.
    pub members: sled::Tree,
}

/// A handle to the node's database. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    db: sled::Db,
    /// Written by the product actors only; read by them.
    pub products: Table<ProductId, Product>,
    /// Written by the stock actors and by crash recovery; read also by the product list (its
    /// quantities) and by the cluster settler.
    pub stock: Table<Sku, StockLevel>,
    /// Written by the order actors and by crash recovery (finished cancels); read also by
    /// recovery's republishing.
    pub orders: Table<OrderNumber, Order>,
    /// Events waiting for Kafka, keyed by a sequence that grows with each event (on a node
    /// alone) or by group and log index ([`Storage::apply_committed`]). Written only through
    /// [`Storage::put_event`] and the batches' [`Batch::event`] (order actors, recovery);
    /// emptied by the notifier as Kafka acknowledges, and by recovery for events whose order
    /// was lost.
    pub outbox: Table<u64, OrderEvent>,
    /// Notifications received from Kafka, keyed by a sequence: typed by the notification
    /// service, which owns its record type ([`Storage::notifications`]).
    notifications: sled::Tree,
    /// eventId → notification sequence: each event is recorded once. Written by the
    /// notification service; read also by recovery's republishing.
    pub seen_events: Table<String, u64>,
    /// The SKUs whose stock holds pending changes, or more: an entry is written before the
    /// stock gains its first pending change and removed after it loses its last. Written with
    /// the stock (stock actors, recovery); read by recovery and the settler, which so visit
    /// only the stock that is unsettled, not every SKU.
    pub pending_stock: Table<Sku, ()>,
    /// Cancels recorded but not restocked yet, or more (written before the cancel, removed
    /// after the restock). Written with the orders; read by recovery.
    pub unrestocked: Table<OrderNumber, ()>,
    /// With the embedded broker: the events it acknowledged that the notification service
    /// has not recorded yet, by event id. That broker's log dies with the process, so a
    /// restart sends these again. Written by the notifier, emptied by the notification service
    /// as it records; never replicated.
    pub delivered: Table<String, OrderEvent>,
    /// The raft groups' own trees ([`Storage::raft_trees`]).
    raft: RaftTrees,
    flush_tx: mpsc::UnboundedSender<FlushWaiter>,
    /// sled's log file, opened only to `fdatasync` it after sled's flush.
    log: Arc<std::fs::File>,
    outbox_mark: Arc<OutboxMark>,
    pub stats: Arc<FlushStats>,
}

/// sled's page cache unless `--cache-mb` says otherwise: sled's own default, 1 GiB.
pub const DEFAULT_CACHE_MB: u64 = 1024;

impl Storage {
    /// Opens (or creates) the database in `dir` with a cache of [`DEFAULT_CACHE_MB`] and starts
    /// its group-commit flusher. Must be called inside a tokio runtime.
    pub fn open(dir: &Path) -> anyhow::Result<Storage> {
        Storage::open_with_cache(dir, DEFAULT_CACHE_MB << 20)
    }

    /// [`Storage::open`] with a page cache of `cache_bytes` (`--cache-mb`).
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> anyhow::Result<Storage> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        let db = sled::Config::new()
            .path(dir.join("db"))
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(1000))
            .open()
            .with_context(|| format!("cannot open the database in {}", dir.display()))?;
        let log_path = dir.join("db").join("db");
        let log = std::fs::File::open(&log_path)
            .with_context(|| format!("cannot open sled's log {}", log_path.display()))?;
        let log = Arc::new(log);
        let tree = |name: &str| {
            db.open_tree(name)
                .with_context(|| format!("cannot open tree {name}"))
        };
        let (flush_tx, flush_rx) = mpsc::unbounded_channel();
        let stats = Arc::new(FlushStats::default());
        // Every record already on disk is durable; new keys are generated above this one.
        let recovered = db.generate_id().context("cannot generate an id")?;
        let outbox_mark = Arc::new(OutboxMark {
            written: Mutex::new(recovered),
            durable: AtomicU64::new(recovered),
        });
        let storage = Storage {
            products: Table::new(tree("products")?, TableId::Products),
            stock: Table::new(tree("stock")?, TableId::Stock),
            orders: Table::new(tree("orders")?, TableId::Orders),
            outbox: Table::new(tree("outbox")?, TableId::Outbox),
            notifications: tree("notifications")?,
            seen_events: Table::new(tree("seen_events")?, TableId::SeenEvents),
            pending_stock: Table::new(tree("pending_stock")?, TableId::PendingStock),
            unrestocked: Table::new(tree("unrestocked")?, TableId::Unrestocked),
            delivered: Table::new(tree("delivered")?, TableId::Delivered),
            raft: RaftTrees {
                log: tree("raft_log")?,
                state: tree("raft_state")?,
                members: tree("cluster_members")?,
            },
            db: db.clone(),
            flush_tx,
            log: log.clone(),
            outbox_mark: outbox_mark.clone(),
            stats: stats.clone(),
        };
        tokio::spawn(run_flusher(db, log, outbox_mark, flush_rx, stats));
        Ok(storage)
    }

    /// Returns once everything written before this call is on disk. Concurrent callers share
    /// one flush.
    pub async fn durable(&self) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.flush_tx
            .send(tx)
            .map_err(|_| StorageError::Flush("the flusher has stopped".into()))?;
        rx.await
            .map_err(|_| StorageError::Flush("the flusher has stopped".into()))?
            .map_err(StorageError::Flush)
    }

    /// Flushes synchronously (shutdown, and the flush-per-write baseline in benches).
    pub fn flush_now(&self) -> Result<(), StorageError> {
        flush(&self.db, &self.log, &self.outbox_mark).map_err(StorageError::Flush)
    }

    /// Writes `event` to the outbox under a new, higher key, then runs `then` (the write the
    /// event announces), and returns the key; nothing is durable yet. Both happen under the
    /// outbox mark, so a flush that covers the key also covers what `then` wrote: the notifier
    /// never sends an event whose record a crash could still lose.
    pub fn put_event(
        &self,
        event: &OrderEvent,
        then: impl FnOnce() -> Result<(), StorageError>,
    ) -> Result<u64, StorageError> {
        let bytes = encode(event)?;
        let mut written = self
            .outbox_mark
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let id = self.next_id()?;
        self.outbox.put_encoded(&id, bytes)?;
        then()?;
        *written = id;
        Ok(id)
    }

    /// Whether the outbox event under `key` is on disk (see [`Storage::put_event`]).
    pub fn is_durable_event(&self, key: u64) -> bool {
        key <= self.outbox_mark.durable.load(Ordering::Acquire)
    }

    /// The notifications table, with the record type of the service that owns it (the type
    /// lives with that service, above storage).
    pub fn notifications<V: codec::Record>(&self) -> Table<u64, V> {
        Table::new(self.notifications.clone(), TableId::Notifications)
    }

    /// The raw trees of the raft groups, for the log store and the state machines of
    /// the cluster's raft groups only: they encode their own keys (group, then index or name) and
    /// values (the codec), outside the tables. Nothing else may touch them.
    pub fn raft_trees(&self) -> RaftTrees {
        self.raft.clone()
    }

    /// A unique, increasing id (survives restarts), for outbox and notification keys.
    pub fn next_id(&self) -> Result<u64, StorageError> {
        Ok(self.db.generate_id()?)
    }

    /// A number this data directory keeps about its node (`name`): its incarnation, the
    /// cluster it belongs to, whether its indexes are built. `None` until [`Storage::remember`] stored one.
    pub fn recall(&self, name: &str) -> Result<Option<u64>, StorageError> {
        let key = format!("node/{name}");
        Ok((self.db.get(key.as_bytes())?)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    /// Stores `value` as the node's `name` (see [`Storage::recall`]), durably.
    pub fn remember(&self, name: &str, value: u64) -> Result<(), StorageError> {
        let key = format!("node/{name}");
        self.db.insert(key.as_bytes(), &value.to_be_bytes())?;
        self.flush_now()
    }

    /// Keeps the cluster layout this data was written under, and refuses another: keys would
    /// move to other owners, and their data would be missing there.
    pub fn pin_layout(&self, fingerprint: &str) -> anyhow::Result<()> {
        const KEY: &[u8] = b"cluster_layout";
        match self.db.get(KEY)? {
            Some(pinned) if pinned != fingerprint.as_bytes() => anyhow::bail!(
                "this data directory belongs to the cluster layout {:?}, not {fingerprint:?}: \
                 members and partitions are fixed for a cluster's life",
                String::from_utf8_lossy(&pinned)
            ),
            Some(_) => Ok(()),
            None => {
                self.db.insert(KEY, fingerprint.as_bytes())?;
                self.flush_now()?;
                Ok(())
            }
        }
    }

    /// Stages `level` with its entry in [`Storage::pending_stock`]: written before a stock
    /// that has pending changes, removed after one that has none (sled skips a write that
    /// changes nothing, so a stock that stays settled costs no index write).
    pub fn stage_stock(&self, batch: &mut Batch, level: &StockLevel) -> Result<(), StorageError> {
        if level.pending.is_empty() {
            self.stock.stage(batch, &level.sku, level)?;
            self.pending_stock.stage_remove(batch, &level.sku);
        } else {
            self.pending_stock.stage(batch, &level.sku, &())?;
            self.stock.stage(batch, &level.sku, level)?;
        }
        Ok(())
    }

    /// Writes `level` and its index entry at once (recovery), not yet durable.
    pub fn put_stock(&self, level: &StockLevel) -> Result<(), StorageError> {
        let mut batch = Batch::default();
        self.stage_stock(&mut batch, level)?;
        self.apply(batch)
    }

    /// Removes the event under outbox `key`, which Kafka acknowledged. With `keep` (that
    /// broker's log dies with this process) it is first kept in [`Storage::delivered`] until
    /// the notification service records it. Not yet durable.
    pub fn event_delivered(&self, key: u64, keep: bool) -> Result<(), StorageError> {
        if let Some(event) = self.outbox.get(&key)?.filter(|_| keep) {
            self.delivered.put(&event.event_id.to_string(), &event)?;
        }
        self.outbox.remove(&key)
    }

    /// Builds the indexes of unsettled records if this data directory lacks them (it was
    /// written by a build before them); whether it did. See `indexes`.
    pub fn index_unsettled(&self) -> Result<bool, StorageError> {
        indexes::build_if_missing(self)
    }

    /// Checks that the database answers a read.
    pub fn check(&self) -> Result<(), StorageError> {
        self.db.get(b"__health")?;
        Ok(())
    }
}

/// sled's flush, then an `fdatasync` of its log (see the module header); then the outbox events
/// written before it began are durable.
fn flush(db: &sled::Db, log: &std::fs::File, outbox_mark: &OutboxMark) -> Result<(), String> {
    let written = *outbox_mark
        .written
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    db.flush().map_err(|e| e.to_string())?;
    log.sync_data()
        .map_err(|e| format!("fdatasync of sled's log: {e}"))?;
    outbox_mark.durable.fetch_max(written, Ordering::Release);
    Ok(())
}

async fn run_flusher(
    db: sled::Db,
    log: Arc<std::fs::File>,
    outbox_mark: Arc<OutboxMark>,
    mut rx: mpsc::UnboundedReceiver<FlushWaiter>,
    stats: Arc<FlushStats>,
) {
    while let Some(first) = rx.recv().await {
        let mut waiters = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiters.push(more);
        }
        let (db, log, mark) = (db.clone(), log.clone(), outbox_mark.clone());
        let result = tokio::task::spawn_blocking(move || flush(&db, &log, &mark))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        stats.flushes.fetch_add(1, Ordering::Relaxed);
        stats
            .waiters
            .fetch_add(waiters.len() as u64, Ordering::Relaxed);
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Encodes a record for storage.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    codec::encode(value).map_err(StorageError::Encode)
}

#[cfg(test)]
mod tests;
