//! Configured gateway routes, as Spring Cloud Gateway has them: requests that no built-in route
//! takes are matched against the route table of `--routes` (`table.rs`) and forwarded
//! (`forward.rs`) to `http://host:port` or to an UP instance of `lb://APP`, found through
//! agora's own registry and chosen round-robin. `GET /gateway/routes` lists the table.
//!
//! The gateway mounts [`routes`] after every built-in route, so those take precedence. Each
//! [`Route`] owns its HTTP client (its connect timeout) and its round-robin counter; the table
//! never changes after start. Failures are [`UpstreamError`]s, which `error.rs` declares and maps
//! to statuses.

mod forward;
mod table;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;
use warp::filters::path::FullPath;
use warp::filters::BoxedFilter;
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use self::forward::HttpClient;
use self::table::{RouteSpec, Target};
use super::error::{ApiError, UpstreamError};
use super::filters::{call, json_response, serve, serve_within, Call};
use super::GatewayCtx;
use crate::registry::Registry;

/// Added to a route's own time budget to bound the whole exchange, so the route's timeouts, not
/// the outer one, decide.
const BUDGET_MARGIN: Duration = Duration::from_secs(1);

/// A route as `GET /gateway/routes` lists it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteJson {
    id: String,
    /// Where it sends: `lb://APP` or `http://host:port`.
    uri: String,
    /// As written in the file, e.g. `Path=/shop/**`, `Method=GET,POST`.
    predicates: Vec<String>,
    /// As written in the file, e.g. `StripPrefix=1`.
    filters: Vec<String>,
    connect_timeout_ms: u64,
    response_timeout_ms: u64,
    /// Further attempts of a GET, on the next instance.
    retries: u32,
    /// `host:port` of each instance it would send to now (the UP instances of an `lb://` app).
    instances: Vec<String>,
}

/// A route as it serves: its spec, its client and its round-robin counter.
struct Route {
    spec: RouteSpec,
    /// The metrics label: `route:ID`.
    label: String,
    client: HttpClient,
    next: AtomicUsize,
}

impl Route {
    /// The authorities (`host:port`) the route may send to now.
    fn authorities(&self, registry: &Registry) -> Vec<String> {
        match &self.spec.target {
            Target::Fixed(authority) => vec![authority.clone()],
            Target::Balanced(app) => registry
                .up_instances(app)
                .into_iter()
                .map(|(host, port)| match host.contains(':') {
                    true => format!("[{host}]:{port}"),
                    false => format!("{host}:{port}"),
                })
                .collect(),
        }
    }

    /// How long one request along this route may take, every attempt included.
    fn budget(&self) -> Duration {
        self.spec.response_timeout * (self.spec.retries + 1) + BUDGET_MARGIN
    }
}

/// The route table, checked at start.
pub struct Upstream {
    routes: Vec<Route>,
}

/// Which route takes a request.
enum Selected {
    Route(usize),
    /// A route's path matches, but no such route accepts the method: the methods they accept,
    /// for `Allow`.
    WrongMethod(String),
}

impl Upstream {
    /// The routes of the file at `path`; none without one.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Upstream> {
        let specs = match path {
            Some(path) => table::load(path)?,
            None => Vec::new(),
        };
        let routes = specs
            .into_iter()
            .map(|spec| {
                let client = forward::client(spec.connect_timeout);
                Route {
                    label: format!("route:{}", spec.id),
                    spec,
                    client,
                    next: AtomicUsize::new(0),
                }
            })
            .collect();
        Ok(Upstream { routes })
    }

    /// How many routes the table has.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }

    /// The first route, in file order, whose path and method match.
    fn select(&self, method: &Method, path: &str) -> Option<Selected> {
        let mut on_path = self
            .routes
            .iter()
            .enumerate()
            .filter(|(_, r)| r.spec.matches_path(path))
            .peekable();
        on_path.peek()?;
        let mut allowed = BTreeSet::new();
        for (i, route) in on_path {
            if route.spec.accepts(method) {
                return Some(Selected::Route(i));
            }
            let methods = route.spec.methods().unwrap_or_default();
            allowed.extend(methods.iter().map(Method::as_str));
        }
        let allowed: Vec<&str> = allowed.into_iter().collect();
        Some(Selected::WrongMethod(allowed.join(", ")))
    }

    /// Forwards `call` along route `index`.
    async fn forward(
        &self,
        index: usize,
        call: Call,
        path: FullPath,
        remote: Option<SocketAddr>,
    ) -> Result<Response, ApiError> {
        let route = &self.routes[index];
        let authorities = route.authorities(&call.ctx.registry);
        if let Target::Balanced(app) = &route.spec.target {
            if authorities.is_empty() {
                return Err(UpstreamError::NoInstance(app.clone()).into());
            }
        }
        let upstream_path = route.spec.rewrite(path.as_str());
        forward::send(route, &authorities, &upstream_path, call, remote).await
    }
}

/// `GET /gateway/routes`, then every request a route of the table takes.
pub fn routes(ctx: Arc<GatewayCtx>) -> BoxedFilter<(Response,)> {
    let listing = warp::path!("gateway" / "routes")
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|c| serve(c, "/gateway/routes", list));
    let selecting = ctx.clone();
    let selected = warp::method()
        .and(warp::path::full())
        .and_then(move |method: Method, path: FullPath| {
            let found = selecting.upstream.select(&method, path.as_str());
            async move { found.map(|s| (s, path)).ok_or_else(warp::reject::not_found) }
        })
        .untuple_one();
    let proxy = selected.and(warp::addr::remote()).and(call(ctx)).then(
        |selected, path, remote, c: Call| async move {
            let ctx = c.ctx.clone();
            match selected {
                Selected::Route(i) => {
                    let route = &ctx.upstream.routes[i];
                    let forward = |c| ctx.upstream.forward(i, c, path, remote);
                    serve_within(c, &route.label, route.budget(), forward).await
                }
                Selected::WrongMethod(allow) => {
                    let refuse =
                        |_| async { Err(ApiError::MethodNotAllowed { allow: Some(allow) }) };
                    serve(c, "gateway", refuse).await
                }
            }
        },
    );
    listing.or(proxy).unify().boxed()
}

/// The configured routes (`--routes`), in file order, with the instances each would send to now.
#[utoipa::path(get, path = "/gateway/routes", operation_id = "listGatewayRoutes", tag = "ops",
    responses((status = 200, description = "The route table", body = Vec<RouteJson>)))]
pub(super) async fn list(call: Call) -> Result<Response, ApiError> {
    let registry = &call.ctx.registry;
    let routes: Vec<RouteJson> = (call.ctx.upstream.routes.iter())
        .map(|route| route.spec.describe(route.authorities(registry)))
        .collect();
    Ok(json_response(StatusCode::OK, &routes))
}
