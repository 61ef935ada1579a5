//! Stock: one actor per SKU owns its [`StockLevel`] and is the only writer of it, so checking and
//! taking stock is atomic (no oversell). Order actors reserve, release, settle and return units
//! here; product actors seed stock; the gateway reads and sets it.
//!
//! Reservations are written but not flushed: the order that reserves flushes once for all its
//! lines, and crash recovery settles or releases whatever the order did not finish.

use std::collections::BTreeMap;

use ractor::ActorProcessingErr;
use serde::{Deserialize, Serialize};

use super::entity::Entity;
use super::{Deps, Reply, ShopError};
use crate::config::Role;
use crate::domain::{OrderNumber, PendingChange, Sku, StockLevel};
use crate::registry::INVENTORY_SERVICE;
use crate::storage::{self, StorageError};

pub enum StockCommand {
    GetStock {
        reply: Reply<Option<StockLevel>>,
    },
    /// Set the available quantity (durable before the reply).
    SetStock {
        quantity: u32,
        reply: Reply<StockLevel>,
    },
    /// Set the quantity if given; otherwise create the SKU with 0 if it has no stock yet.
    SeedStock {
        quantity: Option<u32>,
        reply: Reply<StockLevel>,
    },
    /// Take `quantity` units for `order`, or answer `OutOfStock`. Idempotent per order.
    ReserveStock {
        order: OrderNumber,
        quantity: u32,
        reply: Reply<()>,
    },
    /// Give back what `order` reserved (the order was not placed).
    ReleaseReservation {
        order: OrderNumber,
        reply: Reply<()>,
    },
    /// Forget the pending change of `order`: its outcome is durable.
    SettleOrder {
        order: OrderNumber,
        reply: Reply<()>,
    },
    /// Put back `quantity` units of cancelled `order`. Idempotent per order.
    ReturnStock {
        order: OrderNumber,
        quantity: u32,
        reply: Reply<()>,
    },
}

/// The requests other actors and the gateway send, on this node or from another one; each
/// becomes the [`StockCommand`] of the same name.
#[derive(Debug, Serialize, Deserialize)]
pub struct GetStock {}

#[derive(Debug, Serialize, Deserialize)]
pub struct SetStock {
    pub quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SeedStock {
    pub quantity: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReserveStock {
    pub order: OrderNumber,
    pub quantity: u32,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReleaseReservation {
    pub order: OrderNumber,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SettleOrder {
    pub order: OrderNumber,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReturnStock {
    pub order: OrderNumber,
    pub quantity: u32,
}

crate::entity_requests!(Stock, StockCommand {
    GetStock {} -> Option<StockLevel>, writes: false;
    SetStock { quantity } -> StockLevel, writes: true;
    SeedStock { quantity } -> StockLevel, writes: true;
    ReserveStock { order, quantity } -> (), writes: true;
    ReleaseReservation { order } -> (), writes: true;
    SettleOrder { order } -> (), writes: true;
    ReturnStock { order, quantity } -> (), writes: true;
});

pub struct Stock;

impl Stock {
    fn save(deps: &Deps, level: &StockLevel) -> Result<(), StorageError> {
        storage::put(&deps.storage.stock, level.sku.as_str().as_bytes(), level)
    }
}

impl Entity for Stock {
    const SERVICE: &'static str = INVENTORY_SERVICE;
    const KIND: &'static str = "stock";
    const ROLE: Role = Role::Inventory;
    type Key = Sku;
    type Command = StockCommand;
    type Query = ();
    type State = Option<StockLevel>;

    fn load(deps: &Deps, key: &Sku) -> Result<Self::State, StorageError> {
        storage::get(&deps.storage.stock, key.as_str().as_bytes())
    }

    async fn handle(
        deps: &Deps,
        sku: &Sku,
        state: &mut Self::State,
        command: StockCommand,
    ) -> Result<(), ActorProcessingErr> {
        let empty = || StockLevel {
            sku: sku.clone(),
            quantity: 0,
            pending: BTreeMap::new(),
        };
        match command {
            StockCommand::GetStock { reply } => {
                let _ = reply.send(Ok(state.clone()));
            }
            StockCommand::SetStock { quantity, reply } => {
                let mut level = state.clone().unwrap_or_else(empty);
                level.quantity = quantity;
                persist_durably(deps, state, level, reply).await?;
            }
            StockCommand::SeedStock { quantity, reply } => {
                let mut level = state.clone().unwrap_or_else(empty);
                if let Some(quantity) = quantity {
                    level.quantity = quantity;
                }
                persist_durably(deps, state, level, reply).await?;
            }
            StockCommand::ReserveStock {
                order,
                quantity,
                reply,
            } => {
                let result = match state {
                    Some(level) if level.pending.contains_key(&order) => Ok(()),
                    Some(level) if level.quantity >= quantity => {
                        level.quantity -= quantity;
                        level
                            .pending
                            .insert(order, PendingChange::Reserved(quantity));
                        Stock::save(deps, level)?;
                        Ok(())
                    }
                    _ => Err(ShopError::OutOfStock(vec![sku.to_string()])),
                };
                let _ = reply.send(result);
            }
            StockCommand::ReleaseReservation { order, reply } => {
                if let Some(level) = state {
                    if let Some(PendingChange::Reserved(quantity)) =
                        level.pending.get(&order).copied()
                    {
                        level.quantity += quantity;
                        level.pending.remove(&order);
                        Stock::save(deps, level)?;
                    }
                }
                let _ = reply.send(Ok(()));
            }
            StockCommand::SettleOrder { order, reply } => {
                if let Some(level) = state {
                    if level.pending.remove(&order).is_some() {
                        Stock::save(deps, level)?;
                    }
                }
                let _ = reply.send(Ok(()));
            }
            StockCommand::ReturnStock {
                order,
                quantity,
                reply,
            } => {
                let level = state.get_or_insert_with(empty);
                if level.pending.get(&order) != Some(&PendingChange::Returned(quantity)) {
                    level.quantity = level.quantity.saturating_add(quantity);
                    level
                        .pending
                        .insert(order, PendingChange::Returned(quantity));
                    Stock::save(deps, level)?;
                }
                let _ = reply.send(Ok(()));
            }
        }
        Ok(())
    }

    async fn query(_deps: Deps, _query: ()) {}

    /// Unknown SKUs are not kept: a scan of random SKUs leaves no actors behind.
    fn keep_alive(state: &Self::State) -> bool {
        state.is_some()
    }

    fn reject(command: StockCommand, error: ShopError) {
        match command {
            StockCommand::GetStock { reply } => drop(reply.send(Err(error))),
            StockCommand::SetStock { reply, .. } | StockCommand::SeedStock { reply, .. } => {
                drop(reply.send(Err(error)))
            }
            StockCommand::ReserveStock { reply, .. }
            | StockCommand::ReleaseReservation { reply, .. }
            | StockCommand::SettleOrder { reply, .. }
            | StockCommand::ReturnStock { reply, .. } => drop(reply.send(Err(error))),
        }
    }
}

/// Writes `level`, waits for it to be on disk, then makes it the state and replies with it.
async fn persist_durably(
    deps: &Deps,
    state: &mut Option<StockLevel>,
    level: StockLevel,
    reply: Reply<StockLevel>,
) -> Result<(), ActorProcessingErr> {
    Stock::save(deps, &level)?;
    *state = Some(level.clone());
    let result = deps
        .storage
        .durable()
        .await
        .map(|_| level)
        .map_err(ShopError::from);
    let _ = reply.send(result);
    Ok(())
}
