//! Order: one actor per order runs its saga over the product and stock actors.
//!
//! Placing: price every line from the catalog, reserve every line at its SKU's stock actor (all
//! or none: on any shortage it releases every line), then write its `OrderPlaced` event to the
//! outbox and the order, and flush before answering. Then it tells the stock actors to settle
//! and wakes the notifier. Cancelling records the cancel and its event, returns the units
//! (idempotently), then marks the order restocked. Crash recovery (`recovery`) finishes whatever
//! a crash interrupted.

use std::collections::BTreeMap;

use futures::future::join_all;
use ractor::{ActorProcessingErr, ActorRef};
use serde::{Deserialize, Serialize};

use super::entity::{Deps, Entity, Reply, Route};
use super::notifier::NotifierMsg;
use super::product::{GetProduct, ProductEntity};
use super::stock::{ReleaseReservation, ReserveStock, ReturnStock, SettleOrder, Stock};
use crate::config::Role;
use crate::domain::{
    now_ms, EventType, Order, OrderEvent, OrderLine, OrderNumber, OrderStatus, Price, ProductId,
    SagaId, Sku,
};
use crate::entity_request;
use crate::error::ShopError;
use crate::registry::ORDER_SERVICE;
use crate::storage::{Batch, StorageError};

/// A line as the client asked for it; the price, if given, must match the catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestedLine {
    pub sku: Sku,
    pub price: Option<Price>,
    pub quantity: u32,
}

/// The outcome of a place: `created` is false when an idempotent retry found the order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Placed {
    pub order: Order,
    pub created: bool,
}

/// The order protocol: what the gateway, the settler and other nodes ask an order's actor.
/// Each variant carries its request and the reply for its answer.
#[derive(Serialize, Deserialize)]
pub enum OrderCommand {
    Place(PlaceOrder, Reply<Placed>),
    Get(GetOrder, Reply<Order>),
    Cancel(CancelOrder, Reply<Order>),
    ResolvePending(ResolvePending, Reply<()>),
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub lines: Vec<RequestedLine>,
}
entity_request!(PlaceOrder => OrderEntity, OrderCommand::Place, Placed, writes: true);

#[derive(Debug, Serialize, Deserialize)]
pub struct GetOrder {}
entity_request!(GetOrder => OrderEntity, OrderCommand::Get, Order, writes: false);

#[derive(Debug, Serialize, Deserialize)]
pub struct CancelOrder {}
entity_request!(CancelOrder => OrderEntity, OrderCommand::Cancel, Order, writes: true);

/// The stock actor of `sku` (on another node) holds a pending change of this order: settle it
/// by the order's durable outcome. Handled by the order's own actor, so no saga of the same
/// order runs meanwhile.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResolvePending {
    pub sku: Sku,
}
entity_request!(ResolvePending => OrderEntity, OrderCommand::ResolvePending, (), writes: true);

pub enum OrderQuery {
    List {
        after: Option<OrderNumber>,
        limit: usize,
        reply: Reply<Vec<Order>>,
    },
}

pub struct OrderEntity;

/// What an order's saga calls: the catalog for prices, the stock, and the notifier it wakes.
#[derive(Clone)]
pub struct OrderCalls {
    pub products: Route<ProductEntity>,
    pub stock: Route<Stock>,
    pub notifier: ActorRef<NotifierMsg>,
}

impl Entity for OrderEntity {
    const SERVICE: &'static str = ORDER_SERVICE;
    const KIND: &'static str = "order";
    const ROLE: Role = Role::Order;
    type Key = OrderNumber;
    type Command = OrderCommand;
    type Query = OrderQuery;
    type State = Option<Order>;
    type Calls = OrderCalls;

    fn load(deps: &Deps<Self>, key: &OrderNumber) -> Result<Self::State, StorageError> {
        deps.storage.orders.get(key)
    }

    async fn handle(
        deps: &Deps<Self>,
        number: &OrderNumber,
        state: &mut Self::State,
        command: OrderCommand,
    ) -> Result<(), ActorProcessingErr> {
        match command {
            OrderCommand::Place(PlaceOrder { lines }, reply) => {
                let result = place(deps, *number, state, lines).await;
                let outcome = match &result {
                    Ok(_) => "placed",
                    Err(ShopError::OutOfStock(_)) => "out_of_stock",
                    Err(ShopError::UnknownSku(_)) => "unknown_sku",
                    Err(ShopError::PriceChanged(_)) => "price_changed",
                    Err(_) => "error",
                };
                deps.metrics.orders.with_label_values(&[outcome]).inc();
                reply.send(result);
            }
            OrderCommand::Get(GetOrder {}, reply) => reply.send(
                state
                    .clone()
                    .ok_or_else(|| ShopError::NotFound(format!("order {number}"))),
            ),
            OrderCommand::Cancel(CancelOrder {}, reply) => {
                let result = cancel(deps, *number, state).await;
                if result.is_ok() {
                    deps.metrics.orders.with_label_values(&["cancelled"]).inc();
                }
                reply.send(result);
            }
            OrderCommand::ResolvePending(ResolvePending { sku }, reply) => {
                reply.send(resolve_pending(deps, *number, state, sku).await);
            }
        }
        Ok(())
    }

    async fn query(deps: Deps<Self>, query: OrderQuery) {
        let OrderQuery::List {
            after,
            limit,
            reply,
        } = query;
        let result = deps
            .page(&deps.storage.orders, after.as_ref(), limit)
            .map(|rows| rows.into_iter().map(|(_, order)| order).collect())
            .map_err(ShopError::from);
        reply.send(result);
    }

    /// An order is written once and seldom read again: its actor does not stay.
    fn keep_alive(_state: &Self::State) -> bool {
        false
    }
}

/// Quantities per SKU (repeated SKUs are summed) with the price the client expects.
fn aggregate(lines: Vec<RequestedLine>) -> Result<BTreeMap<Sku, (u32, Option<Price>)>, ShopError> {
    let mut wanted: BTreeMap<Sku, (u32, Option<Price>)> = BTreeMap::new();
    for line in lines {
        let entry = wanted.entry(line.sku.clone()).or_insert((0, line.price));
        entry.0 = entry
            .0
            .checked_add(line.quantity)
            .ok_or_else(|| ShopError::Invalid("quantity too large".into()))?;
        if entry.1 != line.price && line.price.is_some() {
            entry.1 = line.price;
        }
    }
    Ok(wanted)
}

/// FNV-1a over the wanted lines: a retry with the same Idempotency-Key must ask the same.
fn fingerprint(wanted: &BTreeMap<Sku, (u32, Option<Price>)>) -> u64 {
    let text: String = wanted
        .iter()
        .map(|(sku, (qty, _))| format!("{sku}:{qty};"))
        .collect();
    text.bytes().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

async fn place(
    deps: &Deps<OrderEntity>,
    number: OrderNumber,
    state: &mut Option<Order>,
    lines: Vec<RequestedLine>,
) -> Result<Placed, ShopError> {
    let wanted = aggregate(lines)?;
    let fingerprint = fingerprint(&wanted);
    if let Some(order) = state {
        return if order.fingerprint == fingerprint {
            Ok(Placed {
                order: order.clone(),
                created: false,
            })
        } else {
            Err(ShopError::IdempotencyMismatch)
        };
    }
    let lines = price_lines(deps, &wanted).await?;
    let saga = deps.new_saga()?;
    reserve_all(deps, number, saga, &lines).await?;
    let order = Order {
        number,
        status: OrderStatus::Placed,
        total: Price::sum(lines.iter().map(|l| l.price.times(l.quantity))),
        lines,
        created_ms: now_ms(),
        fingerprint,
        restocked: true,
        saga,
    };
    write_with_event(deps, &order, EventType::OrderPlaced).await?;
    *state = Some(order.clone());
    deps.durable().await?;
    settle(deps, &order);
    wake_notifier(deps);
    Ok(Placed {
        order,
        created: true,
    })
}

/// Prices each SKU from the catalog; unknown SKUs and changed prices are named together.
async fn price_lines(
    deps: &Deps<OrderEntity>,
    wanted: &BTreeMap<Sku, (u32, Option<Price>)>,
) -> Result<Vec<OrderLine>, ShopError> {
    let lookups = wanted.keys().map(|sku| {
        deps.calls
            .products
            .ask(ProductId::for_sku(sku), GetProduct {})
    });
    let (mut lines, mut unknown, mut changed) = (Vec::new(), Vec::new(), Vec::new());
    for ((sku, (quantity, asked)), found) in wanted.iter().zip(join_all(lookups).await) {
        match found {
            Ok(product) => {
                if asked.is_some_and(|asked| asked != product.price) {
                    changed.push(sku.to_string());
                }
                lines.push(OrderLine {
                    sku: sku.clone(),
                    price: product.price,
                    quantity: *quantity,
                });
            }
            Err(ShopError::NotFound(_)) => unknown.push(sku.to_string()),
            Err(e) => return Err(e),
        }
    }
    if !unknown.is_empty() {
        return Err(ShopError::UnknownSku(unknown));
    }
    if !changed.is_empty() {
        return Err(ShopError::PriceChanged(changed));
    }
    Ok(lines)
}

/// Reserves every line, or releases them all and names the short SKUs.
async fn reserve_all(
    deps: &Deps<OrderEntity>,
    number: OrderNumber,
    saga: SagaId,
    lines: &[OrderLine],
) -> Result<(), ShopError> {
    let reservations = lines.iter().map(|line| {
        let reserve = ReserveStock {
            order: number,
            quantity: line.quantity,
            saga,
        };
        deps.calls.stock.ask(line.sku.clone(), reserve)
    });
    let results = join_all(reservations).await;
    if results.iter().all(Result::is_ok) {
        return Ok(());
    }
    // Release every line, including those whose answer was lost: release is idempotent.
    let releases = lines.iter().map(|line| {
        let release = ReleaseReservation {
            order: number,
            saga,
        };
        deps.calls.stock.ask(line.sku.clone(), release)
    });
    join_all(releases).await;
    let mut short = Vec::new();
    for result in results {
        match result {
            Err(ShopError::OutOfStock(skus)) => short.extend(skus),
            Err(other) => return Err(other),
            Ok(()) => {}
        }
    }
    Err(ShopError::OutOfStock(short))
}

async fn cancel(
    deps: &Deps<OrderEntity>,
    number: OrderNumber,
    state: &mut Option<Order>,
) -> Result<Order, ShopError> {
    let mut order = state
        .clone()
        .ok_or_else(|| ShopError::NotFound(format!("order {number}")))?;
    match (order.status, order.restocked) {
        (OrderStatus::Cancelled, true) => {
            return Err(ShopError::AlreadyCancelled(number.to_string()))
        }
        (OrderStatus::Cancelled, false) => {} // an earlier cancel was interrupted: finish it
        (OrderStatus::Placed, _) => {
            order.status = OrderStatus::Cancelled;
            order.restocked = false;
            write_with_event(deps, &order, EventType::OrderCancelled).await?;
            *state = Some(order.clone());
            // Durable before any unit goes back: a returned unit always has a durable cancel,
            // even when the stock lives on another node that flushes on its own.
            deps.durable().await?;
        }
    }
    let returns = order.lines.iter().map(|line| {
        let give_back = ReturnStock {
            order: number,
            quantity: line.quantity,
            placer: order.saga,
        };
        deps.calls.stock.ask(line.sku.clone(), give_back)
    });
    join_all(returns)
        .await
        .into_iter()
        .collect::<Result<Vec<()>, _>>()?;
    order.restocked = true;
    let mut batch = Batch::default();
    deps.storage.orders.stage(&mut batch, &number, &order)?;
    deps.storage.unrestocked.stage_remove(&mut batch, &number);
    deps.commit(batch).await?;
    *state = Some(order.clone());
    deps.durable().await?;
    settle(deps, &order);
    wake_notifier(deps);
    Ok(order)
}

/// Settles the pending change `sku` holds for this order by the order's durable outcome: an
/// order never written releases its reservation (any saga's of this term or before: none of
/// them can place it now), an interrupted cancel is finished, any other outcome is final and
/// the change is forgotten (or given back, if another saga than the placing one made it).
async fn resolve_pending(
    deps: &Deps<OrderEntity>,
    number: OrderNumber,
    state: &mut Option<Order>,
    sku: Sku,
) -> Result<(), ShopError> {
    match state {
        None => {
            let release = ReleaseReservation {
                order: number,
                saga: SagaId::last_of(deps.term()),
            };
            deps.calls.stock.ask(sku, release).await
        }
        Some(order) if order.status == OrderStatus::Cancelled && !order.restocked => {
            cancel(deps, number, state).await.map(drop)
        }
        Some(order) => {
            let settle = SettleOrder {
                order: number,
                placer: order.saga,
            };
            deps.calls.stock.ask(sku, settle).await
        }
    }
}

/// Writes the event to the outbox, then the order, in one batch. On a node alone that is two
/// plain writes, not a sled transaction (see `storage`), not yet flushed: sled recovers a prefix
/// of its log, so after a crash the order never survives without its event; an event that
/// survives without its order (or without its cancel) was never acknowledged, and recovery
/// drops it. The notifier sends the event only once a flush covers both. Among replicas the
/// batch is one log entry.
async fn write_with_event(
    deps: &Deps<OrderEntity>,
    order: &Order,
    event_type: EventType,
) -> Result<(), ShopError> {
    let event = OrderEvent::for_order(order, event_type, now_ms());
    let mut batch = Batch::default();
    batch.event(&event)?;
    if !order.restocked {
        // A cancel: indexed before it is written, so recovery finds it if it stops half-way.
        deps.storage
            .unrestocked
            .stage(&mut batch, &order.number, &())?;
    }
    deps.storage
        .orders
        .stage(&mut batch, &order.number, order)?;
    deps.commit(batch).await
}

/// Tells each SKU's stock actor that the order's outcome is durable, without waiting: a
/// settle that is lost leaves a pending change that recovery or the settler resolves.
fn settle(deps: &Deps<OrderEntity>, order: &Order) {
    for line in &order.lines {
        let settle = SettleOrder {
            order: order.number,
            placer: order.saga,
        };
        deps.calls.stock.tell(line.sku.clone(), settle);
    }
}

fn wake_notifier(deps: &Deps<OrderEntity>) {
    let _ = deps.calls.notifier.cast(NotifierMsg::OutboxChanged);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: u32) -> RequestedLine {
        RequestedLine {
            sku: Sku::parse(sku).unwrap(),
            price: None,
            quantity,
        }
    }

    #[test]
    fn repeated_skus_are_summed_and_fingerprinted_by_content() {
        let wanted = aggregate(vec![line("a", 1), line("b", 2), line("a", 3)]).unwrap();
        assert_eq!(wanted[&Sku::parse("a").unwrap()].0, 4);
        let same = aggregate(vec![line("b", 2), line("a", 4)]).unwrap();
        assert_eq!(fingerprint(&wanted), fingerprint(&same));
        let other = aggregate(vec![line("a", 5), line("b", 2)]).unwrap();
        assert_ne!(fingerprint(&wanted), fingerprint(&other));
    }
}
