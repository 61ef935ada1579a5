//! A built node at work: serves the gateway until told to stop (or until the root reports a
//! failure), then shuts down in order: stop accepting, finish requests in flight, stop the lease renewals
//! (cancelling this node's registrations) and the settler, leave the cluster, stop the actors
//! children first (orders before the stock and products they call), flush storage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::ActorCell;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::NOTIFICATION_GROUP;
use crate::actors::stop_children_first;
use crate::broker::EmbeddedBroker;
use crate::cluster::Cluster;
use crate::config::ServeConfig;
use crate::gateway::auth::Auth;
use crate::gateway::limit::RateLimit;
use crate::gateway::upstream::Upstream;
use crate::gateway::{self, GatewayCtx};
use crate::health::ComponentHealth;
use crate::metrics::Metrics;
use crate::registry::{self, Registry};
use crate::routing::Directory;
use crate::storage::Storage;

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for this node's registrations to be cancelled.
const LEASES_CANCEL_TIMEOUT: Duration = Duration::from_secs(2);

/// What a built node runs, and what its shutdown stops.
pub(super) struct Running {
    pub directory: Directory,
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub storage: Storage,
    pub root: ActorCell,
    pub cluster: Option<Cluster>,
    /// The lease renewals: they cancel this node's registrations when `stopping` turns true.
    pub leases: JoinHandle<()>,
    pub settler: Option<JoinHandle<()>>,
    /// Kept alive until the actors that use it have stopped.
    pub broker: Option<Arc<EmbeddedBroker>>,
    /// Failures of service actors, reported by the root supervisor.
    pub fatal: mpsc::UnboundedReceiver<String>,
    /// Turns true when the node begins to stop (the gateway ends endless responses then).
    pub stopping: (watch::Sender<bool>, watch::Receiver<bool>),
}

impl Running {
    /// Serves the gateway on `listener` in a task of its own, which shuts the node down when
    /// `stop` fires (`Ok`) or the root reports a failure nothing restarts (`Err`).
    pub fn serve(
        self,
        config: &ServeConfig,
        auth: Auth,
        upstream: Upstream,
        listener: TcpListener,
        stop: oneshot::Receiver<()>,
    ) -> JoinHandle<anyhow::Result<()>> {
        let Running {
            directory,
            registry,
            metrics,
            storage,
            root,
            cluster,
            leases,
            settler,
            broker,
            mut fatal,
            stopping: (stopping_tx, stopping),
        } = self;
        let probe_storage = storage.clone();
        let ctx = Arc::new(GatewayCtx {
            node: config.node.clone(),
            directory: directory.clone(),
            registry: registry.clone(),
            metrics,
            flush_stats: storage.stats.clone(),
            storage_probe: Box::new(move || match probe_storage.check() {
                Ok(()) => ComponentHealth::up("sled answers"),
                Err(e) => ComponentHealth::down(e.to_string()),
            }),
            request_timeout: config.request_timeout(),
            max_body_bytes: config.max_body_bytes,
            shutdown: stopping,
            fault_injection: config.fault_injection,
            roles: config.cluster.roles.clone(),
            auth,
            rate_limit: (config.security.rate_limit).map(|rate| {
                let security = &config.security;
                RateLimit::start(rate, security.rate_burst, security.trust_forwarded_for)
            }),
            upstream,
            console: gateway::console::Console::new(config.idle(), config.max_live_entities),
        });
        gateway::console::spawn_sampler(ctx.clone());
        let routes = gateway::routes(ctx, registry::routes(registry));
        tokio::spawn(async move {
            let (drain_tx, drain_rx) = oneshot::channel::<()>();
            let server = warp::serve(routes).incoming(listener).graceful(async move {
                let _ = drain_rx.await;
            });
            let server = tokio::spawn(server.run());
            let left = match &cluster {
                Some(cluster) => futures::future::Either::Left(cluster.left()),
                None => futures::future::Either::Right(std::future::pending()),
            };
            let failure = tokio::select! {
                _ = stop => None,
                reason = fatal.recv() => reason,
                _ = left => {
                    tracing::info!("left the cluster: stopping");
                    None
                }
            };
            let _ = stopping_tx.send(true);
            let _ = drain_tx.send(());
            if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
                tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
            }
            if tokio::time::timeout(LEASES_CANCEL_TIMEOUT, leases)
                .await
                .is_err()
            {
                tracing::warn!("the registrations were not cancelled in time");
            }
            if let Some(settler) = settler {
                settler.abort();
            }
            if let Some(cluster) = cluster {
                cluster.stop().await;
            }
            let services = [
                Some(directory.orders.supervisor().get_cell()),
                Some(directory.products.supervisor().get_cell()),
                Some(directory.stock.supervisor().get_cell()),
                directory.notification.as_ref().map(|n| n.get_cell()),
                Some(directory.notifier.get_cell()),
                Some(root),
            ];
            for cell in services.into_iter().flatten() {
                stop_children_first(cell).await;
            }
            storage.flush_now().context("final flush failed")?;
            drop(broker);
            tracing::info!("stopped");
            match failure {
                Some(reason) => Err(anyhow::anyhow!(reason)),
                None => Ok(()),
            }
        })
    }
}

/// The start-up printout: where each service of this node is.
pub(super) fn print_addresses(
    config: &ServeConfig,
    http_addr: SocketAddr,
    routes_loaded: usize,
    kafka_brokers: &str,
    embedded: bool,
) {
    println!("agora node {} is up", config.node);
    println!(
        "  gateway       http://{http_addr}/api  (/health, /health/live, /health/ready, /metrics)"
    );
    println!("  console       http://{http_addr}/console");
    println!("  registry      http://{http_addr}/eureka  (dashboard /eureka/web)");
    println!("  product       http://{http_addr}/api/product");
    println!("  inventory     http://{http_addr}/api/inventory");
    println!("  order         http://{http_addr}/api/order");
    println!("  notification  http://{http_addr}/api/notifications  (group {NOTIFICATION_GROUP})");
    if let Some(file) = &config.routes {
        println!(
            "  routes        http://{http_addr}/gateway/routes  ({} from {})",
            routes_loaded,
            file.display()
        );
    }
    let kind = if embedded {
        "embedded broker"
    } else {
        "external"
    };
    println!(
        "  kafka         {kafka_brokers}  ({kind}; topic {})",
        config.topic
    );
    println!("  storage       {}", config.data.display());
}
