//! `GET /cluster`: the replicated cluster as this node sees it (members, and per partition its
//! leader, replicas and progress); `POST /cluster/leave`: this node hands its replicas to the
//! others and stops (the cluster cookie as the basic password, checked by `auth`); and the
//! cluster part of `/health` in a replicated cluster:
//! how many partitions this node leads and follows, and which have no leader or fewer
//! replicas than placement wants.

use std::sync::Arc;

use serde::Serialize;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::{ApiError, ErrorBody};
use super::filters::{call, json_response, serve, Call};
use super::GatewayCtx;
use crate::actors::entity::{ClusterView, Remote};
use crate::error::ShopError;
use crate::health::ComponentHealth;

pub fn routes(ctx: Arc<GatewayCtx>) -> BoxedFilter<(Response,)> {
    let view = (warp::path!("cluster")
        .and(warp::get())
        .and(call(ctx.clone())))
    .then(|c| serve(c, "/cluster", describe));
    let leave = (warp::path!("cluster" / "leave")
        .and(warp::post())
        .and(call(ctx)))
    .then(|c| serve(c, "/cluster/leave", leave));
    view.or(leave).unify().boxed()
}

/// The answer to `POST /cluster/leave`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Leaving {
    pub node: String,
    /// False when this node was asked to leave before.
    pub started: bool,
    pub detail: &'static str,
}

/// Starts moving this node's replicas and leaderships to the other members; the node stops
/// (exit status 0) once every partition is led by the others without it. Progress is in its
/// log and in the others' `GET /cluster`.
#[utoipa::path(post, path = "/cluster/leave", responses(
    (status = 202, description = "Leaving: the node stops once the others hold every partition", body = Leaving),
    (status = 401, description = "The cluster cookie is not the basic password", body = ErrorBody),
    (status = 404, description = "This node is not in a replicated cluster", body = ErrorBody),
))]
async fn leave(call: Call) -> Result<Response, ApiError> {
    let started = replicated(&call, |remote| remote.leave())?;
    let body = Leaving {
        node: call.ctx.node.clone(),
        started,
        detail: "moving this node's replicas to the other members; it stops once they hold every partition",
    };
    Ok(json_response(StatusCode::ACCEPTED, &body))
}

/// Members, partitions, leaders and replicas of a replicated cluster.
#[utoipa::path(get, path = "/cluster", responses(
    (status = 200, description = "The cluster as this node sees it", body = ClusterView),
    (status = 404, description = "This node is not in a replicated cluster", body = ErrorBody),
))]
async fn describe(call: Call) -> Result<Response, ApiError> {
    let view = replicated(&call, |remote| remote.describe())?;
    Ok(json_response(StatusCode::OK, &view))
}

/// What `ask` gets of the replicated cluster, or 404 when this node is in none.
fn replicated<T>(call: &Call, ask: impl FnOnce(&dyn Remote) -> Option<T>) -> Result<T, ShopError> {
    (call.ctx.directory.remote.as_deref())
        .and_then(ask)
        .ok_or_else(|| ShopError::NotFound("a replicated cluster (this node has none)".into()))
}

/// The cluster component of `/health` in a replicated cluster, and whether this node is ready:
/// once it is a member. A partition without a leader (an election under way) degrades health
/// but not readiness: the node serves every other partition, and an election on one node's
/// death must not take every node out of a load balancer at once.
pub fn health(view: &ClusterView) -> (ComponentHealth, bool) {
    let me = &view.node;
    let member = view.members.iter().any(|m| &m.name == me);
    let want = view.replicas_wanted;
    let leads = (view.partitions.iter())
        .filter(|p| p.leader.as_ref() == Some(me))
        .count();
    let follows = (view.partitions.iter())
        .filter(|p| p.leader.as_ref() != Some(me) && p.replicas.contains(me))
        .count();
    let leaderless: Vec<u32> = (view.partitions.iter())
        .filter(|p| p.leader.is_none())
        .map(|p| p.partition)
        .collect();
    let under: Vec<u32> = (view.partitions.iter())
        .filter(|p| p.replicas.len() < want)
        .map(|p| p.partition)
        .collect();
    let unreachable: Vec<&str> = (view.members.iter())
        .filter(|m| !m.reachable)
        .map(|m| m.name.as_str())
        .collect();
    let mut detail = format!(
        "{} members; leads {leads} and follows {follows} of {} partitions",
        view.members.len(),
        view.partitions.len()
    );
    if !unreachable.is_empty() {
        detail += &format!("; unreachable: {}", unreachable.join(", "));
    }
    if !under.is_empty() {
        detail += &format!("; under-replicated partitions: {under:?}");
    }
    if !member {
        return (
            ComponentHealth::down("not a member of the cluster yet"),
            false,
        );
    }
    if !leaderless.is_empty() {
        detail += &format!("; partitions without a leader: {leaderless:?}");
        return (ComponentHealth::degraded(detail), true);
    }
    match under.is_empty() && unreachable.is_empty() {
        true => (ComponentHealth::up(detail), true),
        false => (ComponentHealth::degraded(detail), true),
    }
}
