//! Stock: the [`StockLevel`] of a SKU, with the [`PendingChange`]s of order sagas not yet
//! settled.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Invalid, OrderNumber, Sku};

/// Most units a SKU's stock may hold.
pub const MAX_STOCK: u32 = 1_000_000_000;

/// Parses a stock level: 0 to [`MAX_STOCK`].
pub fn parse_stock(field: &str, raw: i64) -> Result<u32, Invalid> {
    u32::try_from(raw)
        .ok()
        .filter(|q| *q <= MAX_STOCK)
        .ok_or_else(|| Invalid::new(field, format!("must be between 0 and {MAX_STOCK}")))
}

/// A change to a SKU's stock made by an order saga and not yet settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingChange {
    /// Units taken from `quantity` for an order that may not be placed yet.
    Reserved(u32),
    /// Units given back to `quantity` by the cancel of an order.
    Returned(u32),
}

/// The stock of one SKU, owned by its stock actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockLevel {
    pub sku: Sku,
    /// Units available to order; reserved units are already taken out.
    pub quantity: u32,
    /// Saga steps per order, kept until the order's outcome is durable, so recovery after a
    /// crash can settle them (see `recovery`).
    pub pending: BTreeMap<OrderNumber, PendingChange>,
}
