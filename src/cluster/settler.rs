//! The settler: finishes on a live cluster what a node's death left half done across nodes.
//!
//! A stock actor's pending change for an order owned by another node is normally settled by
//! that order's saga; if the saga's node died, or the settle was lost, the change stays. Every
//! sweep the settler lists such changes, and those still pending one sweep later (so sagas in
//! flight are left alone) are resolved by the order's owner (`ResolvePending`), which decides
//! from the order's durable outcome while no saga of that order runs. At start it also
//! finishes this node's cancels whose stock lives elsewhere (recovery could not). Failures,
//! such as an owner that is down, are retried at the next sweep.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::layout::Layout;
use crate::actors::order::{CancelOrder, ResolvePending};
use crate::actors::Directory;
use crate::config::Role;
use crate::domain::{Order, OrderNumber, OrderStatus, Sku, StockLevel};
use crate::storage::{self, Storage, StorageError};

const SWEEP: Duration = Duration::from_secs(2);

pub fn start(directory: Directory, storage: Storage, layout: Arc<Layout>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP);
        let mut seen: HashSet<(Sku, OrderNumber)> = HashSet::new();
        let mut cancels: Option<Vec<OrderNumber>> = None;
        loop {
            tick.tick().await;
            let swept = sweep(&directory, &storage, &layout, &mut seen, &mut cancels).await;
            if let Err(e) = swept {
                tracing::warn!(error = %e, "settler: cannot read storage");
            }
        }
    })
}

async fn sweep(
    directory: &Directory,
    storage: &Storage,
    layout: &Layout,
    seen: &mut HashSet<(Sku, OrderNumber)>,
    cancels: &mut Option<Vec<OrderNumber>>,
) -> Result<(), StorageError> {
    let unfinished = match cancels.take() {
        Some(numbers) => numbers,
        None => interrupted_cancels(storage)?,
    };
    let mut left = Vec::new();
    for number in unfinished {
        if let Err(e) = directory.ask(number, CancelOrder {}).await {
            tracing::debug!(%number, error = %e, "settler: cancel not finished yet");
            left.push(number);
        }
    }
    *cancels = Some(left);

    let pending = foreign_pending(storage, layout)?;
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

/// Stock changes held here for orders that other nodes own.
fn foreign_pending(
    storage: &Storage,
    layout: &Layout,
) -> Result<HashSet<(Sku, OrderNumber)>, StorageError> {
    let mut pending = HashSet::new();
    for (_, level) in storage::scan::<StockLevel>(&storage.stock, None, usize::MAX)? {
        for number in level.pending.keys() {
            if layout.owner(Role::Order, &number.to_string()) != Some(layout.node()) {
                pending.insert((level.sku.clone(), *number));
            }
        }
    }
    Ok(pending)
}

fn interrupted_cancels(storage: &Storage) -> Result<Vec<OrderNumber>, StorageError> {
    Ok(storage::scan::<Order>(&storage.orders, None, usize::MAX)?
        .into_iter()
        .filter(|(_, o)| o.status == OrderStatus::Cancelled && !o.restocked)
        .map(|(_, o)| o.number)
        .collect())
}
