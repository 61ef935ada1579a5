//! Crash recovery of the order saga, run once at start before any actor loads state.
//!
//! A crash can leave stock changes that belong to no durable outcome. This pass settles them:
//! a cancel that was recorded but not restocked is finished; a reservation whose order was never
//! written is released (the client never got a 201); a reservation whose order exists is kept;
//! a return whose order is not cancelled is undone; an outbox event whose order (or cancel) was
//! lost is dropped. Then it flushes.
//!
//! In a cluster it decides only what this node can see: a pending change of an order owned by
//! another node, and a cancel whose stock lives on another node, are left to the `settler`,
//! which asks their owners once the cluster is up.
//!
//! With the embedded broker, Kafka's log lives in this process and dies with it: events it
//! acknowledged but the notification service had not yet recorded are gone.
//! [`republish_unrecorded`] puts them back in the outbox (same event ids, so nothing doubles).

use std::collections::HashSet;

use uuid::Uuid;

use super::notification;
use crate::config::Role;
use crate::domain::{
    now_ms, EventType, OrderEvent, OrderNumber, OrderStatus, PendingChange, SagaId, StockLevel,
};
use crate::storage::{Storage, StorageError};

/// What recovery changed, for the start-up log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub cancels_finished: usize,
    pub reservations_released: usize,
    pub changes_settled: usize,
    /// Outbox events whose order (or cancel) a crash lost: never acknowledged, never sent.
    pub events_dropped: usize,
    /// Cancels whose stock lives on other nodes: the settler finishes them once the cluster is
    /// up (recovery cannot reach that stock).
    pub cancels_left: Vec<OrderNumber>,
}

/// Runs recovery; `owns(role, key)` says whether this node owns `key` of `role` (always, on a
/// single node). It visits only what the indexes name (`storage::indexes`): its time grows
/// with what a crash left unsettled, not with how many orders were ever placed.
pub fn recover(
    storage: &Storage,
    owns: impl Fn(Role, &str) -> bool,
) -> Result<Recovered, StorageError> {
    let mut recovered = Recovered::default();
    for (number, ()) in storage.unrestocked.scan(None, usize::MAX)? {
        let mut order = match storage.orders.get(&number)? {
            Some(order) if order.status == OrderStatus::Cancelled && !order.restocked => order,
            _ => {
                storage.unrestocked.remove(&number)?;
                continue;
            }
        };
        let stock_here = order
            .lines
            .iter()
            .all(|line| owns(Role::Inventory, line.sku.as_str()));
        if !stock_here {
            recovered.cancels_left.push(order.number);
            continue;
        }
        for line in &order.lines {
            let mut level = storage.stock.get(&line.sku)?.unwrap_or_else(|| StockLevel {
                sku: line.sku.clone(),
                quantity: 0,
                pending: Default::default(),
            });
            if level.give_back(order.number, line.quantity, order.saga) {
                storage.put_stock(&level)?;
            }
        }
        order.restocked = true;
        storage.orders.put(&number, &order)?;
        storage.unrestocked.remove(&number)?;
        recovered.cancels_finished += 1;
    }
    for (sku, ()) in storage.pending_stock.scan(None, usize::MAX)? {
        let Some(mut level) = storage.stock.get(&sku)? else {
            storage.pending_stock.remove(&sku)?;
            continue;
        };
        for (number, change) in level.pending.clone() {
            if !owns(Role::Order, &number.to_string()) {
                continue;
            }
            let order = storage.orders.get(&number)?;
            match (change, order.as_ref().map(|o| o.status)) {
                (PendingChange::Reserved { .. }, None) => {
                    level.release(number, SagaId::last_of(u64::MAX));
                    recovered.reservations_released += 1;
                }
                (PendingChange::Returned(quantity), Some(OrderStatus::Placed) | None) => {
                    level.quantity = level.quantity.saturating_sub(quantity);
                    level.pending.remove(&number);
                    recovered.reservations_released += 1;
                }
                _ => {
                    let placer = order.map(|o| o.saga).unwrap_or_default();
                    level.settle(number, placer);
                    recovered.changes_settled += 1;
                }
            }
        }
        storage.put_stock(&level)?;
    }
    recovered.events_dropped = drop_orphan_events(storage)?;
    storage.flush_now()?;
    Ok(recovered)
}

/// Puts the order events the embedded broker acknowledged but the notification service has
/// not recorded, and that are not already waiting in the outbox, back into the outbox:
/// those in [`Storage::delivered`], or, for a data directory whose indexes were just built
/// (`every_order`: an older build kept no such list), those of every order. Returns how many.
pub fn republish_unrecorded(storage: &Storage, every_order: bool) -> Result<usize, StorageError> {
    let mut waiting: HashSet<Uuid> = storage
        .outbox
        .scan(None, usize::MAX)?
        .into_iter()
        .map(|(_, e)| e.event_id)
        .collect();
    let mut candidates = Vec::new();
    if every_order {
        for entry in storage.orders.entries_after(None) {
            let (_, order) = entry?;
            let order = order.read()?;
            candidates.push(OrderEvent::for_order(
                &order,
                EventType::OrderPlaced,
                now_ms(),
            ));
            if order.status == OrderStatus::Cancelled {
                let cancelled = EventType::OrderCancelled;
                candidates.push(OrderEvent::for_order(&order, cancelled, now_ms()));
            }
        }
    }
    let delivered = storage.delivered.scan(None, usize::MAX)?;
    candidates.extend(delivered.iter().map(|(_, event)| event.clone()));
    let mut republished = 0;
    for event in candidates {
        let recorded = matches!(
            notification::lookup(storage, &event.event_id.to_string())?,
            Some((_, true))
        );
        if !recorded && waiting.insert(event.event_id) {
            storage.put_event(&event, || Ok(()))?;
            republished += 1;
        }
    }
    // Each is recorded, or in the outbox again (and kept here once more when delivered).
    for (id, _) in delivered {
        storage.delivered.remove(&id)?;
    }
    storage.flush_now()?;
    Ok(republished)
}

/// Removes outbox events whose outcome is not in the orders tree. The event is written just
/// before its order (see `order::write_with_event`), so a crash between the two leaves one.
fn drop_orphan_events(storage: &Storage) -> Result<usize, StorageError> {
    let mut dropped = 0;
    for (key, event) in storage.outbox.scan(None, usize::MAX)? {
        let status = order_status(storage, &event.order_number)?;
        let written = match event.event_type {
            EventType::OrderPlaced => status.is_some(),
            EventType::OrderCancelled => status == Some(OrderStatus::Cancelled),
        };
        if !written {
            storage.outbox.remove(&key)?;
            dropped += 1;
        }
    }
    Ok(dropped)
}

fn order_status(
    storage: &Storage,
    number: &OrderNumber,
) -> Result<Option<OrderStatus>, StorageError> {
    Ok(storage.orders.get(number)?.map(|o| o.status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::domain::{Order, OrderLine, Price, Sku};
    use std::collections::BTreeMap;

    /// A single node owns every key.
    fn single(_: Role, _: &str) -> bool {
        true
    }

    fn stock(
        storage: &Storage,
        sku: &Sku,
        quantity: u32,
        pending: BTreeMap<OrderNumber, PendingChange>,
    ) {
        let level = StockLevel {
            sku: sku.clone(),
            quantity,
            pending,
        };
        storage.put_stock(&level).unwrap();
    }

    fn order(storage: &Storage, sku: &Sku, status: OrderStatus, restocked: bool) -> OrderNumber {
        let number = OrderNumber::new();
        let line = OrderLine {
            sku: sku.clone(),
            price: Price::from_cents(100).unwrap(),
            quantity: 2,
        };
        let order = Order {
            number,
            status,
            lines: vec![line],
            total: Price::from_cents(200).unwrap(),
            created_ms: 0,
            fingerprint: 0,
            restocked,
            saga: Default::default(),
        };
        if !restocked {
            storage.unrestocked.put(&number, &()).unwrap();
        }
        storage.orders.put(&number, &order).unwrap();
        number
    }

    fn reserved(quantity: u32) -> PendingChange {
        PendingChange::Reserved {
            quantity,
            saga: SagaId::default(),
        }
    }

    /// An empty database in a temporary directory (kept while the handle lives), and a SKU.
    fn fresh() -> (tempfile::TempDir, Storage, Sku) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path()).unwrap();
        (dir, storage, Sku::parse("a").unwrap())
    }

    #[tokio::test]
    async fn settles_every_kind_of_unfinished_change() {
        let (_dir, storage, sku) = fresh();
        let placed = order(&storage, &sku, OrderStatus::Placed, true);
        let half_cancelled = order(&storage, &sku, OrderStatus::Cancelled, false);
        let never_written = OrderNumber::new();
        // 10 available; `placed` holds 2 (sold), `never_written` holds 3 (must come back),
        // `half_cancelled` sold 2 earlier and must get them back.
        let pending = BTreeMap::from([(placed, reserved(2)), (never_written, reserved(3))]);
        stock(&storage, &sku, 10, pending);
        let recovered = recover(&storage, single).unwrap();
        assert_eq!(
            recovered,
            Recovered {
                cancels_finished: 1,
                reservations_released: 1,
                changes_settled: 2,
                events_dropped: 0,
                cancels_left: Vec::new(),
            }
        );
        let level: StockLevel = storage.stock.get(&sku).unwrap().unwrap();
        assert_eq!(level.quantity, 10 + 3 + 2);
        assert!(level.pending.is_empty());
        let finished: Order = storage.orders.get(&half_cancelled).unwrap().unwrap();
        assert!(finished.restocked);
        assert_eq!(
            recover(&storage, single).unwrap(),
            Recovered::default(),
            "recovery is idempotent"
        );
    }

    #[tokio::test]
    async fn drops_events_whose_order_a_crash_lost() {
        let (_dir, storage, sku) = fresh();
        let placed = order(&storage, &sku, OrderStatus::Placed, true);
        let placed: Order = storage.orders.get(&placed).unwrap().unwrap();
        let mut lost = placed.clone();
        lost.number = OrderNumber::new();
        let events = [
            OrderEvent::for_order(&placed, EventType::OrderPlaced, 0),
            OrderEvent::for_order(&placed, EventType::OrderCancelled, 0),
            OrderEvent::for_order(&lost, EventType::OrderPlaced, 0),
        ];
        for (i, event) in events.iter().enumerate() {
            storage.outbox.put(&(i as u64), event).unwrap();
        }
        let recovered = recover(&storage, single).unwrap();
        assert_eq!(
            recovered.events_dropped, 2,
            "the lost order and the lost cancel"
        );
        let kept = storage.outbox.scan(None, 10).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1.event_id, events[0].event_id);
    }

    #[tokio::test]
    async fn republishes_only_events_nobody_recorded() {
        let (_dir, storage, sku) = fresh();
        let recorded = order(&storage, &sku, OrderStatus::Placed, true);
        order(&storage, &sku, OrderStatus::Cancelled, true);
        let recorded: Order = storage.orders.get(&recorded).unwrap().unwrap();
        let event = OrderEvent::for_order(&recorded, EventType::OrderPlaced, 0);
        let id = event.event_id.to_string();
        storage.seen_events.put(&id, &7).unwrap();
        // Any record will do: lookup asks only whether one is there.
        storage.notifications::<String>().put(&7, &id).unwrap();
        assert_eq!(
            republish_unrecorded(&storage, true).unwrap(),
            2,
            "placed and cancelled of the other order"
        );
        assert_eq!(
            republish_unrecorded(&storage, true).unwrap(),
            0,
            "already waiting in the outbox"
        );
        // Later starts read only what the embedded broker delivered and nobody recorded.
        for (key, _) in storage.outbox.scan(None, 10).unwrap() {
            storage.event_delivered(key, true).unwrap();
        }
        storage.delivered.put(&id, &event).unwrap();
        assert_eq!(storage.delivered.len(), 3);
        assert_eq!(republish_unrecorded(&storage, false).unwrap(), 2);
        assert!(
            storage.delivered.is_empty(),
            "each is recorded or in the outbox again"
        );
        assert_eq!(storage.outbox.len(), 2);
    }
}
