//! The checks of a history: pure functions of its operations and the final state (see
//! `history.rs`), so synthetic histories test them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::{number, Final, Op, Outcome};
use crate::integration::support::{notification_counts, sold};

/// Which check found an anomaly: an answer no order may get; an acknowledged order not
/// listed, a refused one listed, one listed twice, one listed that no client sent; stock and
/// units sold not adding up to the initial stock, stock below zero; an order's `OrderPlaced`
/// missing, one of an order not listed, an event twice; a read outside the bounds the orders
/// around it set, a read higher than one that ended before it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(super) enum Check {
    Answer,
    Lost,
    RefusedListed,
    Repeated,
    Phantom,
    Stock,
    Oversold,
    MissingEvent,
    UnlistedEvent,
    RepeatedEvent,
    Read,
    Monotonic,
}

impl Check {
    /// Whether a later look may not find it: the final state is read in three requests, and
    /// an order whose outcome is unknown may still complete (and send its event) meanwhile.
    pub(super) fn settles(self) -> bool {
        matches!(
            self,
            Check::Stock | Check::MissingEvent | Check::UnlistedEvent
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct Anomaly {
    pub(super) check: Check,
    pub(super) detail: String,
}

/// Adds to `found` an anomaly of `check`, its detail as `format!` makes it.
macro_rules! say {
    ($found:expr, $check:ident, $($detail:tt)+) => {
        $found.push(Anomaly { check: Check::$check, detail: format!($($detail)+) })
    };
}

/// Every anomaly of `ops` against `state`, the stock having started at `initial` (no cancels
/// nor restocks: stock only goes down). Every order must have gone through the history.
pub(super) fn check(ops: &[Op], initial: &BTreeMap<String, u64>, state: &Final) -> Vec<Anomaly> {
    let mut found = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Outcome::Unexpected(answer) = &op.outcome {
            say!(found, Answer, "op {i} through {}: {answer}", op.node);
        }
    }
    let mut listed: BTreeMap<&str, usize> = BTreeMap::new();
    for order in state.orders.iter().filter_map(number) {
        *listed.entry(order).or_default() += 1;
    }
    for (order, times) in listed.iter().filter(|(_, times)| **times > 1) {
        say!(found, Repeated, "{order} listed {times} times");
    }
    let sent = ops.iter().filter_map(|o| Some((o.number.as_deref()?, o)));
    let sent: BTreeMap<&str, &Op> = sent.collect();
    for (order, op) in &sent {
        match (&op.outcome, listed.contains_key(order)) {
            (Outcome::Placed, false) => say!(found, Lost, "{op}"),
            (Outcome::Refused, true) => say!(found, RefusedListed, "{op}"),
            _ => {}
        }
    }
    for order in listed.keys().filter(|order| !sent.contains_key(*order)) {
        say!(found, Phantom, "{order} listed, never sent");
    }
    let sold = sold(&state.orders);
    for (sku, &start) in initial {
        let units = sold.get(sku).copied().unwrap_or(0);
        match state.stock.get(sku) {
            Some(&left) if left < 0 => say!(found, Oversold, "{sku}: {left} in stock"),
            Some(&left) if left as u64 + units == start => {}
            left => say!(found, Stock, "{sku}: {left:?} + {units} sold ≠ {start}"),
        }
    }
    let counts = notification_counts(&state.notifications);
    for ((order, event), times) in &counts {
        if *times > 1 {
            say!(
                found,
                RepeatedEvent,
                "{event} of {order} came {times} times"
            );
        }
        if event == "OrderPlaced" && !listed.contains_key(order.as_str()) {
            say!(found, UnlistedEvent, "OrderPlaced of {order}");
        }
    }
    for order in listed.keys() {
        if !counts.contains_key(&(order.to_string(), "OrderPlaced".to_owned())) {
            say!(found, MissingEvent, "no OrderPlaced of {order} (yet)");
        }
    }
    let listed: BTreeSet<&str> = listed.into_keys().collect();
    check_reads(ops, initial, &listed, &mut found);
    found
}

/// Reads of a stock that only goes down, against the listed orders: a read R of v no higher
/// than the initial stock less the orders acknowledged before R started, and no lower than it
/// less every listed order that started before R ended and every unlisted order of unknown
/// outcome (503, no answer) that did (its saga may hold a reservation until it is released);
/// and no read higher than one that ended before it started, but for such releases.
/// (Necessary for linearizability, if not sufficient.) Sorted times per SKU answer each bound
/// with a binary search, so a soak's history of 10⁴ operations checks in milliseconds.
fn check_reads(
    ops: &[Op],
    initial: &BTreeMap<String, u64>,
    listed: &BTreeSet<&str>,
    found: &mut Vec<Anomaly>,
) {
    let kept = |o: &Op| o.number.as_deref().is_some_and(|n| listed.contains(n));
    let mut bounds: BTreeMap<&str, Bounds> = BTreeMap::new();
    let mut reads: BTreeMap<&str, Vec<(usize, &Op, i64)>> = BTreeMap::new();
    for (i, op) in ops.iter().enumerate() {
        let of_sku = bounds.entry(op.sku.as_str()).or_default();
        match &op.outcome {
            Outcome::Stock(value) => reads.entry(&op.sku).or_default().push((i, op, *value)),
            _ if op.number.is_none() => {}
            outcome if kept(op) => {
                of_sku.kept_starts.push(op.start);
                if *outcome == Outcome::Placed {
                    of_sku.placed_ends.push(op.end);
                }
            }
            Outcome::Unavailable | Outcome::Indeterminate(_) => {
                of_sku.unknown_starts.push(op.start)
            }
            _ => {}
        }
    }
    for of_sku in bounds.values_mut() {
        of_sku.kept_starts.sort();
        of_sku.placed_ends.sort();
        of_sku.unknown_starts.sort();
    }
    for (sku, reads) in reads {
        let Some(&start) = initial.get(sku) else {
            continue;
        };
        let of_sku = &bounds[sku];
        // The reads by end, each with the least value a later read may see (its value plus the
        // releases that may follow it), and the least of those up to each.
        let mut by_end: Vec<(Duration, i64, usize, i64)> = reads
            .iter()
            .map(|&(j, r, v)| (r.end, v + of_sku.held(r.end), j, v))
            .collect();
        by_end.sort();
        let mut least: Vec<(i64, usize, i64)> = Vec::with_capacity(by_end.len());
        for &(_, floor, j, v) in &by_end {
            match least.last() {
                Some(&(min, ..)) if min <= floor => least.push(least[least.len() - 1]),
                _ => least.push((floor, j, v)),
            }
        }
        for &(i, read, value) in &reads {
            let high = start as i64 - of_sku.placed_before(read.start);
            let maybe = of_sku.kept_before(read.end) + of_sku.held(read.end);
            let low = (start as i64 - maybe).max(0);
            if !(low..=high).contains(&value) {
                say!(found, Read, "op {i}, {read}: not in {low}..={high}");
            }
            let earlier = by_end.partition_point(|e| e.0 < read.start);
            if let Some(&(floor, j, v)) = earlier.checked_sub(1).map(|n| &least[n]) {
                if value > floor {
                    say!(found, Monotonic, "op {i}, {read}: op {j} saw {v} before");
                }
            }
        }
    }
}

/// The orders of one SKU that bound its reads, each list sorted.
#[derive(Default)]
struct Bounds {
    /// When each listed order started.
    kept_starts: Vec<Duration>,
    /// When each listed order acknowledged (201) ended.
    placed_ends: Vec<Duration>,
    /// When each unlisted order of unknown outcome started.
    unknown_starts: Vec<Duration>,
}

impl Bounds {
    fn placed_before(&self, at: Duration) -> i64 {
        before(&self.placed_ends, at)
    }

    fn kept_before(&self, at: Duration) -> i64 {
        before(&self.kept_starts, at)
    }

    /// Unlisted orders of unknown outcome started before `at`: each may hold a reservation
    /// until it is released.
    fn held(&self, at: Duration) -> i64 {
        before(&self.unknown_starts, at)
    }
}

/// How many of the sorted `times` are before `at`.
fn before(times: &[Duration], at: Duration) -> i64 {
    times.partition_point(|t| *t < at) as i64
}
