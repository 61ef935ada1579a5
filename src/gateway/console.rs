//! The operator console: `GET /console`, one live page per node (health, orders, latency per
//! route, outbox and Kafka, entity actors, the cluster, the registry), and `GET /console/state`,
//! the JSON behind it. Read-only; behind the same credentials as the registry's writes or the
//! API when they are configured (`auth.rs` decides).
//!
//! The page (`page.rs`) is rendered on the server with the current state, so it reads without
//! JavaScript; its script (`console/console.js`, compiled in) polls the state twice a second
//! and draws the charts. The charts come from [`history`], which the sampler task started by
//! [`spawn_sampler`] fills once a second from the node's own counters; [`peers`] asks the other
//! members how far they applied, for the replication lag; [`state`] gathers the rest when asked.

pub mod history;
mod page;
mod peers;
pub mod state;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::error::ApiError;
use super::filters::{call, json_response, serve, Call};
use super::GatewayCtx;
use history::{History, Shape};
use peers::Lags;
use state::ConsoleState;

/// How often the sampler reads the counters.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// How long after the last look at the console the sampler keeps measuring the lag.
const WATCHED: Duration = Duration::from_secs(10);

/// What the console keeps between requests.
pub struct Console {
    pub history: Mutex<History>,
    /// The replication lag, as the sampler last measured it.
    pub lags: Mutex<Lags>,
    /// When the page or its state was last asked for: the sampler asks the other members
    /// for their views (for the lag) only while someone looks.
    pub viewed: Mutex<Option<Instant>>,
    /// The entity actors' idle timeout (`--idle-secs`) and live limit per kind
    /// (`--max-live-entities`), which the page shows.
    pub idle: Duration,
    pub max_live: u64,
    pub started: Instant,
}

impl Console {
    pub fn new(idle: Duration, max_live: u64) -> Console {
        Console {
            history: Mutex::default(),
            lags: Mutex::default(),
            viewed: Mutex::default(),
            idle,
            max_live,
            started: Instant::now(),
        }
    }
}

pub fn routes(ctx: Arc<GatewayCtx>) -> BoxedFilter<(Response,)> {
    let page = warp::path!("console")
        .and(warp::get())
        .and(call(ctx.clone()))
        .then(|c| serve(c, "/console", console_page));
    let state = warp::path!("console" / "state")
        .and(warp::get())
        .and(call(ctx))
        .then(|c| serve(c, "/console/state", console_state));
    page.or(state).unify().boxed()
}

/// The console: one page for this node and its cluster, live.
#[utoipa::path(get, path = "/console", tag = "console", responses(
    (status = 200, description = "The page, rendered with the current state", content_type = "text/html", body = String),
))]
async fn console_page(call: Call) -> Result<Response, ApiError> {
    let state = state::gather(&call.ctx).await;
    Ok(page::render(&state))
}

/// What the console shows: health, shop totals, five minutes of per-second charts, per-route
/// latency, entity actors, the cluster and the registry.
#[utoipa::path(get, path = "/console/state", tag = "console", responses(
    (status = 200, description = "The console's state now", body = ConsoleState),
))]
async fn console_state(call: Call) -> Result<Response, ApiError> {
    let state = state::gather(&call.ctx).await;
    Ok(json_response(StatusCode::OK, &state))
}

/// Starts the task that samples the node's counters every second until the node stops.
pub fn spawn_sampler(ctx: Arc<GatewayCtx>) -> JoinHandle<()> {
    let mut stopping = ctx.shutdown.clone();
    tokio::spawn(async move {
        let client = peers::client();
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopping.changed() => return,
            }
            if *stopping.borrow() {
                return;
            }
            let view = (ctx.directory.remote.as_ref()).and_then(|remote| remote.describe());
            let shape = match &view {
                Some(view) => Some(Shape {
                    leaders: (view.partitions.iter())
                        .map(|p| (p.partition, (p.leader.clone(), p.term)))
                        .collect(),
                    members: (view.members.iter())
                        .map(|m| (m.name.clone(), m.reachable || m.name == view.node))
                        .collect(),
                }),
                None => (ctx.directory.peers()).map(|peers| Shape {
                    members: peers.into_iter().collect(),
                    ..Shape::default()
                }),
            };
            let reading = history::read(&ctx.metrics);
            let outbox = ctx.metrics.outbox_depth.get();
            if let Ok(mut history) = ctx.console.history.lock() {
                history.record(state::now_ms(), reading, outbox, shape);
            }
            let watched = (ctx.console.viewed.lock())
                .is_ok_and(|viewed| viewed.is_some_and(|at| at.elapsed() < WATCHED));
            // Unwatched, the lag is not measured, and none is kept that would be old.
            let lags = match view.as_ref().filter(|_| watched) {
                Some(view) => peers::lags(&client, view).await,
                None => Lags::default(),
            };
            if let Ok(mut kept) = ctx.console.lags.lock() {
                *kept = lags;
            }
        }
    })
}
