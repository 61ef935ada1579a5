//! The HTTP gateway (warp): turns requests into actor messages and replies into JSON.
//!
//! Routes live per resource (`product`, `inventory`, `order`, `notification`, `ops`, `cluster`,
//! and `console`, the operator's page); the
//! registry contributes `/eureka`, and `openapi` describes all of them at `/openapi.json`. After
//! all of them come the configured routes of `--routes` (`upstream`: `GET /gateway/routes`, then
//! requests forwarded to other services). Before any route, `filters::admit` applies the rate
//! limit (`limit`) and authentication (`auth`). Every route goes through `filters::serve`
//! (request id, timeout, metrics, JSON errors); requests refused before routing or taken by no
//! route are answered here with a JSON 401/429/404/405. CORS wraps all of it, refusals
//! included, so a browser on another origin can read every answer. The gateway reaches actors through the
//! routing layer ([`Directory`]) and never touches sled.

pub mod auth;
pub mod cluster;
pub mod console;
pub mod error;
pub mod filters;
pub mod inventory;
pub mod limit;
pub mod notification;
pub mod openapi;
pub mod ops;
pub mod order;
pub mod product;
pub mod upstream;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warp::filters::path::FullPath;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, Method};
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::actors::entity::{EntityRequest, KeyOf};
use crate::config::Role;
use crate::health::ComponentHealth;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::routing::{Directory, Routed};
use crate::storage::FlushStats;
use error::ApiError;
use limit::Allowance;

/// What every handler can reach.
pub struct GatewayCtx {
    pub node: String,
    pub directory: Directory,
    /// For `/health`'s summary and the nodes that run the notification service.
    pub registry: Registry,
    pub metrics: Arc<Metrics>,
    pub flush_stats: Arc<FlushStats>,
    /// Checks that storage answers (the gateway itself never reads data from sled).
    pub storage_probe: Box<dyn Fn() -> ComponentHealth + Send + Sync>,
    pub request_timeout: Duration,
    pub max_body_bytes: u64,
    /// Turns true when the node begins to shut down: endless responses (server-sent events)
    /// end then, so draining in-flight requests finishes.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Whether the test-only fault hook `POST /_test/panic/{kind}/{key}` exists.
    pub fault_injection: bool,
    /// What this node runs; without the gateway role it serves no `/api` routes (ops and
    /// registry routes always).
    pub roles: Vec<Role>,
    /// Who may call what (no checks when nothing is configured).
    pub auth: auth::Auth,
    /// The per-client rate limit, if any.
    pub rate_limit: Option<limit::RateLimit>,
    /// The configured routes (`--routes`), tried after every built-in route.
    pub upstream: upstream::Upstream,
    /// The operator console's history and settings.
    pub console: console::Console,
}

impl GatewayCtx {
    /// Sends `request` to the entity `key`, on whichever node owns it, and waits for its reply.
    pub async fn ask<R>(&self, key: KeyOf<R>, request: R) -> Result<R::Response, ApiError>
    where
        R: EntityRequest,
        R::Entity: Routed,
    {
        Ok(self.directory.ask(key, request).await?)
    }
}

/// All routes behind [`filters::admit`], JSON answers for requests refused or taken by no
/// route, and CORS around every answer.
pub fn routes(
    ctx: Arc<GatewayCtx>,
    registry: BoxedFilter<(Response,)>,
) -> BoxedFilter<(Response,)> {
    let cors = warp::cors()
        .allow_any_origin()
        .allow_methods(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
        .allow_headers([
            "content-type",
            "authorization",
            "idempotency-key",
            "x-request-id",
        ])
        .expose_headers([
            "location",
            "x-request-id",
            "x-next-cursor",
            "retry-after",
            "www-authenticate",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-partial-results",
        ]);
    let shop = product::routes(ctx.clone())
        .or(inventory::routes(ctx.clone()))
        .unify()
        .or(order::routes(ctx.clone()))
        .unify()
        .or(notification::routes(ctx.clone()))
        .unify();
    let serves_api = ctx.roles.contains(&Role::Gateway);
    let shop = warp::any()
        .and_then(move || async move {
            match serves_api {
                true => Ok(()),
                false => Err(warp::reject::not_found()),
            }
        })
        .untuple_one()
        .and(shop);
    let api = shop
        .or(ops::routes(ctx.clone()))
        .unify()
        .or(cluster::routes(ctx.clone()))
        .unify()
        .or(console::routes(ctx.clone()))
        .unify()
        .or(openapi::routes(ctx.clone()))
        .unify()
        .or(registry)
        .unify()
        .or(upstream::routes(ctx.clone()))
        .unify();
    let admitted = filters::admit(ctx.clone())
        .and(answered(ctx.clone(), api))
        .map(|allowance: Option<Allowance>, mut response: Response| {
            if let Some(allowance) = allowance {
                allowance.stamp(response.headers_mut());
            }
            response
        });
    // CORS outside admission, so a 401 or 429 carries its headers too; it answers preflights
    // itself, before admission (a browser cannot read a refused preflight anyway). What it
    // forbids (a preflight for a method or header not allowed) gets its JSON error.
    let cors_checked = answered(ctx.clone(), admitted)
        .with(cors)
        .map(Reply::into_response);
    answered(ctx, cors_checked).boxed()
}

/// `filter`'s response, or the JSON error of the rejection it ends with (see [`refused`]).
fn answered<F>(
    ctx: Arc<GatewayCtx>,
    filter: F,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone
where
    F: Filter<Extract = (Response,), Error = Rejection> + Clone + Send + Sync + 'static,
{
    let outcome = filter
        .map(Ok)
        .recover(|rejection| async move { Ok::<_, Infallible>(Err(rejection)) })
        .unify();
    warp::header::headers_cloned()
        .and(warp::method())
        .and(warp::path::full())
        .and(outcome)
        .map(
            move |headers, method, path: FullPath, outcome: Result<Response, Rejection>| {
                outcome
                    .unwrap_or_else(|rejection| refused(&ctx, &headers, &method, &path, &rejection))
            },
        )
}

/// The answer to a request refused before routing or taken by no route: its JSON error, with
/// the `Allow` header on a 405.
fn refused(
    ctx: &GatewayCtx,
    headers: &HeaderMap,
    method: &Method,
    path: &FullPath,
    rejection: &Rejection,
) -> Response {
    let request_id = filters::request_id(headers);
    let error = ApiError::from_rejection(rejection, path.as_str());
    let route = match error {
        ApiError::Unauthorized(_) => "auth",
        ApiError::RateLimited(_) => "rate_limit",
        _ => "unmatched",
    };
    let response = error.into_response(&request_id);
    filters::finish(ctx, route, method, &request_id, Instant::now(), response)
}
