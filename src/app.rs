//! Wiring: opens storage, runs crash recovery, starts (or connects to) Kafka, spawns the actor
//! tree under the root supervisor, serves the gateway, and shuts all of it down in order.
//!
//! Shutdown: stop accepting, finish requests in flight, stop the actors children first (orders
//! before the stock and products they call), flush storage.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::Actor;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::actors::entity::{spawn_supervisor, RestartPolicy, SupervisorArgs};
use crate::actors::notification::{spawn_notification, NotificationArgs};
use crate::actors::notifier::{spawn_notifier, NotifierArgs};
use crate::actors::order::OrderEntity;
use crate::actors::product::ProductEntity;
use crate::actors::root::Root;
use crate::actors::stock::Stock;
use crate::actors::{recovery, stop_children_first, Deps, Directory};
use crate::broker::EmbeddedBroker;
use crate::cluster::layout::Layout;
use crate::cluster::{settler, Cluster};
use crate::config::{Role, ServeConfig};
use crate::gateway::auth::Auth;
use crate::gateway::limit::RateLimit;
use crate::gateway::upstream::Upstream;
use crate::gateway::{self, GatewayCtx};
use crate::health::ComponentHealth;
use crate::metrics::Metrics;
use crate::registry::{self, LocalInstance, Registry, API_GATEWAY, NOTIFICATION_SERVICE};
use crate::storage::Storage;

/// The Kafka consumer group of the notification service, as in the original.
pub const NOTIFICATION_GROUP: &str = "notificationId";

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A running node.
pub struct App {
    pub http_addr: SocketAddr,
    pub kafka_brokers: String,
    /// Finds this node's service actors (for benchmarks and tests that skip HTTP).
    pub directory: Directory,
    /// The embedded broker, when no `--kafka-brokers` was given (tests take it down and up).
    broker: Option<Arc<EmbeddedBroker>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl App {
    /// The embedded Kafka broker, if this node started one.
    pub fn embedded_broker(&self) -> Option<Arc<EmbeddedBroker>> {
        self.broker.clone()
    }

    /// Stops gracefully and waits until everything is flushed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("the node's task panicked")?
    }

    /// Runs until `signal` resolves (then shuts down) or a service actor fails (an error).
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            _ = signal => self.shutdown().await,
            result = &mut self.task => result.context("the node's task panicked")?,
        }
    }
}

/// Starts a node as configured and prints where each service is.
pub async fn start(config: ServeConfig) -> anyhow::Result<App> {
    let auth = Auth::from_config(&config.security)?;
    let cluster_config = &config.cluster;
    let layout = Layout::new(
        &config.node,
        cluster_config.partitions,
        cluster_config.members.clone(),
        &cluster_config.roles,
    )
    .map_err(|e| anyhow::anyhow!("cluster layout: {e}"))?;
    let layout = Arc::new(layout);
    let upstream = Upstream::load(config.routes.as_deref())?;
    let storage = Storage::open(&config.data)?;
    storage.pin_layout(&layout.fingerprint())?;
    let mut recovered = recovery::recover(&storage, &layout).context("crash recovery failed")?;
    tracing::info!(?recovered, "recovery done");
    let (broker, kafka_brokers) = match &config.kafka_brokers {
        Some(brokers) => (None, brokers.clone()),
        None => {
            let republished =
                recovery::republish_unrecorded(&storage).context("cannot refill the outbox")?;
            tracing::info!(
                republished,
                "events the embedded broker lost are back in the outbox"
            );
            let broker = EmbeddedBroker::start(&config.topic)
                .context("cannot start the embedded Kafka broker")?;
            let servers = broker.bootstrap_servers();
            (Some(Arc::new(broker)), servers)
        }
    };
    let listener = tokio::net::TcpListener::bind(config.http)
        .await
        .with_context(|| format!("cannot listen on {}", config.http))?;
    let http_addr = listener.local_addr()?;
    let metrics = Arc::new(Metrics::new());
    let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
    let (root, _) = Actor::spawn(Some(format!("{}/root", config.node)), Root, fatal_tx)
        .await
        .context("cannot start the root supervisor")?;
    let root = root.get_cell();
    let registry = Registry::start(&config.node, config.lease(), root.clone()).await?;
    let mut cluster = match cluster_config.listen {
        Some(listen) => {
            let timeout = config.remote_timeout();
            let joined = Cluster::start(
                &layout,
                cluster_config,
                listen,
                &registry,
                timeout,
                root.clone(),
            );
            Some(joined.await?)
        }
        None if !layout.is_single() => anyhow::bail!("--members needs --cluster"),
        None => None,
    };
    let deps = Deps {
        node: config.node.clone(),
        storage: storage.clone(),
        directory: Directory {
            registry: registry.clone(),
            layout: layout.clone(),
            links: cluster.as_ref().map(Cluster::links),
            call_timeout: config.request_timeout(),
        },
        metrics: metrics.clone(),
    };
    let supervisor_args = || SupervisorArgs {
        deps: deps.clone(),
        policy: RestartPolicy {
            max_restarts: config.max_restarts,
            window: config.restart_window(),
        },
        idle: config.idle(),
        lease: config.lease(),
        http_addr,
    };
    let stock = spawn_supervisor::<Stock>(supervisor_args(), root.clone())
        .await?
        .get_cell();
    let product = spawn_supervisor::<ProductEntity>(supervisor_args(), root.clone())
        .await?
        .get_cell();
    let order = spawn_supervisor::<OrderEntity>(supervisor_args(), root.clone())
        .await?
        .get_cell();
    let notifier_args = NotifierArgs {
        storage: storage.clone(),
        brokers: kafka_brokers.clone(),
        topic: config.topic.clone(),
        metrics: metrics.clone(),
    };
    let notifier = spawn_notifier(
        format!("{}/notifier", config.node),
        notifier_args,
        root.clone(),
    )
    .await?
    .get_cell();
    let notification_args = NotificationArgs {
        storage: storage.clone(),
        brokers: kafka_brokers.clone(),
        topic: config.topic.clone(),
        group_id: NOTIFICATION_GROUP.into(),
        metrics: metrics.clone(),
    };
    let notification_name = format!("{}/notification", config.node);
    let mut own_services = vec![LocalInstance {
        app: API_GATEWAY,
        node: config.node.clone(),
        actor_name: format!("{}/gateway", config.node),
        http_addr,
    }];
    let notification = match config.runs(Role::Notification) {
        true => {
            own_services.push(LocalInstance {
                app: NOTIFICATION_SERVICE,
                node: config.node.clone(),
                actor_name: notification_name.clone(),
                http_addr,
            });
            let spawned = spawn_notification(notification_name, notification_args, root.clone());
            Some(spawned.await?.get_cell())
        }
        false => None,
    };
    let leases = keep_leases(registry.clone(), config.lease(), own_services).await?;
    let settler = match cluster.as_mut() {
        Some(cluster) => {
            let (directory, storage) = (deps.directory.clone(), storage.clone());
            cluster
                .open(directory.clone(), storage.clone(), root.clone())
                .await?;
            let cancels = std::mem::take(&mut recovered.cancels_left);
            Some(settler::start(directory, storage, layout.clone(), cancels))
        }
        None => None,
    };

    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let probe_storage = storage.clone();
    let ctx = Arc::new(GatewayCtx {
        node: config.node.clone(),
        directory: deps.directory.clone(),
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
        rate_limit: (config.security.rate_limit)
            .map(|rate| RateLimit::start(rate, config.security.rate_burst)),
        upstream,
    });
    let routes_loaded = ctx.upstream.route_count();
    let routes = gateway::routes(ctx, registry::routes(registry));

    println!("agora node {} is up", config.node);
    println!("  gateway       http://{http_addr}/api  (health /health, metrics /metrics)");
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
    let kind = if broker.is_some() {
        "embedded broker"
    } else {
        "external"
    };
    println!(
        "  kafka         {kafka_brokers}  ({kind}; topic {})",
        config.topic
    );
    println!("  storage       {}", config.data.display());

    let (stop, stop_rx) = oneshot::channel();
    let app_broker = broker.clone();
    let task = tokio::spawn(async move {
        let (drain_tx, drain_rx) = oneshot::channel::<()>();
        let server = warp::serve(routes).incoming(listener).graceful(async move {
            let _ = drain_rx.await;
        });
        let server = tokio::spawn(server.run());
        let fatal = wait_for_stop(stop_rx, fatal_rx).await;
        let _ = stopping_tx.send(true);
        let _ = drain_tx.send(());
        if tokio::time::timeout(DRAIN_TIMEOUT, server).await.is_err() {
            tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
        }
        leases.abort();
        if let Some(settler) = settler {
            settler.abort();
        }
        if let Some(cluster) = cluster {
            cluster.stop();
        }
        let services = [Some(order), Some(product), Some(stock), notification];
        for cell in services.into_iter().flatten().chain([notifier, root]) {
            stop_children_first(cell).await;
        }
        storage.flush_now().context("final flush failed")?;
        drop(broker);
        tracing::info!("stopped");
        match fatal {
            Some(reason) => Err(anyhow::anyhow!(reason)),
            None => Ok(()),
        }
    });
    Ok(App {
        http_addr,
        kafka_brokers,
        directory: deps.directory.clone(),
        broker: app_broker,
        stop,
        task,
    })
}

/// Waits for a stop request (`None`) or a fatal failure (its reason).
async fn wait_for_stop(
    stop: oneshot::Receiver<()>,
    mut fatal: mpsc::UnboundedReceiver<String>,
) -> Option<String> {
    tokio::select! {
        _ = stop => None,
        reason = fatal.recv() => reason,
    }
}

/// Registers services that are not entity supervisors and renews their leases.
async fn keep_leases(
    registry: Registry,
    lease: Duration,
    instances: Vec<LocalInstance>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut ids = Vec::new();
    for instance in &instances {
        ids.push(registry.register_local(instance.clone()).await?);
    }
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(200)));
        loop {
            tick.tick().await;
            for (instance, id) in instances.iter().zip(ids.iter_mut()) {
                registry.keep_registered(instance, id).await;
            }
        }
    }))
}
