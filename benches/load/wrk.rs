//! The cross-check with an independent load generator: wrk, run against the ceiling and then
//! agora for each in-process scenario, one run a side (`LOAD_WRK=1`). Each scenario's
//! requests are the same ones the hyper driver sends (the first [`REQUESTS`] of its sequence,
//! cycled), written into a Lua script (`benches/shared/wrk.rs`).
//!
//! wrk sends each request as soon as the last answer on its connection arrived, from a single
//! thread of C, so it waits less between requests than the driver and shows the queueing it
//! hides. Env: `LOAD_WRK_CONNECTIONS` (default 64), `LOAD_WRK_SECS` (default 5).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

#[path = "../shared/wrk.rs"]
mod shared;

pub use self::shared::check_installed;
use crate::driver::MakeCall;
use crate::report::{Point, Side};

/// How many distinct requests of a scenario the script cycles through.
const REQUESTS: u64 = 2000;

/// One run of wrk a side, ceiling first, for `scenario`.
pub fn point(
    scenario: &'static str,
    make: &MakeCall,
    (ceiling, agora): (SocketAddr, SocketAddr),
    connections: usize,
    secs: Duration,
    dir: &Path,
) -> anyhow::Result<Point> {
    let script = dir.join(format!("{scenario}.lua"));
    let requests = (0..REQUESTS).map(|n| {
        let call = make(n);
        shared::Request {
            post: call.post,
            path: call.path,
            body: call.body,
        }
    });
    std::fs::write(&script, shared::script(requests)).context("writing the wrk script")?;
    let side = |to| -> anyhow::Result<Side> {
        let f = shared::run(&script, to, connections, secs)?;
        Ok(Side {
            requests_per_sec: f.requests_per_sec,
            p50_ms: f.p50_ms,
            p99_ms: f.p99_ms,
            p999_ms: f.p999_ms,
            errors: f.errors,
            answers: Default::default(),
            stalled: 0,
        })
    };
    let ceiling = side(ceiling)?;
    let agora = side(agora)?;
    let ratio = agora.requests_per_sec / ceiling.requests_per_sec.max(1.0);
    Ok(Point {
        scenario,
        connections,
        agora,
        ceiling,
        ratio,
    })
}
