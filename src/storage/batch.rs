//! Batches: writes to the shared tables that belong together, staged by the entity actors
//! ([`super::Table::stage`], [`Batch::event`]) and applied as one: at once by
//! [`super::Storage::apply`] on a node alone, or as one raft log entry on every replica of a
//! partition ([`super::Storage::apply_committed`], called by the partition's state machine).
//!
//! A batch holds encoded bytes only (keys by [`super::TableKey`], records by the codec), so it
//! crosses the wire and sits in the raft log as it is, and every replica writes the same bytes.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{Storage, StorageError};
use crate::domain::OrderEvent;

/// The most outbox events one batch may hold: a committed entry numbers its events in 4 bits
/// of their keys (see [`super::Storage::apply_committed`]).
pub const MAX_EVENTS: usize = 16;

/// A committed event's key is `group << GROUP_SHIFT | index << 4 | n`.
const GROUP_SHIFT: u32 = 44;

/// The raft group whose committed entry wrote the outbox (or notification) key `key`: the
/// high 20 bits, see [`Storage::apply_committed`].
pub fn event_group(key: u64) -> u64 {
    key >> GROUP_SHIFT
}

/// The lowest key an event (or a notification) of `group` can have.
pub fn first_key(group: u32) -> u64 {
    u64::from(group) << GROUP_SHIFT
}

/// The key of the `n`th event (or notification) of entry `index` of `group`.
fn committed_key(group: u32, index: u64, n: u64) -> Result<u64, StorageError> {
    let group = u64::from(group);
    if group >= 1 << (64 - GROUP_SHIFT) || index >= 1 << (GROUP_SHIFT - 4) {
        return Err(StorageError::Batch(format!(
            "entry {index} of group {group} has no outbox keys"
        )));
    }
    Ok(group << GROUP_SHIFT | index << 4 | n)
}

/// Rows as stored, `(key, value)`: a snapshot's copy of a table's rows.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// The shared tables a batch writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TableId {
    Products,
    Stock,
    Orders,
    Outbox,
    Notifications,
    SeenEvents,
    PendingStock,
    Unrestocked,
    Delivered,
}

impl TableId {
    /// Every table a partition's state is made of, in a fixed order ([`TableId::Delivered`]
    /// is the node's own).
    pub const ALL: [TableId; 8] = [
        TableId::Products,
        TableId::Stock,
        TableId::Orders,
        TableId::Outbox,
        TableId::Notifications,
        TableId::SeenEvents,
        TableId::PendingStock,
        TableId::Unrestocked,
    ];
}

/// One write of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) enum Write {
    /// `value` under `key` in `table`; `None` removes the key.
    Row {
        table: TableId,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    },
    /// An outbox event (codec bytes); its key is assigned when the batch is applied.
    Event(Vec<u8>),
}

/// Writes to the shared tables, applied together: here at once (a node alone), or as one raft
/// entry on every replica of a partition.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Batch {
    writes: Vec<Write>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// An outbox event; its key is assigned when the batch is applied. At most [`MAX_EVENTS`]
    /// per batch.
    pub fn event(&mut self, event: &OrderEvent) -> Result<(), StorageError> {
        if self.events().count() >= MAX_EVENTS {
            return Err(StorageError::Batch(format!(
                "a batch holds at most {MAX_EVENTS} outbox events"
            )));
        }
        self.writes.push(Write::Event(super::encode(event)?));
        Ok(())
    }

    /// Stages a row write (`None` removes the key).
    pub(super) fn row(&mut self, table: TableId, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.writes.push(Write::Row { table, key, value });
    }

    /// Whether it writes an outbox event.
    pub fn has_events(&self) -> bool {
        self.events().next().is_some()
    }

    /// The encoded outbox events, in the order they were staged.
    pub(super) fn events(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.writes.iter().filter_map(|write| match write {
            Write::Event(bytes) => Some(bytes.as_slice()),
            Write::Row { .. } => None,
        })
    }

    /// The row writes, in the order they were staged: `(table, key, value or removal)`.
    pub(super) fn rows(&self) -> impl Iterator<Item = (TableId, &[u8], Option<&[u8]>)> + '_ {
        self.writes.iter().filter_map(|write| match write {
            Write::Row { table, key, value } => Some((*table, key.as_slice(), value.as_deref())),
            Write::Event(_) => None,
        })
    }
}

impl Storage {
    /// Applies `batch` on this node alone (no raft): plain writes in order, not flushed
    /// (callers then call [`Storage::durable`]). Its events get [`Storage::next_id`] keys under
    /// the outbox mark, as [`Storage::put_event`] does: written before the batch's other writes,
    /// the mark updated after all, so [`Storage::is_durable_event`] keeps its meaning.
    pub fn apply(&self, batch: Batch) -> Result<(), StorageError> {
        let mut events = batch.events().peekable();
        if events.peek().is_none() {
            return self.write_rows(&batch);
        }
        let mut written = self
            .outbox_mark
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut last = *written;
        for bytes in events {
            last = self.next_id()?;
            self.outbox.sled_tree().insert(last.to_be_bytes(), bytes)?;
        }
        self.write_rows(&batch)?;
        *written = last;
        Ok(())
    }

    /// Applies the committed raft entry at `index` of partition `group`. Its events are keyed
    /// `group << 44 | index << 4 | n` (`n` the event's number in the batch), which every replica
    /// computes alike, so replaying an entry rewrites the same keys. Not flushed: the raft log
    /// is durable, and replays are idempotent (every write is a put or a removal).
    pub fn apply_committed(
        &self,
        group: u32,
        index: u64,
        batch: &Batch,
    ) -> Result<(), StorageError> {
        for (n, bytes) in batch.events().enumerate() {
            if n >= MAX_EVENTS {
                return Err(StorageError::Batch(format!(
                    "entry {index} of group {group} holds more than {MAX_EVENTS} events"
                )));
            }
            let key = committed_key(group, index, n as u64)?;
            self.outbox.sled_tree().insert(key.to_be_bytes(), bytes)?;
        }
        self.write_rows(batch)
    }

    /// Applies a committed notification record of partition `group` (entry `index`): stored
    /// under `group << 44 | index << 4` unless `event_id` was recorded before. The record goes
    /// first, then the id naming it, so a replay after a crash between the two writes both
    /// again. Whether it was new.
    pub fn record_once(
        &self,
        group: u32,
        index: u64,
        event_id: &str,
        record: Vec<u8>,
    ) -> Result<bool, StorageError> {
        let key = committed_key(group, index, 0)?;
        if let Some(seen) = self.seen_events.get(&event_id.to_owned())? {
            return Ok(seen == key);
        }
        self.notifications.insert(key.to_be_bytes(), record)?;
        self.seen_events.put(&event_id.to_owned(), &key)?;
        Ok(true)
    }

    /// Every row of `table` whose key `keep` accepts, as stored (a snapshot's copy). Reads a
    /// moving tree: rows written meanwhile may or may not be in it.
    pub fn rows_of(
        &self,
        table: TableId,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<Rows, StorageError> {
        let mut rows = Vec::new();
        for item in self.tree(table).iter() {
            let (key, value) = item?;
            if keep(&key) {
                rows.push((key.to_vec(), value.to_vec()));
            }
        }
        Ok(rows)
    }

    /// Makes `rows` the rows of `table` whose key `belongs` accepts (installing a snapshot):
    /// writes them, then removes the other rows that belong. Not flushed.
    pub fn replace_rows(
        &self,
        table: TableId,
        belongs: impl Fn(&[u8]) -> bool,
        rows: Rows,
    ) -> Result<(), StorageError> {
        let tree = self.tree(table);
        let mut kept = HashSet::with_capacity(rows.len());
        for (key, value) in rows {
            tree.insert(key.as_slice(), value)?;
            kept.insert(key);
        }
        for item in tree.iter().keys() {
            let key = item?;
            if belongs(&key) && !kept.contains(key.as_ref()) {
                tree.remove(key)?;
            }
        }
        Ok(())
    }

    /// The batch's row writes, in order.
    fn write_rows(&self, batch: &Batch) -> Result<(), StorageError> {
        for (table, key, value) in batch.rows() {
            let tree = self.tree(table);
            match value {
                Some(value) => tree.insert(key, value)?,
                None => tree.remove(key)?,
            };
        }
        Ok(())
    }

    fn tree(&self, table: TableId) -> &sled::Tree {
        match table {
            TableId::Products => self.products.sled_tree(),
            TableId::Stock => self.stock.sled_tree(),
            TableId::Orders => self.orders.sled_tree(),
            TableId::Outbox => self.outbox.sled_tree(),
            TableId::Notifications => &self.notifications,
            TableId::SeenEvents => self.seen_events.sled_tree(),
            TableId::PendingStock => self.pending_stock.sled_tree(),
            TableId::Unrestocked => self.unrestocked.sled_tree(),
            TableId::Delivered => self.delivered.sled_tree(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventType, Order, OrderNumber, Sku};

    fn order() -> Order {
        crate::test_support::empty_order(OrderNumber::new())
    }

    fn event(order: &Order) -> OrderEvent {
        OrderEvent::for_order(order, EventType::OrderPlaced, 0)
    }

    #[tokio::test]
    async fn a_batch_applies_in_order_and_its_event_is_durable_after_a_flush() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let (order, seen) = (order(), String::from("e-1"));
        let mut batch = Batch::default();
        assert!(batch.is_empty());
        batch.event(&event(&order)).unwrap();
        storage
            .orders
            .stage(&mut batch, &order.number, &order)
            .unwrap();
        storage.seen_events.stage(&mut batch, &seen, &1).unwrap();
        storage.seen_events.stage_remove(&mut batch, &seen);
        assert!(!batch.is_empty());
        storage.apply(batch).unwrap();

        assert_eq!(
            storage.orders.get(&order.number).unwrap(),
            Some(order.clone())
        );
        assert!(!storage.seen_events.contains_key(&seen).unwrap());
        let events = storage.outbox.scan(None, 10).unwrap();
        assert_eq!(events.len(), 1);
        let (key, stored) = &events[0];
        assert_eq!(stored, &event(&order));
        assert!(!storage.is_durable_event(*key));
        storage.durable().await.unwrap();
        assert!(storage.is_durable_event(*key));
        // A batch without events writes without the outbox mark.
        let mut batch = Batch::default();
        storage.seen_events.stage(&mut batch, &seen, &2).unwrap();
        storage.apply(batch).unwrap();
        assert_eq!(storage.seen_events.get(&seen).unwrap(), Some(2));
    }

    #[tokio::test]
    async fn a_committed_batch_keys_its_events_by_group_and_index_and_replays_alike() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        let (first, second) = (order(), order());
        let mut batch = Batch::default();
        batch.event(&event(&first)).unwrap();
        batch.event(&event(&second)).unwrap();
        let sku = Sku::parse("case").unwrap();
        storage.stock.stage_remove(&mut batch, &sku);
        storage.apply_committed(3, 5, &batch).unwrap();
        storage.apply_committed(3, 5, &batch).unwrap();

        let keys: Vec<u64> = storage
            .outbox
            .scan(None, 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, [3 << 44 | 5 << 4, 3 << 44 | 5 << 4 | 1]);
        assert!(keys.iter().all(|key| event_group(*key) == 3));
        assert!(storage.apply_committed(1 << 20, 5, &batch).is_err());
        assert!(storage.apply_committed(3, 1 << 40, &batch).is_err());
    }

    #[test]
    fn a_batch_refuses_more_events_than_its_keys_can_number() {
        let order = order();
        let mut batch = Batch::default();
        for _ in 0..MAX_EVENTS {
            batch.event(&event(&order)).unwrap();
        }
        assert!(matches!(
            batch.event(&event(&order)),
            Err(StorageError::Batch(_))
        ));
    }

    #[test]
    fn a_batch_round_trips_through_the_codec() {
        let order = order();
        let mut batch = Batch::default();
        batch.event(&event(&order)).unwrap();
        batch.row(TableId::Orders, vec![1, 2], Some(vec![3]));
        batch.row(TableId::Stock, vec![4], None);
        let back: Batch = crate::codec::decode(&crate::codec::encode(&batch).unwrap()).unwrap();
        assert_eq!(back.events().count(), 1);
        let rows: Vec<_> = back.rows().collect();
        assert_eq!(
            rows,
            [
                (TableId::Orders, &[1u8, 2][..], Some(&[3u8][..])),
                (TableId::Stock, &[4u8][..], None)
            ]
        );
    }
}
