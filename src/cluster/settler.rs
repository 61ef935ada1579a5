//! The settler: finishes on a live cluster what a node's death left half done across nodes.
//!
//! A stock actor's pending change for an order is normally settled by that order's saga; if
//! the saga's node died (in a static cluster: an order owned by another node; in a replicated
//! one: any order, since the saga may have run on a leader that is gone), or the settle was
//! lost, the change stays. Which changes this node looks after is [`Held`]. Every
//! sweep the settler lists such changes, and those still pending one sweep later (so sagas in
//! flight are left alone) are resolved by the order's owner (`ResolvePending`), which decides
//! from the order's durable outcome while no saga of that order runs. It also finishes the
//! cancels recovery found with their stock elsewhere (recovery could not reach it). Failures,
//! such as an owner that is down, are retried at the next sweep.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::layout::Layout;
use crate::actors::entity::Replicas;
use crate::actors::order::{CancelOrder, ResolvePending};
use crate::config::Role;
use crate::domain::{OrderNumber, Sku};
use crate::routing::Directory;
use crate::storage::{Storage, StorageError};

const SWEEP: Duration = Duration::from_secs(2);

/// Which pending changes of the stock stored here this node settles: `(sku, order)`.
pub type Held = Box<dyn Fn(&Sku, &OrderNumber) -> bool + Send + Sync>;

/// In a static cluster: changes for orders other nodes own.
pub fn foreign_orders(layout: Arc<Layout>) -> Held {
    Box::new(move |_, order| !layout.owns(Role::Order, &order.to_string()))
}

/// In a replicated cluster: every change of the stock partitions this node leads.
pub fn led_stock(replicas: Arc<dyn Replicas>) -> Held {
    Box::new(move |sku, _| replicas.leads(replicas.partition(sku.as_str())))
}

/// Runs the sweeps; `cancels` are the interrupted cancels recovery left to it.
pub fn start(
    directory: Directory,
    storage: Storage,
    held: Held,
    mut cancels: Vec<OrderNumber>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP);
        let mut seen: HashSet<(Sku, OrderNumber)> = HashSet::new();
        loop {
            tick.tick().await;
            let swept = sweep(&directory, &storage, &held, &mut seen, &mut cancels).await;
            if let Err(e) = swept {
                tracing::warn!(error = %e, "settler: cannot read storage");
            }
        }
    })
}

async fn sweep(
    directory: &Directory,
    storage: &Storage,
    held: &Held,
    seen: &mut HashSet<(Sku, OrderNumber)>,
    cancels: &mut Vec<OrderNumber>,
) -> Result<(), StorageError> {
    for number in std::mem::take(cancels) {
        if let Err(e) = directory.ask(number, CancelOrder {}).await {
            tracing::debug!(%number, error = %e, "settler: cancel not finished yet");
            cancels.push(number);
        }
    }

    let pending = held_pending(storage, held)?;
    for (sku, number) in pending.intersection(seen) {
        let resolve = ResolvePending { sku: sku.clone() };
        match directory.ask(*number, resolve).await {
            Ok(()) => tracing::info!(%number, %sku, "settler: resolved a pending change"),
            Err(e) => tracing::debug!(%number, %sku, error = %e, "settler: owner not reachable"),
        }
    }
    *seen = pending;
    Ok(())
}

/// The pending stock changes stored here that this node settles: of the stock the index names
/// (`Storage::pending_stock`), so a sweep reads the unsettled stock, not every SKU.
fn held_pending(
    storage: &Storage,
    held: &Held,
) -> Result<HashSet<(Sku, OrderNumber)>, StorageError> {
    let mut pending = HashSet::new();
    for (sku, ()) in storage.pending_stock.scan(None, usize::MAX)? {
        let Some(level) = storage.stock.get(&sku)? else {
            continue;
        };
        for number in level.pending.keys() {
            if held(&level.sku, number) {
                pending.insert((level.sku.clone(), *number));
            }
        }
    }
    Ok(pending)
}
