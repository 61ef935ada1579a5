//! Notifications in a replicated cluster: a record belongs to the partition of its event id
//! and is committed there, through that partition's leader wherever it runs, with the check
//! for a duplicate made as the log applies ([`Replicas::record_once`]). So an event received
//! twice (redelivered, or by two consumers across a rebalance) is recorded once cluster-wide,
//! a dead or wiped node loses no record, and every node lists the records of the partitions it
//! leads, which together list each record once.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::join_all;

use super::{records, NotificationRecord, ReceivedEvent, Recorded};
use crate::actors::entity::Replicas;
use crate::codec;
use crate::domain::now_ms;
use crate::error::ShopError;
use crate::storage::{event_group, first_key, Storage, StorageError};

/// Records each event once cluster-wide; returns once every record is committed.
pub(super) async fn record(
    replicas: &Arc<dyn Replicas>,
    events: Vec<ReceivedEvent>,
) -> Result<Vec<Recorded>, ShopError> {
    let proposals = events.into_iter().map(|event| async move {
        let record = NotificationRecord {
            // The key it is stored under, given as the log applies; a list reads it from there.
            seq: 0,
            event_id: event.event_id,
            event_type: event.event_type,
            order_number: event.order_number,
            received_ms: now_ms(),
            payload: event.payload,
        };
        let bytes = codec::encode(&record)
            .map_err(|e| ShopError::Internal(format!("a notification does not encode: {e}")))?;
        match replicas.record_once(&record.event_id, bytes).await? {
            true => Ok(Recorded::New(record)),
            false => Ok(Recorded::Duplicate(record.order_number)),
        }
    });
    join_all(proposals).await.into_iter().collect()
}

/// Up to `limit` records after `after` of the partitions this node leads, each with the key
/// it is stored under as its `seq`.
pub fn list(
    storage: &Storage,
    replicas: &dyn Replicas,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<NotificationRecord>, StorageError> {
    let table = records(storage);
    let mut page = Vec::new();
    for entry in table.entries_after(after.as_ref()) {
        if page.len() == limit {
            break;
        }
        let (key, stored) = entry?;
        if replicas.leads(event_group(key) as u32) {
            let record = stored.read()?;
            page.push(NotificationRecord { seq: key, ..record });
        }
    }
    Ok(page)
}

/// Up to `limit` records of each partition this node leads that come after its position in
/// `cursor` (per partition, the last key a reader saw, or none): for a stream that resumes on
/// any node (`GET /api/notifications/stream` in a cluster).
pub fn since(
    storage: &Storage,
    replicas: &dyn Replicas,
    cursor: &BTreeMap<u32, u64>,
    limit: usize,
) -> Result<Vec<NotificationRecord>, StorageError> {
    let table = records(storage);
    let mut page = Vec::new();
    for partition in (0..replicas.partitions()).filter(|p| replicas.leads(*p)) {
        let start = cursor.get(&partition).copied();
        let start = start.or_else(|| first_key(partition).checked_sub(1));
        let entries = table.entries_after(start.as_ref());
        for entry in entries.take(limit) {
            let (key, stored) = entry?;
            if event_group(key) != u64::from(partition) {
                break;
            }
            page.push(NotificationRecord {
                seq: key,
                ..stored.read()?
            });
        }
    }
    Ok(page)
}
