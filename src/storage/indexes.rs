//! The indexes of unsettled work ([`Storage::pending_stock`], [`Storage::unrestocked`],
//! [`Storage::delivered`]), which let recovery and the settler visit what is unsettled rather
//! than every record ever written, and the one-time build of the first two for a data
//! directory written before they existed (`delivered` cannot be rebuilt from the tables:
//! recovery then republishes the way it did before, from every order).
//!
//! Each index holds at least every unsettled record (its entry is written before the record
//! becomes unsettled and removed after it is settled), so a crash between the two writes
//! leaves an entry too many, which its reader drops, never one too few.

use super::{Storage, StorageError};
use crate::domain::OrderStatus;

/// The name under which a data directory remembers that its indexes are complete.
const INDEXED: &str = "indexed";

/// Builds the indexes from the tables unless this data directory has them: one created by this
/// build has them from its first start. Reads every stock and order once; whether it did.
pub(super) fn build_if_missing(storage: &Storage) -> Result<bool, StorageError> {
    if storage.recall(INDEXED)?.is_some() {
        return Ok(false);
    }
    let (mut stock, mut cancels) = (0, 0);
    for entry in storage.stock.entries_after(None) {
        let (sku, level) = entry?;
        if !level.read()?.pending.is_empty() {
            storage.pending_stock.put(&sku, &())?;
            stock += 1;
        }
    }
    for entry in storage.orders.entries_after(None) {
        let (number, order) = entry?;
        let order = order.read()?;
        if order.status == OrderStatus::Cancelled && !order.restocked {
            storage.unrestocked.put(&number, &())?;
            cancels += 1;
        }
    }
    tracing::info!(
        stock,
        cancels,
        "indexed the unsettled records of this data directory"
    );
    storage.remember(INDEXED, 1)?;
    Ok(true)
}
