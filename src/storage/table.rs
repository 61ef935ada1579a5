//! Typed tables: one sled tree with its key type and its record type, so every key is encoded
//! in one place ([`TableKey`]) and every record through the codec.
//!
//! [`super::Storage`] opens the tables; callers reach sled only through them, writing at once
//! ([`Table::put`]) or staging writes into a [`Batch`] ([`Table::stage`]). The key encodings
//! are the ones agora has always written (existing data directories read back unchanged).

use std::marker::PhantomData;
use std::ops::Bound;

use super::{Batch, StorageError, TableId};
use crate::codec::{self, Record};
use crate::domain::{OrderNumber, ProductId, Sku};

/// A key type and its bytes in sled. Keys sort as their bytes do.
pub trait TableKey: Sized {
    fn encode(&self) -> impl AsRef<[u8]> + '_;
    /// `None` when the bytes are not a key of this type.
    fn decode(bytes: &[u8]) -> Option<Self>;
}

/// The id's 16 UUID bytes.
impl TableKey for ProductId {
    fn encode(&self) -> impl AsRef<[u8]> + '_ {
        self.as_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(ProductId::from_bytes(bytes.try_into().ok()?))
    }
}

/// The number's 16 UUID bytes.
impl TableKey for OrderNumber {
    fn encode(&self) -> impl AsRef<[u8]> + '_ {
        self.as_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(OrderNumber::from_bytes(bytes.try_into().ok()?))
    }
}

/// The code's UTF-8 bytes.
impl TableKey for Sku {
    fn encode(&self) -> impl AsRef<[u8]> + '_ {
        self.as_str()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Sku::parse(std::str::from_utf8(bytes).ok()?).ok()
    }
}

/// UTF-8 bytes (event ids).
impl TableKey for String {
    fn encode(&self) -> impl AsRef<[u8]> + '_ {
        self.as_str()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

/// Big-endian, so keys sort by number (outbox and notification sequences).
impl TableKey for u64 {
    fn encode(&self) -> impl AsRef<[u8]> + '_ {
        self.to_be_bytes()
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(u64::from_be_bytes(bytes.try_into().ok()?))
    }
}

/// One sled tree of `V` records under `K` keys. Cheap to clone. Writes are not durable until
/// [`super::Storage::durable`].
pub struct Table<K, V> {
    tree: sled::Tree,
    /// Which table this is, for the writes it stages.
    id: TableId,
    /// The table holds no `K` or `V`: it is `Send` and `Sync` whatever they are.
    types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        Table {
            tree: self.tree.clone(),
            id: self.id,
            types: PhantomData,
        }
    }
}

impl<K: TableKey, V: Record> Table<K, V> {
    pub(super) fn new(tree: sled::Tree, id: TableId) -> Table<K, V> {
        Table {
            tree,
            id,
            types: PhantomData,
        }
    }

    pub fn id(&self) -> TableId {
        self.id
    }

    /// Reads one record.
    pub fn get(&self, key: &K) -> Result<Option<V>, StorageError> {
        let key = key.encode();
        self.tree
            .get(key.as_ref())?
            .map(|bytes| self.decode(key.as_ref(), &bytes))
            .transpose()
    }

    pub fn contains_key(&self, key: &K) -> Result<bool, StorageError> {
        Ok(self.tree.contains_key(key.encode())?)
    }

    /// Writes one record.
    pub fn put(&self, key: &K, value: &V) -> Result<(), StorageError> {
        self.put_encoded(key, super::encode(value)?)
    }

    /// Writes a record already encoded with the codec.
    pub(super) fn put_encoded(&self, key: &K, bytes: Vec<u8>) -> Result<(), StorageError> {
        self.tree.insert(key.encode(), bytes)?;
        Ok(())
    }

    pub fn remove(&self, key: &K) -> Result<(), StorageError> {
        self.tree.remove(key.encode())?;
        Ok(())
    }

    /// Stages writing `value` under `key` in `batch` (encoded now; written when the batch is
    /// applied).
    pub fn stage(&self, batch: &mut Batch, key: &K, value: &V) -> Result<(), StorageError> {
        let bytes = super::encode(value)?;
        batch.row(self.id, key.encode().as_ref().to_vec(), Some(bytes));
        Ok(())
    }

    /// Stages removing `key` in `batch`.
    pub fn stage_remove(&self, batch: &mut Batch, key: &K) {
        batch.row(self.id, key.encode().as_ref().to_vec(), None);
    }

    /// Reads up to `limit` records in key order, starting after `after`.
    pub fn scan(&self, after: Option<&K>, limit: usize) -> Result<Vec<(K, V)>, StorageError> {
        self.entries_after(after)
            .take(limit)
            .map(|entry| entry.and_then(|(key, stored)| Ok((key, stored.read()?))))
            .collect()
    }

    /// Every record after `after` in key order, read from sled as the iterator advances and
    /// decoded only when asked ([`Stored::read`]), so a reader can skip a record unread, or
    /// skip one that does not decode. A key that does not decode is an error.
    pub fn entries_after(
        &self,
        after: Option<&K>,
    ) -> impl Iterator<Item = Result<(K, Stored<'_, K, V>), StorageError>> + '_ {
        let start = match after {
            Some(key) => Bound::Excluded(key.encode().as_ref().to_vec()),
            None => Bound::Unbounded,
        };
        self.tree.range((start, Bound::Unbounded)).map(move |item| {
            let (key, bytes) = item?;
            let typed = K::decode(&key).ok_or_else(|| StorageError::Key {
                tree: self.name(),
                key: show_key(&key),
            })?;
            let stored = Stored {
                table: self,
                key,
                bytes,
            };
            Ok((typed, stored))
        })
    }

    /// How many records; walks the whole tree.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// The raw tree, for `benches/storage.rs` (it measures sled's own writes and transactions)
    /// and for tests that plant corrupt records. Writes through it skip the key and record
    /// encodings: agora itself never uses it.
    #[doc(hidden)]
    pub fn sled_tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Decodes a stored record, naming where it came from if it is corrupt.
    fn decode(&self, key: &[u8], bytes: &[u8]) -> Result<V, StorageError> {
        codec::decode_record(bytes).map_err(|source| StorageError::Corrupt {
            tree: self.name(),
            key: show_key(key),
            source,
        })
    }

    fn name(&self) -> String {
        String::from_utf8_lossy(&self.tree.name()).into_owned()
    }
}

/// A record as sled returned it, not yet decoded.
pub struct Stored<'a, K, V> {
    table: &'a Table<K, V>,
    key: sled::IVec,
    bytes: sled::IVec,
}

impl<K: TableKey, V: Record> Stored<'_, K, V> {
    pub fn read(&self) -> Result<V, StorageError> {
        self.table.decode(&self.key, &self.bytes)
    }
}

fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(text) if !text.chars().any(char::is_control) => text.to_owned(),
        _ => key.iter().map(|b| format!("{b:02x}")).collect(),
    }
}
