//! The steps that place a node: its layout, crash recovery (a node alone or in a static
//! cluster; a replicated one recovers from its raft logs instead), its raft groups in a
//! replicated cluster, and the cluster listener and links.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::actors::recovery::{self, Recovered};
use crate::cluster::layout::Layout;
use crate::cluster::raft::types::Member;
use crate::cluster::raft::{Groups, RaftSettings};
use crate::cluster::Cluster;
use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::service::Supervision;
use crate::storage::Storage;

/// Step: where this node sits in the cluster layout (alone, the whole layout).
pub(super) fn layout(config: &ServeConfig) -> anyhow::Result<Layout> {
    let cluster = &config.cluster;
    Layout::new(
        &config.node,
        cluster.partitions,
        cluster.members.clone(),
        &cluster.roles,
    )
    .map_err(|e| anyhow::anyhow!("cluster layout: {e}"))
}

/// Step: pins the data directory to its layout, and runs crash recovery unless the node is in
/// a replicated cluster (its state is what its raft logs applied; the settler finishes sagas).
pub(super) fn recover(
    config: &ServeConfig,
    storage: &Storage,
    layout: &Layout,
) -> anyhow::Result<Recovered> {
    if config.cluster.is_replicated() {
        let fingerprint = format!("replicated; partitions={}", config.cluster.partitions);
        storage.pin_layout(&fingerprint)?;
        return Ok(Recovered::default());
    }
    storage.pin_layout(&layout.fingerprint())?;
    let owns = |role, key: &str| layout.owns(role, key);
    let recovered = recovery::recover(storage, owns).context("crash recovery failed")?;
    tracing::info!(?recovered, "recovery done");
    Ok(recovered)
}

/// Step: in a replicated cluster, this node's raft groups (members yet to be decided).
pub(super) async fn replicate(
    config: &ServeConfig,
    storage: &Storage,
    http_addr: SocketAddr,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Option<Groups>> {
    let cluster = &config.cluster;
    let Some(listen) = cluster.listen.filter(|_| cluster.is_replicated()) else {
        return Ok(None);
    };
    let host = cluster
        .host
        .clone()
        .unwrap_or_else(|| listen.ip().to_string());
    let member = Member {
        name: config.node.clone(),
        cluster_addr: format!("{host}:{}", listen.port()),
        http_addr: http_addr.to_string(),
    };
    let settings = RaftSettings {
        partitions: cluster.partitions,
        replicas: cluster.replicas,
        snapshot_logs: cluster.snapshot_logs,
        replace_after: Duration::from_secs(cluster.replace_after_secs),
    };
    let groups = Groups::start(storage, member, settings, metrics.clone());
    Ok(Some(groups.await?))
}

/// Step: the cluster listener and links, when `--cluster` is given.
pub(super) async fn join_cluster(
    config: &ServeConfig,
    layout: &Arc<Layout>,
    groups: Option<Groups>,
    registry: &Registry,
    supervision: &Supervision,
) -> anyhow::Result<Option<Cluster>> {
    match config.cluster.listen {
        Some(listen) => {
            let timeout = config.remote_timeout();
            let joined = Cluster::start(
                layout.clone(),
                &config.cluster,
                listen,
                groups,
                registry,
                timeout,
                supervision,
            );
            Ok(Some(joined.await?))
        }
        None if !layout.is_single() => anyhow::bail!("--members needs --cluster"),
        None => Ok(None),
    }
}
