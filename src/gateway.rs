//! The HTTP gateway (warp): turns requests into actor messages and replies into JSON.
//!
//! Routes live per resource (`product`, `inventory`, `order`, `notification`, `ops`); the
//! registry contributes `/eureka`. Every route goes through `filters::serve` (request id, timeout,
//! metrics, JSON errors); requests no route takes are answered here with a JSON 404/405. The
//! gateway finds actors through the registry ([`Directory`]) and never touches sled.

pub mod error;
pub mod filters;
pub mod inventory;
pub mod notification;
pub mod ops;
pub mod order;
pub mod product;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::{Filter, Rejection};

use crate::actors::entity::{Entity, SupervisorMsg};
use crate::actors::{ask, Directory, Reply as ReplyPort};
use crate::health::ComponentHealth;
use crate::metrics::Metrics;
use crate::storage::FlushStats;
use error::ApiError;

/// What every handler can reach.
pub struct GatewayCtx {
    pub node: String,
    pub directory: Directory,
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
}

impl GatewayCtx {
    /// Sends `command` to the entity `key` of kind `E` and waits for its reply.
    pub async fn entity<E: Entity, T: Send + 'static>(
        &self,
        key: E::Key,
        command: impl FnOnce(ReplyPort<T>) -> E::Command,
    ) -> Result<T, ApiError> {
        let supervisor = self.directory.resolve::<SupervisorMsg<E>>(E::SERVICE)?;
        let message = |reply| SupervisorMsg::Deliver {
            key,
            command: command(reply),
        };
        Ok(ask(&supervisor, message, self.request_timeout).await?)
    }

    /// Sends a kind-wide query to the supervisor of kind `E`.
    pub async fn query<E: Entity, T: Send + 'static>(
        &self,
        query: impl FnOnce(ReplyPort<T>) -> E::Query,
    ) -> Result<T, ApiError> {
        let supervisor = self.directory.resolve::<SupervisorMsg<E>>(E::SERVICE)?;
        Ok(ask(
            &supervisor,
            |reply| SupervisorMsg::Query(query(reply)),
            self.request_timeout,
        )
        .await?)
    }
}

/// All routes, with CORS, and JSON answers for requests no route takes.
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
        .expose_headers(["location", "x-request-id", "x-next-cursor", "retry-after"]);
    let api = product::routes(ctx.clone())
        .or(inventory::routes(ctx.clone()))
        .unify()
        .or(order::routes(ctx.clone()))
        .unify()
        .or(notification::routes(ctx.clone()))
        .unify()
        .or(ops::routes(ctx.clone()))
        .unify()
        .or(registry)
        .unify()
        .with(cors)
        .map(Reply::into_response)
        .map(Ok::<Response, Rejection>)
        .recover(|rejection| async move { Ok::<_, Infallible>(Err(rejection)) })
        .unify();
    warp::header::headers_cloned()
        .and(warp::method())
        .and(api)
        .map(
            move |headers, method, outcome: Result<Response, Rejection>| match outcome {
                Ok(response) => response,
                Err(rejection) => {
                    let request_id = filters::request_id(&headers);
                    let response = ApiError::from_rejection(&rejection).into_response(&request_id);
                    filters::finish(
                        &ctx,
                        "unmatched",
                        &method,
                        &request_id,
                        Instant::now(),
                        response,
                    )
                }
            },
        )
        .boxed()
}
