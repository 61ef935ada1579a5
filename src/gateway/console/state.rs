//! State: the JSON behind the console (`GET /console/state`), and how it is gathered. The live
//! figures (health per component, totals, entities, the cluster, the registry) are read when
//! the state is asked for; the charts come from the sampler's [`History`]. `page.rs` renders
//! the same state into the HTML, and the page's script renders it again on every poll.
//!
//! It talks to the health probes of `ops` (the same answers as `/health`), the node's metrics,
//! the routing layer's view of the cluster, and the registry. Nothing in it is a secret: no
//! credential, cookie or configuration value is read.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use utoipa::ToSchema;

use super::history::{label_sum, ClusterEvent, History, RouteSample};
use super::peers::Lags;
use crate::actors::entity::{ClusterView, PartitionView};
use crate::actors::order::OrderEntity;
use crate::actors::product::ProductEntity;
use crate::actors::stock::Stock;
use crate::gateway::ops::{health_body, supervisor_health, HealthJson};
use crate::gateway::GatewayCtx;
use crate::health::{ComponentHealth, Status};
use crate::registry::{InstanceRow, RegistryStatus};

/// Everything the console shows.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsoleState {
    pub node: String,
    /// When this state was read, in ms since the epoch: the page shows its age.
    pub generated_at_ms: u64,
    pub uptime_secs: u64,
    pub health: HealthJson,
    pub shop: Shop,
    pub series: Series,
    /// Routes with requests in the last five minutes, busiest first (the console's own left out).
    pub routes: Vec<RouteStats>,
    pub entities: Entities,
    /// `None` on a single node.
    pub cluster: Option<ClusterPanel>,
    pub registry: RegistryPanel,
}

/// Totals since this node started.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shop {
    /// Orders placed by this node's order actors.
    pub orders_placed: u64,
    /// Orders refused (out of stock, unknown SKU, price changed, failed).
    pub orders_refused: u64,
    pub orders_cancelled: u64,
    /// Events waiting in this node's outbox for Kafka.
    pub outbox_depth: i64,
    pub kafka_delivered: u64,
    pub kafka_failed: u64,
    pub notifications_received: u64,
}

/// One value per second over the last five minutes, oldest first, all of the same length.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    pub at_ms: Vec<u64>,
    pub orders: Vec<u64>,
    pub outbox_depth: Vec<i64>,
    pub kafka_delivered: Vec<u64>,
    pub kafka_failed: Vec<u64>,
    pub notifications: Vec<u64>,
}

/// One route over the last five minutes.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStats {
    pub route: String,
    pub requests: u64,
    /// Answers with a 5xx status.
    pub errors: u64,
    /// `errors / requests`.
    pub error_rate: f64,
    /// Interpolated from the latency histogram's buckets, in ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Per second, aligned with [`Series::at_ms`].
    pub requests_per_sec: Vec<u64>,
    pub errors_per_sec: Vec<u64>,
    pub p50_per_sec: Vec<Option<f64>>,
    pub p99_per_sec: Vec<Option<f64>>,
}

/// Live entity actors per kind on this node.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entities {
    /// An actor idle this long is passivated.
    pub idle_secs: u64,
    /// The live-entity limit of each kind (`--max-live-entities`).
    pub limit: u64,
    pub kinds: Vec<EntityKind>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EntityKind {
    pub kind: String,
    /// Live actors, as the supervisor reports them; `None` when it did not answer.
    pub live: Option<u64>,
    pub health: ComponentHealth,
    pub restarts: u64,
    /// Actors passivated since start (idle, or not worth keeping in memory).
    pub passivations: u64,
    pub escalations: u64,
}

/// The cluster as this node sees it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPanel {
    /// `replicated` (raft partitions) or `static` (a fixed member list).
    pub mode: String,
    pub members: Vec<Member>,
    pub replicas_wanted: usize,
    pub partitions: Vec<Partition>,
    /// Recent leader changes and membership events, newest last.
    pub events: Vec<ClusterEvent>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    pub name: String,
    /// `UP` when reachable from this node, `DOWN` otherwise.
    pub state: Status,
    pub http_addr: Option<String>,
    /// Whether this is the node serving the page.
    pub this_node: bool,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Partition {
    /// As `GET /cluster` lists it (`last_applied`: what this node applied).
    #[serde(flatten)]
    pub view: PartitionView,
    /// Per replica, how many log entries it applied fewer than the leader (as last asked).
    pub lag: BTreeMap<String, u64>,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryPanel {
    /// Where the registry's own page is.
    pub dashboard: String,
    pub status: RegistryStatus,
    pub instances: Vec<InstanceRow>,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Gathers the state now.
pub async fn gather(ctx: &GatewayCtx) -> ConsoleState {
    let (health, entities) = tokio::join!(health_body(ctx), entities(ctx));
    let console = &ctx.console;
    if let Ok(mut viewed) = console.viewed.lock() {
        *viewed = Some(std::time::Instant::now());
    }
    let view = (ctx.directory.remote.as_ref()).and_then(|remote| remote.describe());
    let (series, routes, events) = {
        let history = console.history.lock().unwrap_or_else(|e| e.into_inner());
        let events = history.events.iter().cloned().collect();
        (series(&history), routes(&history), events)
    };
    let lags = console.lags.lock().map(|l| l.clone()).unwrap_or_default();
    let cluster = cluster(ctx, view, events, &lags);
    let metrics = &ctx.metrics;
    let orders = |outcome| label_sum(&metrics.orders, "outcome", outcome);
    let (placed, cancelled) = (orders(Some("placed")), orders(Some("cancelled")));
    let shop = Shop {
        orders_placed: placed,
        orders_refused: orders(None).saturating_sub(placed + cancelled),
        orders_cancelled: cancelled,
        outbox_depth: metrics.outbox_depth.get(),
        kafka_delivered: metrics.kafka_delivered.get(),
        kafka_failed: metrics.kafka_delivery_errors.get(),
        notifications_received: metrics.notifications_received.get(),
    };
    ConsoleState {
        node: ctx.node.clone(),
        generated_at_ms: now_ms(),
        uptime_secs: console.started.elapsed().as_secs(),
        health,
        shop,
        series,
        routes,
        entities,
        cluster,
        registry: RegistryPanel {
            dashboard: "/eureka/web".into(),
            status: ctx.registry.status(),
            instances: ctx.registry.instances(),
        },
    }
}

async fn entities(ctx: &GatewayCtx) -> Entities {
    let (product, stock, order) = tokio::join!(
        supervisor_health::<ProductEntity>(ctx),
        supervisor_health::<Stock>(ctx),
        supervisor_health::<OrderEntity>(ctx),
    );
    let kinds = [("product", product), ("stock", stock), ("order", order)]
        .into_iter()
        .map(|(kind, health)| EntityKind {
            kind: kind.to_owned(),
            // The supervisor says "{n} {kind} actors"; it exposes no count of its own.
            live: (health.status != Status::Down)
                .then(|| health.detail.split(' ').next()?.parse().ok())
                .flatten(),
            restarts: label_sum(&ctx.metrics.actor_restarts, "kind", Some(kind)),
            passivations: label_sum(&ctx.metrics.actor_passivations, "kind", Some(kind)),
            escalations: label_sum(&ctx.metrics.actor_escalations, "kind", Some(kind)),
            health,
        })
        .collect();
    Entities {
        idle_secs: ctx.console.idle.as_secs(),
        limit: ctx.console.max_live,
        kinds,
    }
}

fn series(history: &History) -> Series {
    let column = |f: fn(&super::history::Sample) -> u64| history.samples.iter().map(f).collect();
    Series {
        at_ms: column(|s| s.at_ms),
        orders: column(|s| s.orders),
        outbox_depth: history.samples.iter().map(|s| s.outbox_depth).collect(),
        kafka_delivered: column(|s| s.kafka_delivered),
        kafka_failed: column(|s| s.kafka_failed),
        notifications: column(|s| s.notifications),
    }
}

fn routes(history: &History) -> Vec<RouteStats> {
    let mut names: Vec<&String> = (history.samples.iter())
        .flat_map(|s| s.routes.keys())
        .collect();
    names.sort();
    names.dedup();
    let idle = RouteSample::default();
    let mut stats: Vec<RouteStats> = (names.into_iter())
        .map(|route| {
            let per_sec: Vec<&RouteSample> = (history.samples.iter())
                .map(|s| s.routes.get(route).unwrap_or(&idle))
                .collect();
            let mut buckets = vec![0u64; history.bounds.len()];
            for sample in &per_sec {
                for (i, n) in sample.buckets.iter().enumerate() {
                    if let Some(total) = buckets.get_mut(i) {
                        *total += n;
                    }
                }
            }
            let requests: u64 = per_sec.iter().map(|s| s.requests).sum();
            let errors: u64 = per_sec.iter().map(|s| s.errors).sum();
            let quantile = |q| per_sec.iter().map(move |s| history.quantile(&s.buckets, q));
            RouteStats {
                route: route.clone(),
                requests,
                errors,
                error_rate: errors as f64 / requests.max(1) as f64,
                p50_ms: history.quantile(&buckets, 0.5),
                p99_ms: history.quantile(&buckets, 0.99),
                requests_per_sec: per_sec.iter().map(|s| s.requests).collect(),
                errors_per_sec: per_sec.iter().map(|s| s.errors).collect(),
                p50_per_sec: quantile(0.5).collect(),
                p99_per_sec: quantile(0.99).collect(),
            }
        })
        .filter(|r| r.requests > 0)
        .collect();
    stats.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.route.cmp(&b.route)));
    stats
}

/// The cluster panel: the replicated view when there is one, else the static members.
fn cluster(
    ctx: &GatewayCtx,
    view: Option<ClusterView>,
    events: Vec<ClusterEvent>,
    lags: &Lags,
) -> Option<ClusterPanel> {
    let state = |up: bool| if up { Status::Up } else { Status::Down };
    if let Some(view) = view {
        let mut members: Vec<Member> = (view.members.iter())
            .map(|m| Member {
                name: m.name.clone(),
                state: state(m.reachable || m.name == view.node),
                http_addr: Some(m.http_addr.clone()),
                this_node: m.name == view.node,
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        let partitions = (view.partitions.into_iter())
            .map(|view| Partition {
                lag: lags.get(&view.partition).cloned().unwrap_or_default(),
                view,
            })
            .collect();
        return Some(ClusterPanel {
            mode: "replicated".into(),
            members,
            replicas_wanted: view.replicas_wanted,
            partitions,
            events,
        });
    }
    let peers = ctx.directory.peers()?;
    let me = Member {
        name: ctx.node.clone(),
        state: Status::Up,
        http_addr: None,
        this_node: true,
    };
    let others = peers.into_iter().map(|(name, up)| Member {
        name,
        state: state(up),
        http_addr: None,
        this_node: false,
    });
    Some(ClusterPanel {
        mode: "static".into(),
        members: std::iter::once(me).chain(others).collect(),
        replicas_wanted: 1,
        partitions: Vec::new(),
        events,
    })
}
