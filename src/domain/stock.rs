//! Stock: the [`StockLevel`] of a SKU, with the [`PendingChange`]s of order sagas not yet
//! settled, and the rules by which sagas change it.
//!
//! Two sagas of one order can be at work at once: a client retries an order under the same
//! idempotency key (on the partition's new leader while the old leader's saga is frozen or cut
//! off, or on the same leader after a 503), and the first saga's requests may still arrive,
//! late. So every reservation carries the [`SagaId`] of the saga that made it. A newer saga
//! takes over an older one's reservation (the older one can no longer place the order); an
//! older saga's requests change nothing once a newer one holds the reservation; and when the
//! order's outcome is durable, a reservation made by any other saga than the placing one is
//! given back.

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

/// Which saga of an order made a change: the raft term its order partition was led in (0 on
/// a node alone), then a number drawn by the node that ran it, increasing on that node across
/// restarts. A term has one leader, so sagas are told apart and ordered by when they began.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct SagaId {
    pub term: u64,
    pub seq: u64,
}

impl SagaId {
    /// Later than every saga of `term` and before: what a decision taken in `term` that no
    /// saga of the order can change any more (it found the order never written) releases.
    pub fn last_of(term: u64) -> SagaId {
        SagaId {
            term,
            seq: u64::MAX,
        }
    }
}

/// A change to a SKU's stock made by an order saga and not yet settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingChange {
    /// Units taken from `quantity` for an order that may not be placed yet, by `saga`.
    Reserved { quantity: u32, saga: SagaId },
    /// Units given back to `quantity` by the cancel of an order.
    Returned(u32),
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Fewer units are available than asked.
    Short,
    /// A newer saga holds this order's reservation: the asking saga is stale.
    Superseded,
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

impl StockLevel {
    /// Takes `quantity` units for `order` by `saga`. Idempotent per saga; a newer saga takes
    /// over an older one's reservation. Whether the level changed.
    pub fn reserve(
        &mut self,
        order: OrderNumber,
        quantity: u32,
        saga: SagaId,
    ) -> Result<bool, Refusal> {
        let taken_over = match self.pending.get(&order) {
            Some(PendingChange::Returned(_)) => return Ok(false),
            Some(&PendingChange::Reserved { saga: held, .. }) if held == saga => return Ok(false),
            Some(&PendingChange::Reserved { saga: held, .. }) if held > saga => {
                return Err(Refusal::Superseded)
            }
            Some(&PendingChange::Reserved { quantity, .. }) => quantity,
            None => 0,
        };
        // An older saga's reservation counts as available: this saga replaces it. If short,
        // it stays, and this saga's release gives it back.
        let available = self.quantity.saturating_add(taken_over);
        if available < quantity {
            return Err(Refusal::Short);
        }
        self.quantity = available - quantity;
        self.pending
            .insert(order, PendingChange::Reserved { quantity, saga });
        Ok(true)
    }

    /// Gives back what `order` reserved, if `saga` (or an older one) did: the order was not
    /// placed. Whether the level changed.
    pub fn release(&mut self, order: OrderNumber, saga: SagaId) -> bool {
        match self.pending.get(&order) {
            Some(&PendingChange::Reserved {
                quantity,
                saga: held,
            }) if held <= saga => {
                self.quantity = self.quantity.saturating_add(quantity);
                self.pending.remove(&order);
                true
            }
            _ => false,
        }
    }

    /// Forgets the pending change of `order`, whose outcome is durable and whose units were
    /// taken by `placer`: a reservation of another saga is given back.
    pub fn settle(&mut self, order: OrderNumber, placer: SagaId) -> bool {
        match self.pending.remove(&order) {
            None => false,
            Some(PendingChange::Reserved { quantity, saga }) if saga != placer => {
                self.quantity = self.quantity.saturating_add(quantity);
                true
            }
            Some(_) => true,
        }
    }

    /// Puts back `quantity` units of cancelled `order`, placed by `placer`. Idempotent per
    /// order; another saga's reservation still held is given back too.
    pub fn give_back(&mut self, order: OrderNumber, quantity: u32, placer: SagaId) -> bool {
        let stale = match self.pending.get(&order) {
            Some(PendingChange::Returned(_)) => return false,
            Some(&PendingChange::Reserved { quantity, saga }) if saga != placer => quantity,
            _ => 0,
        };
        self.quantity = self.quantity.saturating_add(stale).saturating_add(quantity);
        self.pending
            .insert(order, PendingChange::Returned(quantity));
        true
    }
}

#[cfg(test)]
mod tests;
