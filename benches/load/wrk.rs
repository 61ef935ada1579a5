//! The cross-check with an independent load generator: `wrk` (Debian's package), run against
//! the ceiling and then agora for each in-process scenario, one run a side (`LOAD_WRK=1`).
//! Each scenario's requests are the same ones the hyper driver sends (the first
//! [`REQUESTS`] of its sequence, cycled), written into a Lua script.
//!
//! wrk sends each request as soon as the last answer on its connection arrived, from a single
//! thread of C, so it waits less between requests than the driver and shows the queueing it
//! hides. Env: `LOAD_WRK_CONNECTIONS` (default 64), `LOAD_WRK_SECS` (default 5).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::driver::MakeCall;
use crate::report::{Point, Side};

/// How many distinct requests of a scenario the script cycles through.
const REQUESTS: u64 = 2000;

/// Fails clearly when wrk is not installed: the cross-check was asked for.
pub fn check_installed() -> anyhow::Result<()> {
    let found = Command::new("wrk").arg("--version").output();
    anyhow::ensure!(
        found.is_ok(),
        "LOAD_WRK=1 needs wrk on the PATH (Debian: apt-get install wrk)"
    );
    Ok(())
}

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
    std::fs::write(&script, lua(make)).context("writing the wrk script")?;
    let ceiling = run(&script, ceiling, connections, secs)?;
    let agora = run(&script, agora, connections, secs)?;
    let ratio = agora.requests_per_sec / ceiling.requests_per_sec.max(1.0);
    Ok(Point {
        scenario,
        connections,
        agora,
        ceiling,
        ratio,
    })
}

/// A script that sends the scenario's first requests in turn and prints one result line.
fn lua(make: &MakeCall) -> String {
    let mut out = String::from("local requests = {}\ninit = function(args)\n");
    for n in 0..REQUESTS {
        let call = make(n);
        let (method, body) = match call.post {
            true => ("POST", format!("[==[{}]==]", call.body)),
            false => ("GET", "nil".to_owned()),
        };
        out.push_str(&format!(
            "  requests[{}] = wrk.format(\"{method}\", [==[{}]==], {{[\"content-type\"] = \"application/json\"}}, {body})\n",
            n + 1,
            call.path
        ));
    }
    out.push_str(
        r#"end
local n = 0
request = function()
  n = n % #requests + 1
  return requests[n]
end
done = function(summary, latency, _)
  local e = summary.errors
  io.write(string.format("WRK %d %d %.3f %.3f %.3f %d\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    e.connect + e.read + e.write + e.timeout + e.status))
end
"#,
    );
    out
}

fn run(script: &Path, to: SocketAddr, connections: usize, secs: Duration) -> anyhow::Result<Side> {
    let output = Command::new("wrk")
        .args([
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{}s", secs.as_secs()),
        ])
        .arg("-s")
        .arg(script)
        .arg(format!("http://{to}/"))
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = (text.lines().find_map(|l| l.strip_prefix("WRK ")))
        .with_context(|| format!("wrk printed no result: {text}"))?;
    let f: Vec<f64> = line
        .split(' ')
        .map(|v| v.parse().context("a wrk figure"))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(f.len() == 6, "wrk's result line: {line}");
    Ok(Side {
        requests_per_sec: f[0] / (f[1] / 1e6).max(1e-9),
        p50_ms: f[2],
        p99_ms: f[3],
        p999_ms: f[4],
        errors: f[5] as u64,
        answers: Default::default(),
        stalled: 0,
    })
}
