//! Registry: agora's service registry in the role of Netflix Eureka.
//!
//! This node's services register through [`Registry::register_local`] and renew their leases;
//! external Eureka clients (Spring, py-eureka-client, eureka-js-client) use the REST API under
//! `/eureka` served by [`routes`], and people look at the dashboard at `/eureka/web`. The gateway
//! balances its `lb://` routes over [`Registry::up_instances`] and shows [`Registry::summary`]
//! on `/health`; the cluster's links read which nodes are UP. It is not how actors are found:
//! that is the routing layer's typed directory.
//!
//! One actor (`actor.rs`) owns the state in memory, as Eureka's is; it publishes immutable
//! snapshots (`snapshot.rs`) that queries read without a round trip. It runs under a service
//! supervisor (`crate::service`), which restarts it when it fails: its in-memory state is lost
//! then, and comes back as Eureka's does after a restart: external clients and this node's own
//! lease task register again when a renewal answers 404 (until then the published snapshot
//! lacks them).

mod actor;
mod dashboard;
mod instance;
mod replication;
mod routes;
mod snapshot;
mod status;
#[cfg(test)]
mod tests;
mod tree;
mod wire;
mod xml;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use ractor::rpc::CallResult;
use ractor::{ActorRef, RpcReplyPort};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;

use self::actor::{Key, RegistryActor, RegistryArgs, RegistryMsg};
use self::instance::{Instance, Status};
use self::snapshot::{Record, Snapshot};
use crate::service::{self, ServiceSpec, Supervision};

pub use self::dashboard::escape as escape_html;
pub use self::replication::Replication;
pub use self::routes::{routes, RegistryApi};
pub use self::status::{InstanceRow, RegistryStatus};

pub const PRODUCT_SERVICE: &str = "PRODUCT-SERVICE";
pub const INVENTORY_SERVICE: &str = "INVENTORY-SERVICE";
pub const ORDER_SERVICE: &str = "ORDER-SERVICE";
pub const NOTIFICATION_SERVICE: &str = "NOTIFICATION-SERVICE";
pub const API_GATEWAY: &str = "API-GATEWAY";

/// How long a caller waits for the registry actor before giving up.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One of this node's own services, as it registers.
#[derive(Debug, Clone)]
pub struct LocalInstance {
    pub app: &'static str,
    pub node: String,
    pub http_addr: SocketAddr,
}

/// What /health shows of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrySummary {
    pub instances_up: usize,
    /// Every instance not UP: DOWN (also by an expired lease), OUT_OF_SERVICE, STARTING, UNKNOWN.
    pub instances_down: usize,
    pub apps: usize,
}

/// A handle on the registry actor and its latest snapshot; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    actor: ActorRef<RegistryMsg>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Lease duration of this node's own instances.
    lease: Duration,
    /// Where changes are replicated to, given again to a restarted actor.
    replication: Arc<Mutex<Option<UnboundedSender<Replication>>>>,
}

impl Registry {
    /// Spawns the registry actor (named `format!("{node}/registry")`) under a service
    /// supervisor of `supervision`. `lease` is the lease duration of this node's own instances;
    /// external clients' leases come from their `leaseInfo.durationInSecs` (default 90 s). It
    /// checks leases on a timer of lease/4 clamped to 1 s..=30 s and marks an instance whose lease
    /// expired DOWN. A restarted actor starts empty but publishes to the same snapshot and
    /// replicates to the same sink.
    pub async fn start(
        node: &str,
        lease: Duration,
        supervision: &Supervision,
    ) -> anyhow::Result<Registry> {
        let (publish, snapshot) = watch::channel(Arc::new(Snapshot::default()));
        let tick = (lease / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let replication = Arc::new(Mutex::new(None));
        let name = format!("{node}/registry");
        let started_ms = snapshot::now_millis();
        let (node, sink) = (node.to_owned(), replication.clone());
        let registry = service::actor(move || {
            let args = RegistryArgs {
                node: node.clone(),
                tick,
                publish: publish.clone(),
                started_ms,
            };
            (RegistryActor, args)
        });
        let spawn = move |name, supervisor| {
            let (registry, sink) = (registry.clone(), sink.lock().ok().and_then(|s| s.clone()));
            async move {
                let actor = registry(name, supervisor).await?;
                if let Some(sink) = sink {
                    let _ = actor.cast(RegistryMsg::ReplicateTo(sink));
                }
                Ok(actor)
            }
        };
        let spec = ServiceSpec {
            service: "registry",
            name,
            spawn: service::child(spawn),
            escalated: service::drop_message,
        };
        Ok(Registry {
            actor: supervision.spawn(spec).await?,
            snapshot,
            lease,
            replication,
        })
    }

    /// Registers one of this node's services (status UP, metadata {"node": node}, instanceId
    /// `format!("{node}:{app lowercased}")`, hostName/ipAddr/port from http_addr, vipAddress =
    /// app lowercased). Returns the instance id.
    pub async fn register_local(&self, local: LocalInstance) -> anyhow::Result<String> {
        let vip = local.app.to_ascii_lowercase();
        let id = format!("{}:{vip}", local.node);
        let ip = local.http_addr.ip().to_string();
        let mut instance = Instance::new(local.app, &id, &ip, &ip);
        instance.port.number = u64::from(local.http_addr.port());
        instance.lease_info.duration_in_secs = self.lease.as_secs().max(1);
        // The node renews every lease/3 (`app.rs`), which the renews threshold counts on.
        instance.lease_info.renewal_interval_in_secs = (self.lease.as_secs() / 3).max(1);
        instance.metadata = BTreeMap::from([("node".to_owned(), local.node)]);
        let base = format!("http://{}/", local.http_addr);
        instance.home_page_url = base.clone();
        instance.status_page_url = format!("{base}eureka/web");
        instance.health_check_url = format!("{base}health");
        instance.secure_vip_address = vip.clone();
        instance.vip_address = vip;
        self.register(instance, self.lease)
            .await
            .with_context(|| format!("registering {id}"))?;
        Ok(id)
    }

    /// Renews a lease; Ok(false) if the instance is unknown or its lease had expired (then the
    /// caller registers again, as Eureka clients do on a 404).
    pub async fn renew(&self, app: &str, instance_id: &str) -> anyhow::Result<bool> {
        let key = Key::new(app, instance_id);
        self.ask(|reply| RegistryMsg::Renew { key, reply }).await
    }

    /// Keeps one of this node's services registered: renews its lease, or registers it again
    /// (updating `id`) when the registry no longer knows it, as Eureka clients do on a 404.
    pub async fn keep_registered(&self, instance: &LocalInstance, id: &mut String) {
        if self.renew(instance.app, id).await.unwrap_or(false) {
            return;
        }
        match self.register_local(instance.clone()).await {
            Ok(new_id) => *id = new_id,
            Err(e) => {
                tracing::warn!(service = instance.app, error = %e, "cannot register with the registry")
            }
        }
    }

    /// Whether the registry actor serves: an error when it does not answer (for instance when
    /// its supervisor escalated it after repeated failures).
    pub async fn answers(&self) -> anyhow::Result<()> {
        self.ask(RegistryMsg::Ping).await
    }

    /// Marks an instance DOWN-and-removed at shutdown (Eureka cancel).
    pub async fn cancel(&self, app: &str, instance_id: &str) -> anyhow::Result<bool> {
        let key = Key::new(app, instance_id);
        self.ask(|reply| RegistryMsg::Cancel { key, reply }).await
    }

    /// Every node with an instance, each with whether one of them is UP: its heartbeats (lease
    /// renewals) are arriving.
    pub fn nodes(&self) -> BTreeMap<String, bool> {
        up_by_node(self.snapshot().records())
    }

    /// Whether `node` has an UP instance.
    pub fn node_up(&self, node: &str) -> bool {
        self.nodes().get(node) == Some(&true)
    }

    /// The nodes with an instance of `app`, each with whether one of them is UP.
    pub fn nodes_of(&self, app: &str) -> BTreeMap<String, bool> {
        let snapshot = self.snapshot();
        let records = snapshot.apps.get(&app.to_ascii_uppercase());
        up_by_node(records.into_iter().flat_map(|a| a.values()))
    }

    /// Sends every change made on this node to `sink` from now on (also after a restart).
    pub fn replicate_to(&self, sink: UnboundedSender<Replication>) {
        if let Ok(mut kept) = self.replication.lock() {
            *kept = Some(sink.clone());
        }
        let _ = self.actor.cast(RegistryMsg::ReplicateTo(sink));
    }

    /// Applies a change a peer made.
    pub fn apply_replicated(&self, change: Replication) {
        let _ = self.actor.cast(RegistryMsg::Replicated(change));
    }

    /// From the latest snapshot: the address (IP, else host name) and port of every UP instance
    /// of `app` (any case) with its port enabled, in instance-id order. The gateway's `lb://`
    /// routes balance over these.
    pub fn up_instances(&self, app: &str) -> Vec<(String, u16)> {
        self.snapshot().up_addresses(app)
    }

    pub fn summary(&self) -> RegistrySummary {
        let snapshot = self.snapshot();
        let instances_up = snapshot
            .records()
            .filter(|r| r.info.status == Status::Up)
            .count();
        RegistrySummary {
            instances_up,
            instances_down: snapshot.records().count() - instances_up,
            apps: snapshot.apps.len(),
        }
    }

    /// Eureka's status block: uptime, lease expiration, renews, self-preservation, replicas.
    pub fn status(&self) -> RegistryStatus {
        let replicating = self.replication.lock().is_ok_and(|r| r.is_some());
        self.snapshot().status(replicating)
    }

    /// Every registered instance, by app and instance id.
    pub fn instances(&self) -> Vec<InstanceRow> {
        self.snapshot().instance_rows()
    }

    /// The latest published snapshot.
    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.snapshot.borrow())
    }

    async fn register(&self, instance: Instance, lease: Duration) -> anyhow::Result<()> {
        self.ask(|reply| RegistryMsg::Register {
            instance: Box::new(instance),
            lease,
            reply,
        })
        .await
    }

    /// Sends the request `request` builds and waits for the reply.
    async fn ask<T: Send + 'static>(
        &self,
        request: impl FnOnce(RpcReplyPort<T>) -> RegistryMsg,
    ) -> anyhow::Result<T> {
        let sent = self.actor.call(request, Some(CALL_TIMEOUT)).await;
        match sent.map_err(|e| anyhow::anyhow!("the registry actor is not running: {e}"))? {
            CallResult::Success(value) => Ok(value),
            CallResult::Timeout => {
                bail!("the registry actor did not answer within {CALL_TIMEOUT:?}")
            }
            CallResult::SenderError => bail!("the registry actor dropped the request"),
        }
    }
}

/// The nodes named in `records`' metadata, each with whether one of its records is UP.
fn up_by_node<'a>(records: impl Iterator<Item = &'a Arc<Record>>) -> BTreeMap<String, bool> {
    let mut nodes = BTreeMap::new();
    for record in records {
        if let Some(node) = record.info.metadata.get("node") {
            *nodes.entry(node.clone()).or_insert(false) |= record.info.status == Status::Up;
        }
    }
    nodes
}
