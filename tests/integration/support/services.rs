//! What a test runs beside agora: agora itself as a child process, the Python interop scripts
//! of `tests/interop/` (on the python of `python.rs`), small HTTP servers of its own, and free
//! loopback addresses.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout};
use warp::filters::BoxedFilter;
use warp::Reply;

use super::TestApp;

/// `agora serve` on a free port and `data`, logging warnings without colour. No `AGORA_*`
/// variable of this environment reaches it: it is configured only by what the test adds.
pub fn agora_serve(data: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_agora"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AGORA_") {
            command.env_remove(name);
        }
    }
    command
        .args(["serve", "--http", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    command
}

/// Runs `tests/interop/{script}` with `python`, the registry URL of `app` and `args`, and reads
/// its output lines; closing its stdin stops it, and so does dropping it.
pub fn start_script(
    python: &Path,
    script: &str,
    app: &TestApp,
    args: &[&str],
) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = tokio::process::Command::new(python)
        .arg(format!(
            "{}/tests/interop/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(format!("{}/eureka/", app.base))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
    (child, lines)
}

/// Reads the script's lines until one starts with `prefix`; returns the rest of it.
pub async fn expect_line(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    let read = async {
        while let Some(line) = lines.next_line().await.expect("script output") {
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.trim().to_owned();
            }
        }
        panic!("the script ended before printing {prefix:?}");
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or_else(|_| panic!("no {prefix:?} line within 60 s"))
}

/// Serves `filter` on a free loopback port in this runtime; returns its address.
pub async fn serve_locally<R: Reply + 'static>(filter: BoxedFilter<(R,)>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(warp::serve(filter).incoming(listener).run());
    addr
}

/// A loopback address that was free a moment ago (for a process to bind, or for nothing to).
/// Its port is below the kernel's ephemeral range, from which every outgoing connection takes
/// its local port: a port the system hands out for `:0` could be taken by a connection before
/// the process binds it (or binds it again after a restart).
pub fn free_addr() -> SocketAddr {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let ephemeral = (range.ok())
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral.max(10_001));
    for _ in 0..1000 {
        let draw = u16::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..2].try_into().unwrap());
        let port = low + draw % (high - low);
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("bound");
        }
    }
    panic!("no free port in {low}..{high}")
}
