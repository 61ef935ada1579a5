//! Running wrk (Debian's package), the independent load generator, from a benchmark: a Lua
//! script that sends a fixed list of requests in turn and prints one result line, and the
//! figures parsed from it. Shared by the load and growth benchmarks (`#[path]`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

/// One request of a script.
pub struct Request {
    pub post: bool,
    pub path: String,
    /// JSON, for a POST.
    pub body: String,
}

/// What one wrk run measured.
pub struct Figures {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// Connection errors, timeouts and answers other than 2xx or 3xx.
    pub errors: u64,
}

/// Fails clearly when wrk is not installed: `asked` names what asked for it.
pub fn check_installed(asked: &str) -> anyhow::Result<()> {
    let found = Command::new("wrk").arg("--version").output();
    anyhow::ensure!(
        found.is_ok(),
        "{asked} needs wrk on the PATH (Debian: apt-get install wrk)"
    );
    Ok(())
}

/// A script that sends `requests` in turn, cycling, and prints one result line.
pub fn script(requests: impl IntoIterator<Item = Request>) -> String {
    let mut out = String::from("local requests = {}\ninit = function(args)\n");
    for (n, call) in requests.into_iter().enumerate() {
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

/// Runs wrk with one thread and `connections` for `secs` against `to`.
pub fn run(
    script: &Path,
    to: SocketAddr,
    connections: usize,
    secs: Duration,
) -> anyhow::Result<Figures> {
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
    Ok(Figures {
        requests_per_sec: f[0] / (f[1] / 1e6).max(1e-9),
        p50_ms: f[2],
        p99_ms: f[3],
        p999_ms: f[4],
        errors: f[5] as u64,
    })
}
