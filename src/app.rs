//! Start-up and shutdown of one node, in named steps (as in zero2prod): [`Node::build`] places
//! the node (`place`: its layout, storage and crash recovery, its raft groups in a replicated
//! cluster), starts (or connects to) Kafka, spawns the actor tree under the root supervisor
//! (each service actor under a service supervisor that restarts it) and builds the routing
//! [`Directory`] from its typed references, joins the cluster, registers the node's services
//! (one task renews every lease) and serves the gateway. [`Node::run_until_stopped`] runs it until a signal or a fatal failure
//! (storage, or a supervisor's bug); `run` shuts it down in order.

mod place;
mod run;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, ActorCell, ActorRef};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::actors::entity::Route;
use crate::actors::entity::{spawn_supervisor, Deps, Entity, Remote, Replicas, RestartPolicy};
use crate::actors::entity::{SupervisorArgs, SupervisorMsg};
use crate::actors::notification::{spawn_notification, NotificationArgs, NotificationMsg};
use crate::actors::notifier::{spawn_notifier, NotifierArgs, NotifierMsg};
use crate::actors::order::{OrderCalls, OrderEntity};
use crate::actors::product::ProductEntity;
use crate::actors::recovery;
use crate::actors::root::Root;
use crate::actors::stock::Stock;
use crate::broker::EmbeddedBroker;
use crate::cluster::settler;
use crate::config::{Role, ServeConfig};
use crate::gateway::auth::Auth;
use crate::gateway::upstream::Upstream;
use crate::health::ComponentHealth;
use crate::metrics::Metrics;
use crate::registry::{LocalInstance, Registry, API_GATEWAY, NOTIFICATION_SERVICE};
use crate::routing::Directory;
use crate::service::{self, ServicePolicy, ServiceSpec, Supervision};
use crate::storage::Storage;

/// The Kafka consumer group of the notification service, as in the original.
pub const NOTIFICATION_GROUP: &str = "notificationId";

/// A running node.
pub struct Node {
    pub http_addr: SocketAddr,
    pub kafka_brokers: String,
    /// This node's actors (for benchmarks and tests that skip HTTP).
    pub directory: Directory,
    /// The embedded broker, when no `--kafka-brokers` was given (tests take it down and up).
    broker: Option<Arc<EmbeddedBroker>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Kafka as this node uses it: the embedded broker it runs, if any, and the bootstrap servers.
struct Kafka {
    broker: Option<Arc<EmbeddedBroker>>,
    brokers: String,
}

impl Node {
    /// Starts a node as configured and prints where each service is.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Node> {
        let auth = Auth::from_config(&config.security)?
            .with_cluster_cookie(config.cluster.cookie.as_ref());
        let upstream = Upstream::load(config.routes.as_deref())?;
        let layout = Arc::new(place::layout(&config)?);
        let storage = Storage::open_with_cache(&config.data, config.cache_mb << 20)?;
        let upgraded = (storage.index_unsettled()).context("cannot index the unsettled records")?;
        let replicated = config.cluster.is_replicated();
        let mut recovered = place::recover(&config, &storage, &layout)?;
        let kafka = start_kafka(&config, &storage, replicated, upgraded)?;
        let listener = tokio::net::TcpListener::bind(config.http)
            .await
            .with_context(|| format!("cannot listen on {}", config.http))?;
        let http_addr = listener.local_addr()?;
        let (fatal_tx, fatal_rx) = mpsc::unbounded_channel();
        let (root, _) = Actor::spawn(
            Some(format!("{}/root", config.node)),
            Root,
            fatal_tx.clone(),
        )
        .await
        .context("cannot start the root supervisor")?;
        let root = root.get_cell();
        let metrics = Arc::new(Metrics::new());
        let supervision = Supervision {
            parent: root.clone(),
            policy: ServicePolicy::new(config.max_restarts, config.restart_window()),
            metrics: metrics.clone(),
        };
        let registry = Registry::start(&config.node, config.lease(), &supervision).await?;
        let groups = place::replicate(&config, &storage, http_addr, &metrics).await?;
        let replicas = (groups.clone()).map(|g| Arc::new(g) as Arc<dyn Replicas>);
        let joined = place::join_cluster(&config, &layout, groups.clone(), &registry, &supervision);
        let mut cluster = joined.await?;
        let remote = (cluster.as_ref()).map(|c| Arc::new(c.links()) as Arc<dyn Remote>);
        let actors = Actors {
            config: &config,
            storage: &storage,
            metrics: &metrics,
            remote,
            replicas: replicas.clone(),
            root: &root,
            supervision: &supervision,
        };
        let directory = actors.spawn(&kafka.brokers).await?;
        let (stopping_tx, stopping) = watch::channel(false);
        let instances = services(&config, http_addr);
        let leases = keep_leases(
            registry.clone(),
            config.lease(),
            instances,
            stopping.clone(),
        );
        let leases = leases.await?;
        let settler = match cluster.as_mut() {
            Some(cluster) => {
                let opened =
                    cluster.open(directory.clone(), registry.clone(), &supervision, fatal_tx);
                opened.await?;
                let cancels = std::mem::take(&mut recovered.cancels_left);
                let (directory, storage) = (directory.clone(), storage.clone());
                let held = match replicas {
                    Some(replicas) => settler::led_stock(replicas),
                    None => settler::foreign_orders(layout.clone()),
                };
                Some(settler::start(directory, storage, held, cancels))
            }
            None => None,
        };
        let running = run::Running {
            directory: directory.clone(),
            registry,
            metrics,
            storage,
            root,
            cluster,
            leases,
            settler,
            broker: kafka.broker.clone(),
            fatal: fatal_rx,
            stopping: (stopping_tx, stopping),
        };
        let embedded = kafka.broker.is_some();
        let routes = upstream.route_count();
        run::print_addresses(&config, http_addr, routes, &kafka.brokers, embedded);
        let (stop, stop_rx) = oneshot::channel();
        let task = running.serve(&config, auth, upstream, listener, stop_rx);
        Ok(Node {
            http_addr,
            kafka_brokers: kafka.brokers,
            directory,
            broker: kafka.broker,
            stop,
            task,
        })
    }

    /// The embedded Kafka broker, if this node started one.
    pub fn embedded_broker(&self) -> Option<Arc<EmbeddedBroker>> {
        self.broker.clone()
    }

    /// Stops gracefully and waits until everything is flushed.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("the node's task panicked")?
    }

    /// Runs until `signal` resolves (then shuts down) or the root supervisor reports a failure
    /// nothing restarts (storage, or a supervisor's bug): an error.
    pub async fn run_until_stopped(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::select! {
            _ = signal => self.shutdown().await,
            result = &mut self.task => result.context("the node's task panicked")?,
        }
    }
}

/// Step: the configured Kafka, or an embedded broker, refilling the outbox with what the
/// previous broker (in this process, so gone) had not delivered yet, from every order if the
/// data directory was `upgraded` from a build that kept no list of them. Not in a replicated
/// cluster, whose outbox only a partition's log writes: there an embedded broker's restart
/// loses what it had not handed to a consumer (run a real Kafka for a cluster).
fn start_kafka(
    config: &ServeConfig,
    storage: &Storage,
    replicated: bool,
    upgraded: bool,
) -> anyhow::Result<Kafka> {
    if let Some(brokers) = &config.kafka_brokers {
        return Ok(Kafka {
            broker: None,
            brokers: brokers.clone(),
        });
    }
    if !replicated {
        let republished = recovery::republish_unrecorded(storage, upgraded)
            .context("cannot refill the outbox")?;
        tracing::info!(
            republished,
            "events the embedded broker lost are back in the outbox"
        );
    }
    let broker =
        EmbeddedBroker::start(&config.topic).context("cannot start the embedded Kafka broker")?;
    Ok(Kafka {
        brokers: broker.bootstrap_servers(),
        broker: Some(Arc::new(broker)),
    })
}

/// Step: the actor tree. Each kind is spawned after the kinds it calls, and given their typed
/// routes: stock, then products (which seed stock), then the notifier and orders.
struct Actors<'a> {
    config: &'a ServeConfig,
    storage: &'a Storage,
    metrics: &'a Arc<Metrics>,
    remote: Option<Arc<dyn Remote>>,
    /// Where entities write in a replicated cluster.
    replicas: Option<Arc<dyn Replicas>>,
    /// The entity supervisors' parent.
    root: &'a ActorCell,
    /// Where the notifier and the notification service run.
    supervision: &'a Supervision,
}

impl Actors<'_> {
    async fn spawn(&self, brokers: &str) -> anyhow::Result<Directory> {
        let config = self.config;
        let stock = self.supervise::<Stock>(()).await?;
        let products = self.supervise::<ProductEntity>(stock.clone()).await?;
        let notifier = self.notifier(brokers).await?;
        let calls = OrderCalls {
            products: products.clone(),
            stock: stock.clone(),
            notifier: notifier.clone(),
        };
        let orders = self.supervise::<OrderEntity>(calls).await?;
        let notification = match config.runs(Role::Notification) {
            true => Some(self.notification(brokers).await?),
            false => None,
        };
        Ok(Directory {
            node: config.node.clone(),
            products,
            stock,
            orders,
            notifier,
            notification,
            storage: self.storage.clone(),
            remote: self.remote.clone(),
            replicas: self.replicas.clone(),
            call_timeout: config.request_timeout(),
        })
    }

    /// The notifier, under a service supervisor that restarts it with a new producer.
    async fn notifier(&self, brokers: &str) -> anyhow::Result<ActorRef<NotifierMsg>> {
        let (storage, metrics) = (self.storage.clone(), self.metrics.clone());
        let (brokers, topic) = (brokers.to_owned(), self.config.topic.clone());
        let replicas = self.replicas.clone();
        let keep_delivered = self.config.kafka_brokers.is_none();
        let spawn = move |name, supervisor| {
            let args = NotifierArgs {
                storage: storage.clone(),
                brokers: brokers.clone(),
                topic: topic.clone(),
                metrics: metrics.clone(),
                replicas: replicas.clone(),
                keep_delivered,
            };
            spawn_notifier(name, args, supervisor)
        };
        let escalated = |message, reason: &str| {
            if let NotifierMsg::Health(reply) = message {
                let _ = reply.send(ComponentHealth::down(reason));
            }
        };
        self.service("notifier", service::child(spawn), escalated)
            .await
    }

    /// The notification service, under a service supervisor that restarts it with a new
    /// consumer.
    async fn notification(&self, brokers: &str) -> anyhow::Result<ActorRef<NotificationMsg>> {
        let (storage, metrics) = (self.storage.clone(), self.metrics.clone());
        let (brokers, topic) = (brokers.to_owned(), self.config.topic.clone());
        let replicas = self.replicas.clone();
        let spawn = move |name, supervisor| {
            let args = NotificationArgs {
                storage: storage.clone(),
                brokers: brokers.clone(),
                topic: topic.clone(),
                group_id: NOTIFICATION_GROUP.into(),
                metrics: metrics.clone(),
                replicas: replicas.clone(),
            };
            spawn_notification(name, args, supervisor)
        };
        let escalated = |message, reason: &str| {
            if let NotificationMsg::Health(reply) = message {
                let _ = reply.send(ComponentHealth::down(reason));
            }
        };
        self.service("notification", service::child(spawn), escalated)
            .await
    }

    /// Spawns service `service` (actor `{node}/{service}`) under its service supervisor; an
    /// escalated one answers its health probe DOWN with the reason.
    async fn service<M: ractor::Message>(
        &self,
        service: &'static str,
        spawn: service::SpawnChild<M>,
        escalated: fn(M, &str),
    ) -> anyhow::Result<ActorRef<M>> {
        let name = format!("{}/{service}", self.config.node);
        let spec = ServiceSpec {
            service,
            name,
            spawn,
            escalated,
        };
        self.supervision.spawn(spec).await
    }

    /// Spawns the supervisor of kind `E`, whose entities call `calls`, and its route.
    async fn supervise<E: Entity>(&self, calls: E::Calls) -> anyhow::Result<Route<E>> {
        let args = SupervisorArgs::<E> {
            node: self.config.node.clone(),
            deps: Deps::new(
                self.storage.clone(),
                self.metrics.clone(),
                calls,
                self.replicas.clone(),
            ),
            policy: RestartPolicy {
                max_restarts: self.config.max_restarts,
                window: self.config.restart_window(),
            },
            idle: self.config.idle(),
            max_live: usize::try_from(self.config.max_live_entities).unwrap_or(usize::MAX),
        };
        let supervisor: ractor::ActorRef<SupervisorMsg<E>> =
            spawn_supervisor(args, self.root.clone()).await?;
        let timeout = self.config.request_timeout();
        Ok(Route::new(supervisor, self.remote.clone(), timeout))
    }
}

/// The registry apps this node serves: the gateway, each entity kind, and the notification
/// service where it runs.
fn services(config: &ServeConfig, http_addr: SocketAddr) -> Vec<LocalInstance> {
    let mut apps = vec![
        API_GATEWAY,
        ProductEntity::SERVICE,
        Stock::SERVICE,
        OrderEntity::SERVICE,
    ];
    if config.runs(Role::Notification) {
        apps.push(NOTIFICATION_SERVICE);
    }
    let instance = |app| LocalInstance {
        app,
        node: config.node.clone(),
        http_addr,
    };
    apps.into_iter().map(instance).collect()
}

/// Step: registers this node's services and renews all their leases from one task, which
/// cancels them once the node begins to stop.
async fn keep_leases(
    registry: Registry,
    lease: Duration,
    instances: Vec<LocalInstance>,
    mut stopping: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut ids = Vec::new();
    for instance in &instances {
        ids.push(registry.register_local(instance.clone()).await?);
    }
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval((lease / 3).max(Duration::from_millis(200)));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.wait_for(|stopping| *stopping) => break,
            }
            for (instance, id) in instances.iter().zip(ids.iter_mut()) {
                registry.keep_registered(instance, id).await;
            }
        }
        for (instance, id) in instances.iter().zip(&ids) {
            let _ = registry.cancel(instance.app, id).await;
        }
    }))
}
