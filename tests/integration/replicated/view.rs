//! Reading a node's `GET /cluster`: who is a member, who leads each partition at which term,
//! how far each is applied, and whether the cluster is whole.

use std::collections::{BTreeMap, BTreeSet};

use agora::cluster::layout::partition_of;
use serde_json::Value;

use super::shop::{PARTITIONS, REPLICAS};
use crate::integration::support::TestApp;

/// Partition → term.
pub type Terms = BTreeMap<u64, u64>;

/// `GET /cluster` on `app`, or why not.
pub async fn cluster_view(app: &TestApp) -> Result<Value, String> {
    read(app, "/cluster").await
}

/// The JSON body of `GET path` on `app`, or why not.
pub async fn read(app: &TestApp, path: &str) -> Result<Value, String> {
    let response = app.get(path).await;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {path} on {}: {status}", app.base));
    }
    let body = response.json().await;
    body.map_err(|e| format!("GET {path} on {}: {e}", app.base))
}

pub fn members(view: &Value) -> impl Iterator<Item = &Value> {
    view["members"].as_array().into_iter().flatten()
}

pub fn partitions(view: &Value) -> impl Iterator<Item = &Value> {
    view["partitions"].as_array().into_iter().flatten()
}

/// Exactly `expected` reachable members, and each of the `PARTITIONS` partitions with its
/// replicas (as many as placement wants) among them and a leader among its replicas.
pub fn whole(view: &Value, expected: &BTreeSet<&str>) -> Result<(), String> {
    let seer = &view["node"];
    let reachable = members(view).filter(|m| m["reachable"] == true);
    let names: BTreeSet<&str> = reachable.filter_map(|m| m["name"].as_str()).collect();
    if names != *expected {
        return Err(format!(
            "{seer} sees the reachable members {names:?}: {view}"
        ));
    }
    let count = partitions(view).count();
    if count != PARTITIONS {
        return Err(format!("{seer} lists {count} partitions, not {PARTITIONS}"));
    }
    let want = REPLICAS.min(expected.len());
    for partition in partitions(view) {
        let replicas = partition["replicas"].as_array().map_or(&[][..], |r| &r[..]);
        let replica_names: BTreeSet<&str> = replicas.iter().filter_map(Value::as_str).collect();
        let leader = partition["leader"].as_str();
        let learners = partition["learners"].as_array().map_or(0, Vec::len);
        if replicas.len() != want
            || learners != 0
            || !replica_names.is_subset(&names)
            || !leader.is_some_and(|l| replica_names.contains(l))
        {
            return Err(format!("{seer}: partition not whole yet: {partition}"));
        }
    }
    Ok(())
}

/// The partitions `node` leads in `view`, with their terms.
pub fn led_by(view: &Value, node: &str) -> Terms {
    partitions(view)
        .filter(|p| p["leader"] == node)
        .map(|p| (partition_number(p), term(p)))
        .collect()
}

/// Every partition with a leader, and none led by `gone`.
pub fn led_without(view: &Value, gone: &str) -> Result<(), String> {
    let count = partitions(view).count();
    let stale = partitions(view).find(|p| !p["leader"].is_string() || p["leader"] == gone);
    match stale {
        None if count == PARTITIONS => Ok(()),
        None => Err(format!("{} lists {count} partitions", view["node"])),
        Some(p) => Err(format!("{}: no live leader yet: {p}", view["node"])),
    }
}

/// SKUs whose stock lives in each partition, one per partition (placed as the server places
/// keys), for orders that write to every partition alike.
pub fn sku_per_partition() -> Vec<String> {
    let mut skus: Vec<Option<String>> = vec![None; PARTITIONS];
    for name in (0..).map(|i| format!("r-{i}")) {
        if !skus.contains(&None) {
            break;
        }
        let partition = partition_of(&name, PARTITIONS as u32) as usize;
        skus[partition].get_or_insert(name);
    }
    skus.into_iter().flatten().collect()
}

/// How far each partition in `view` is applied on the node that answered (0: not at all).
pub fn applied(view: &Value) -> BTreeMap<u64, u64> {
    let applied = |p: &Value| p["lastApplied"].as_u64().unwrap_or(0);
    partitions(view)
        .map(|p| (partition_number(p), applied(p)))
        .collect()
}

/// The term of each partition in `view`.
pub fn terms(view: &Value) -> Terms {
    partitions(view)
        .map(|p| (partition_number(p), term(p)))
        .collect()
}

pub fn partition_number(partition: &Value) -> u64 {
    let number = partition["partition"].as_u64();
    number.unwrap_or_else(|| panic!("a partition without its number: {partition}"))
}

fn term(partition: &Value) -> u64 {
    let term = partition["term"].as_u64();
    term.unwrap_or_else(|| panic!("a partition without its term: {partition}"))
}
