//! Operations routes: `GET /health` (status per component: storage, kafka, registry, actors,
//! cluster), its probes `GET /health/live` (the process answers) and `GET /health/ready` (this
//! node can serve its keys), all three with the same body ([`report`]) and each deciding its own
//! status; `GET /metrics` (Prometheus text), and, only when fault injection is on, the test
//! hook `POST /_test/panic/{kind}/{key}` that makes an entity actor panic.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use ractor::{ActorRef, RpcReplyPort};
use serde::Serialize;
use utoipa::ToSchema;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};
use warp::Filter;

use super::error::ApiError;
use super::filters::{call, json_response, serve, Call};
use super::GatewayCtx;
use crate::actors::call as call_actor;
use crate::actors::entity::SupervisorMsg;
use crate::actors::notification::NotificationMsg;
use crate::actors::notifier::NotifierMsg;
use crate::actors::order::OrderEntity;
use crate::actors::product::ProductEntity;
use crate::actors::stock::Stock;
use crate::config::Role;
use crate::domain::{OrderNumber, ProductId, Sku};
use crate::error::ShopError;
use crate::health::{ComponentHealth, Status};
use crate::routing::{Directory, Routed};

/// How long `/health` waits for each component.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn routes(ctx: Arc<GatewayCtx>) -> BoxedFilter<(Response,)> {
    let health = warp::path!("health")
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|c| serve(c, "/health", health));
    let live = warp::path!("health" / "live")
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|c| serve(c, "/health/live", live));
    let ready = warp::path!("health" / "ready")
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|c| serve(c, "/health/ready", ready));
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|c| serve(c, "/metrics", metrics));
    let routes = (health.or(live).unify().or(ready).unify())
        .or(metrics)
        .unify();
    if !ctx.fault_injection {
        return routes.boxed();
    }
    let panic = warp::path!("_test" / "panic" / String / String)
        .and(warp::post())
        .and(call(ctx))
        .then(|kind, key, c| serve(c, "/_test/panic", move |c| inject_panic(c, kind, key)));
    routes.or(panic).unify().boxed()
}

async fn probe<M: ractor::Message>(
    actor: &ActorRef<M>,
    make: impl FnOnce(RpcReplyPort<ComponentHealth>) -> M,
) -> ComponentHealth {
    (call_actor(actor, make, PROBE_TIMEOUT).await)
        .unwrap_or_else(|e| ComponentHealth::down(e.to_string()))
}

/// The health of this node's supervisor of kind `E` (its detail counts its live actors).
pub(super) async fn supervisor_health<E: Routed>(ctx: &GatewayCtx) -> ComponentHealth {
    probe(
        ctx.directory.route::<E>().supervisor(),
        SupervisorMsg::Health,
    )
    .await
}

/// The answer of `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct HealthJson {
    /// The worst of the components' statuses.
    pub status: Status,
    pub node: String,
    pub components: Components,
}

#[derive(Serialize, ToSchema)]
pub struct Components {
    pub storage: ComponentHealth,
    /// The notifier and the notification service.
    pub kafka: ComponentHealth,
    pub registry: ComponentHealth,
    /// The product, stock and order supervisors.
    pub actors: ComponentHealth,
    /// The other members of the cluster and whether each is reachable.
    pub cluster: ComponentHealth,
}

/// The worst of `parts`, with their details joined.
fn worst(parts: &[&ComponentHealth]) -> ComponentHealth {
    let rank = |s: Status| match s {
        Status::Up => 0,
        Status::Degraded => 1,
        Status::Down => 2,
    };
    let status = parts
        .iter()
        .map(|p| p.status)
        .max_by_key(|s| rank(*s))
        .unwrap_or(Status::Up);
    let detail = parts
        .iter()
        .map(|p| p.detail.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    ComponentHealth { status, detail }
}

/// What the health routes answer: the body, and whether this node can serve its keys.
struct Report {
    body: HealthJson,
    /// Storage up, the entity supervisors answering, and every other member that owns
    /// partitions reachable.
    ready: bool,
}

impl Report {
    /// The body, with 200 when `ok` and 503 otherwise.
    fn answer(&self, ok: bool) -> Response {
        let code = match ok {
            true => StatusCode::OK,
            false => StatusCode::SERVICE_UNAVAILABLE,
        };
        json_response(code, &self.body)
    }
}

/// The status of each component; 503 when one is DOWN.
#[utoipa::path(get, path = "/health", responses(
    (status = 200, description = "UP or DEGRADED", body = HealthJson),
    (status = 503, description = "A component is DOWN", body = HealthJson),
))]
async fn health(call: Call) -> Result<Response, ApiError> {
    let report = report(&call.ctx).await;
    Ok(report.answer(report.body.status != Status::Down))
}

/// Liveness: 200 whenever the process answers, with the body of `/health`.
#[utoipa::path(get, path = "/health/live", responses(
    (status = 200, description = "The process answers", body = HealthJson),
))]
async fn live(call: Call) -> Result<Response, ApiError> {
    Ok(report(&call.ctx).await.answer(true))
}

/// Readiness: 200 when this node can serve its keys (storage up, the entity supervisors
/// answering, every other member that owns partitions reachable), with the body of `/health`.
#[utoipa::path(get, path = "/health/ready", responses(
    (status = 200, description = "This node can serve its keys", body = HealthJson),
    (status = 503, description = "Storage, an entity supervisor or a partition owner is not available", body = HealthJson),
))]
async fn ready(call: Call) -> Result<Response, ApiError> {
    let report = report(&call.ctx).await;
    Ok(report.answer(report.ready))
}

/// The body of `GET /health`, for the console.
pub(super) async fn health_body(ctx: &GatewayCtx) -> HealthJson {
    report(ctx).await.body
}

/// Asks every component for its health (the actors at once, each within [`PROBE_TIMEOUT`]).
async fn report(ctx: &GatewayCtx) -> Report {
    let notification = async {
        match &ctx.directory.notification {
            Some(service) => probe(service, NotificationMsg::Health).await,
            None => ComponentHealth::up("the notification service runs on other nodes"),
        }
    };
    let registry = async {
        match tokio::time::timeout(PROBE_TIMEOUT, ctx.registry.answers()).await {
            Ok(Ok(())) => {
                let summary = ctx.registry.summary();
                ComponentHealth::up(format!(
                    "{} apps, {} instances up, {} down",
                    summary.apps, summary.instances_up, summary.instances_down
                ))
            }
            Ok(Err(e)) => ComponentHealth::down(format!("{e:#}")),
            Err(_) => ComponentHealth::down("the registry actor did not answer in time"),
        }
    };
    let (notifier, notification, product, stock, order, registry) = tokio::join!(
        probe(&ctx.directory.notifier, NotifierMsg::Health),
        notification,
        supervisor_health::<ProductEntity>(ctx),
        supervisor_health::<Stock>(ctx),
        supervisor_health::<OrderEntity>(ctx),
        registry,
    );
    let components = Components {
        storage: (ctx.storage_probe)(),
        kafka: worst(&[&notifier, &notification]),
        registry,
        actors: worst(&[&product, &stock, &order]),
        cluster: cluster_health(&ctx.directory),
    };
    let replicated = (ctx.directory.remote.as_ref()).and_then(|remote| remote.describe());
    let (cluster, cluster_ready) = match replicated {
        Some(view) => super::cluster::health(&view),
        None => (components.cluster.clone(), owners_reachable(&ctx.directory)),
    };
    let components = Components {
        cluster,
        ..components
    };
    let ready = components.storage.status == Status::Up
        && components.actors.status != Status::Down
        && cluster_ready;
    let overall = worst(&[
        &components.storage,
        &components.kafka,
        &components.registry,
        &components.actors,
        &components.cluster,
    ])
    .status;
    let body = HealthJson {
        status: overall,
        node: ctx.node.clone(),
        components,
    };
    Report { body, ready }
}

/// Whether every other member that owns partitions is reachable (true on a single node).
fn owners_reachable(directory: &Directory) -> bool {
    let (Some(remote), Some(peers)) = (&directory.remote, directory.peers()) else {
        return true;
    };
    let owners: BTreeSet<String> = (Role::ENTITIES.iter())
        .flat_map(|role| remote.members_with(*role))
        .collect();
    (peers.iter()).all(|(node, up)| *up || !owners.contains(node))
}

/// The other members and whether each is reachable; DEGRADED while one is not (its keys
/// answer 503, the rest are served).
fn cluster_health(directory: &Directory) -> ComponentHealth {
    let Some(peers) = directory.peers() else {
        return ComponentHealth::up("single node");
    };
    let detail = peers
        .iter()
        .map(|(node, up)| format!("{node} {}", if *up { "reachable" } else { "unreachable" }))
        .collect::<Vec<_>>()
        .join(", ");
    match peers.iter().all(|(_, up)| *up) {
        true => ComponentHealth::up(detail),
        false => ComponentHealth::degraded(detail),
    }
}

/// Counters and histograms in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text", content_type = "text/plain", body = String),
))]
async fn metrics(call: Call) -> Result<Response, ApiError> {
    let text = call.ctx.metrics.render(&call.ctx.flush_stats);
    let reply = warp::reply::with_header(
        text,
        "content-type",
        "text/plain; version=0.0.4; charset=utf-8",
    );
    Ok(reply.into_response())
}

async fn inject_panic(call: Call, kind: String, key: String) -> Result<Response, ApiError> {
    fn send<E: Routed>(call: &Call, key: E::Key) -> Result<(), ApiError> {
        (call.ctx.directory.route::<E>().supervisor())
            .cast(SupervisorMsg::InjectPanic { key })
            .map_err(|e| ShopError::Unavailable(e.to_string()))?;
        Ok(())
    }
    match kind.as_str() {
        "product" => send::<ProductEntity>(&call, ProductId::parse(&key)?)?,
        "stock" => send::<Stock>(&call, Sku::parse(&key)?)?,
        "order" => send::<OrderEntity>(&call, OrderNumber::parse(&key)?)?,
        _ => return Err(ApiError::RouteNotFound),
    }
    Ok(StatusCode::ACCEPTED.into_response())
}
