//! Stock: one actor per SKU owns its [`StockLevel`] and is the only writer of it, so checking and
//! taking stock is atomic (no oversell). Order actors reserve, release, settle and return units
//! here; product actors seed stock; the gateway reads and sets it.
//!
//! Reservations are written but not flushed: the order that reserves flushes once for all its
//! lines, and crash recovery settles or releases whatever the order did not finish. Each saga
//! request carries its saga's id; the rules that make two sagas of one order safe are
//! [`StockLevel`]'s.

use std::collections::BTreeMap;

use ractor::ActorProcessingErr;
use serde::{Deserialize, Serialize};

use super::entity::{Deps, Entity, Reply};
use crate::config::Role;
use crate::domain::{OrderNumber, Refusal, SagaId, Sku, StockLevel};
use crate::entity_request;
use crate::error::ShopError;
use crate::registry::INVENTORY_SERVICE;
use crate::storage::{Batch, StorageError};

/// The stock protocol: what other actors and the gateway ask a SKU's stock actor, on this node
/// or from another one. Each variant carries its request and the reply for its answer.
#[derive(Serialize, Deserialize)]
pub enum StockCommand {
    Get(GetStock, Reply<Option<StockLevel>>),
    Set(SetStock, Reply<StockLevel>),
    Seed(SeedStock, Reply<StockLevel>),
    Reserve(ReserveStock, Reply<()>),
    Release(ReleaseReservation, Reply<()>),
    Settle(SettleOrder, Reply<()>),
    Return(ReturnStock, Reply<()>),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GetStock {}
entity_request!(GetStock => Stock, StockCommand::Get, Option<StockLevel>, writes: false);

/// Set the available quantity (durable before the reply).
#[derive(Debug, Serialize, Deserialize)]
pub struct SetStock {
    pub quantity: u32,
}
entity_request!(SetStock => Stock, StockCommand::Set, StockLevel, writes: true);

/// Set the quantity if given; otherwise create the SKU with 0 if it has no stock yet.
#[derive(Debug, Serialize, Deserialize)]
pub struct SeedStock {
    pub quantity: Option<u32>,
}
entity_request!(SeedStock => Stock, StockCommand::Seed, StockLevel, writes: true);

/// Take `quantity` units for `order` by `saga`, or answer `OutOfStock` (or `Unavailable` to
/// a saga a newer one superseded). Idempotent per saga.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReserveStock {
    pub order: OrderNumber,
    pub quantity: u32,
    pub saga: SagaId,
}
entity_request!(ReserveStock => Stock, StockCommand::Reserve, (), writes: true);

/// Give back what `saga` (or an older one) reserved for `order`: the order was not placed.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReleaseReservation {
    pub order: OrderNumber,
    pub saga: SagaId,
}
entity_request!(ReleaseReservation => Stock, StockCommand::Release, (), writes: true);

/// Forget the pending change of `order`: its outcome is durable, and `placer` placed it.
#[derive(Debug, Serialize, Deserialize)]
pub struct SettleOrder {
    pub order: OrderNumber,
    pub placer: SagaId,
}
entity_request!(SettleOrder => Stock, StockCommand::Settle, (), writes: true);

/// Put back `quantity` units of cancelled `order`, placed by `placer`. Idempotent per order.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReturnStock {
    pub order: OrderNumber,
    pub quantity: u32,
    pub placer: SagaId,
}
entity_request!(ReturnStock => Stock, StockCommand::Return, (), writes: true);

pub struct Stock;

impl Stock {
    async fn save(deps: &Deps<Stock>, level: &StockLevel) -> Result<(), ShopError> {
        let mut batch = Batch::default();
        deps.storage.stage_stock(&mut batch, level)?;
        deps.commit(batch).await
    }

    /// Applies a saga step to the stock, if the SKU has any, and saves what it changed.
    async fn step(
        deps: &Deps<Stock>,
        state: &mut Option<StockLevel>,
        step: impl FnOnce(&mut StockLevel) -> bool,
    ) -> Result<(), ShopError> {
        match state {
            Some(level) => {
                let changed = step(level);
                Stock::save_if(deps, level, changed).await
            }
            None => Ok(()),
        }
    }

    /// Saves `level` if a saga step `changed` it.
    async fn save_if(
        deps: &Deps<Stock>,
        level: &StockLevel,
        changed: bool,
    ) -> Result<(), ShopError> {
        if changed {
            Stock::save(deps, level).await
        } else {
            Ok(())
        }
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
    type Calls = ();

    fn load(deps: &Deps<Stock>, key: &Sku) -> Result<Self::State, StorageError> {
        deps.storage.stock.get(key)
    }

    async fn handle(
        deps: &Deps<Stock>,
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
            StockCommand::Get(GetStock {}, reply) => reply.send(Ok(state.clone())),
            StockCommand::Set(SetStock { quantity }, reply) => {
                let mut level = state.clone().unwrap_or_else(empty);
                level.quantity = quantity;
                persist_durably(deps, state, level, reply).await;
            }
            StockCommand::Seed(SeedStock { quantity }, reply) => {
                let mut level = state.clone().unwrap_or_else(empty);
                if let Some(quantity) = quantity {
                    level.quantity = quantity;
                }
                persist_durably(deps, state, level, reply).await;
            }
            StockCommand::Reserve(
                ReserveStock {
                    order,
                    quantity,
                    saga,
                },
                reply,
            ) => {
                let result = match state {
                    Some(level) => match level.reserve(order, quantity, saga) {
                        Ok(changed) => Stock::save_if(deps, level, changed).await,
                        Err(Refusal::Short) => Err(ShopError::OutOfStock(vec![sku.to_string()])),
                        Err(Refusal::Superseded) => Err(ShopError::Unavailable(format!(
                            "a newer attempt at order {order} holds its stock: retry"
                        ))),
                    },
                    None => Err(ShopError::OutOfStock(vec![sku.to_string()])),
                };
                reply.send(result);
            }
            StockCommand::Release(ReleaseReservation { order, saga }, reply) => {
                let release = |level: &mut StockLevel| level.release(order, saga);
                reply.send(Stock::step(deps, state, release).await);
            }
            StockCommand::Settle(SettleOrder { order, placer }, reply) => {
                let settle = |level: &mut StockLevel| level.settle(order, placer);
                reply.send(Stock::step(deps, state, settle).await);
            }
            StockCommand::Return(
                ReturnStock {
                    order,
                    quantity,
                    placer,
                },
                reply,
            ) => {
                let level = state.get_or_insert_with(empty);
                let changed = level.give_back(order, quantity, placer);
                reply.send(Stock::save_if(deps, level, changed).await);
            }
        }
        Ok(())
    }

    fn read(_sku: &Sku, state: &Self::State, command: StockCommand) -> Result<(), StockCommand> {
        match command {
            StockCommand::Get(GetStock {}, reply) => {
                reply.send(Ok(state.clone()));
                Ok(())
            }
            other => Err(other),
        }
    }

    async fn query(_deps: Deps<Stock>, _query: ()) {}

    /// Unknown SKUs are not kept: a scan of random SKUs leaves no actors behind.
    fn keep_alive(state: &Self::State) -> bool {
        state.is_some()
    }
}

/// Writes `level`, waits for it to be on disk, then makes it the state and replies with it.
async fn persist_durably(
    deps: &Deps<Stock>,
    state: &mut Option<StockLevel>,
    level: StockLevel,
    reply: Reply<StockLevel>,
) {
    let result = match Stock::save(deps, &level).await {
        Ok(()) => {
            *state = Some(level.clone());
            deps.durable().await.map(|_| level)
        }
        Err(e) => Err(e),
    };
    reply.send(result);
}
