//! Network faults between the nodes of a test cluster, without touching the product: a
//! [`Proxy`] on every directed link forwards the TCP sessions one node opens to another, each
//! direction passing, stalled or delayed, or every session reset; [`Net`] holds the proxy of
//! each ordered pair of nodes and applies faults between nodes (cut, one-way, isolate, reset,
//! delay, heal). A node's links run through it when the node starts with
//! `AGORA_DIAL=`[`Net::dial_env`] and [`Net::via`] in `AGORA_JOIN` (the product applying its
//! dial map to every node it dials, seeds and the nodes its seeds list alike). `nemesis.rs`
//! drives it; loopback only, in the test process.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// The most a proxy reads at once.
const CHUNK: usize = 16 * 1024;
/// Chunks read but not yet written, per direction of a session (delayed ones, mostly): enough
/// that a delay adds latency without capping the rate of small messages (at 300 ms, about
/// 3,000 a second), and few enough to bound what a session holds.
const QUEUE: usize = 1024;

/// A direction of the sessions through a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the node that dialled the proxy to the node it forwards to.
    Forth,
    /// Back from that node to the dialler.
    Back,
}

/// What happens to one direction's bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Way {
    /// Not read from the sender: held by TCP back-pressure, none dropped.
    stalled: bool,
    /// How long each chunk waits before it is written on.
    delay: Duration,
}

/// A proxy's faults: each direction's (by [`Dir`]), and whether it resets every session.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    ways: [Way; 2],
    reset: bool,
}

/// Forwards every connection to its listener (on loopback) to one target address. Dropping it
/// closes the listener and every session through it.
pub struct Proxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    accepting: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `target` on a free loopback port, every direction passing. It dials `target`
    /// only when dialled itself (a session to a node not running yet closes at once).
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy port");
        let addr = listener.local_addr().expect("proxy address");
        let (faults, watching) = watch::channel(Faults::default());
        let accepting = tokio::spawn(accept(listener, target, watching));
        Proxy {
            addr,
            faults,
            accepting,
        }
    }

    /// Where to dial the target through this proxy.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops reading `dir`'s bytes, of present sessions and new ones, until [`Proxy::heal`].
    pub fn stall(&self, dir: Dir) {
        self.faults
            .send_modify(|f| f.ways[dir as usize].stalled = true);
    }

    /// Writes each chunk of `dir` on `delay` after it was read, in order.
    pub fn delay(&self, dir: Dir, delay: Duration) {
        self.faults
            .send_modify(|f| f.ways[dir as usize].delay = delay);
    }

    /// Closes every session now (with a TCP reset), and each new one as soon as it is
    /// accepted, until [`Proxy::heal`]: a firewall that rejects.
    pub fn reset(&self) {
        self.faults.send_modify(|f| f.reset = true);
    }

    /// Every fault off: held bytes flow on, in order.
    pub fn heal(&self) {
        self.faults.send_replace(Faults::default());
    }

    fn faults(&self) -> Faults {
        *self.faults.borrow()
    }
}

/// The accept loop owns the sessions' tasks: aborted with it, they go too.
impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(listener: TcpListener, target: SocketAddr, faults: watch::Receiver<Faults>) {
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((dialler, _)) = accepted else {
                    // Out of file descriptors, say: not a busy loop meanwhile.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                match faults.borrow().reset {
                    true => abort(&dialler),
                    false => {
                        sessions.spawn(forward(dialler, target, faults.clone()));
                    }
                }
            }
            Some(_) = sessions.join_next() => {}
        }
    }
}

/// Makes the socket's close a TCP reset rather than an orderly end.
fn abort(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// One session: both directions pumped until both ended, either failed, or a reset.
async fn forward(mut dialler: TcpStream, target: SocketAddr, faults: watch::Receiver<Faults>) {
    let Ok(mut node) = TcpStream::connect(target).await else {
        return;
    };
    // Small messages (heartbeats) go at once, as they would without the proxy.
    for stream in [&dialler, &node] {
        let _ = stream.set_nodelay(true);
    }
    let was_reset = {
        let (from_dialler, to_dialler) = dialler.split();
        let (from_node, to_node) = node.split();
        let pumps = futures::future::try_join(
            pump(from_dialler, to_node, Dir::Forth, faults.clone()),
            pump(from_node, to_dialler, Dir::Back, faults.clone()),
        );
        let mut watching = faults;
        tokio::select! {
            _ = pumps => false,
            _ = watching.wait_for(|f| f.reset) => true,
        }
    };
    if was_reset {
        abort(&dialler);
        abort(&node);
    }
}

/// Copies `from` to `to` in chunks, as `dir`'s faults say; at the end of `from`, ends `to`.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    dir: Dir,
    faults: watch::Receiver<Faults>,
) -> io::Result<()> {
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let mut reading = faults.clone();
    let read = async move {
        let mut buffer = vec![0; CHUNK];
        loop {
            passable(&mut reading, dir).await;
            let n = from.read(&mut buffer).await?;
            if n == 0 {
                return Ok(());
            }
            let due = Instant::now() + reading.borrow().ways[dir as usize].delay;
            if queue.send((due, buffer[..n].to_vec())).await.is_err() {
                return Ok(());
            }
        }
    };
    let mut writing = faults;
    let write = async move {
        while let Some((due, chunk)) = queued.recv().await {
            tokio::time::sleep_until(due).await;
            passable(&mut writing, dir).await;
            to.write_all(&chunk).await?;
        }
        to.shutdown().await
    };
    tokio::try_join!(read, write).map(|_| ())
}

/// Returns once `dir` is not stalled (at once if the proxy is gone: its tasks are too).
async fn passable(faults: &mut watch::Receiver<Faults>, dir: Dir) {
    let _ = faults.wait_for(|f| !f.ways[dir as usize].stalled).await;
}

/// The proxy of every ordered pair of a test cluster's nodes: P(a→b) is the one node a dials
/// to reach node b. Bytes a sends on it go a to b ([`Dir::Forth`]), b's answers b to a.
pub struct Net {
    /// Each node and its real cluster address, in the order they were added.
    nodes: Vec<(String, SocketAddr)>,
    links: BTreeMap<(String, String), Proxy>,
}

impl Net {
    /// A proxy each way between every two of `nodes` (names and real cluster addresses).
    pub async fn start(nodes: &[(&str, SocketAddr)]) -> Net {
        let mut net = Net {
            nodes: Vec::new(),
            links: BTreeMap::new(),
        };
        for (name, addr) in nodes {
            net.add(name, *addr).await;
        }
        net
    }

    /// Adds `name`, at the real cluster address `addr`, with a proxy each way between it and
    /// every node here already; the existing nodes' [`Net::dial_env`] stays as they started.
    ///
    /// The new node, started with its own `dial_env` (and a [`Net::via`] in `AGORA_JOIN`),
    /// dials through the proxies every node its seed lists (ractor_cluster's transitive mode:
    /// each side of a new session asks the other for its sessions; the asker dials those it
    /// has none with), so those links need nothing of the existing nodes. Not covered without
    /// restarting them: an existing node dialling the newcomer itself (redialling after a
    /// reset, say) takes its address from the membership, the address the newcomer
    /// advertises (its real one), as its own `AGORA_DIAL` cannot name a node unknown at its
    /// start. To keep every link under the proxies, declare the late node at [`Net::start`],
    /// its address reserved with `free_addr`: a proxy dials its target only when dialled.
    pub async fn add(&mut self, name: &str, addr: SocketAddr) {
        assert!(
            !self.nodes.iter().any(|(n, _)| n == name),
            "{name} is in the net already"
        );
        for (other, other_addr) in &self.nodes {
            let to_other = Proxy::start(*other_addr).await;
            self.links
                .insert((name.to_owned(), other.clone()), to_other);
            let to_new = Proxy::start(addr).await;
            self.links.insert((other.clone(), name.to_owned()), to_new);
        }
        self.nodes.push((name.to_owned(), addr));
    }

    /// `AGORA_DIAL` for `node`: `other=proxy` for every other node, the proxy of the link
    /// from `node` to it.
    pub fn dial_env(&self, node: &str) -> String {
        let dial = self
            .others(node)
            .map(|o| format!("{o}={}", self.via(node, o)));
        dial.collect::<Vec<_>>().join(",")
    }

    /// The address `from` reaches `to` at: the proxy P(from→to).
    pub fn via(&self, from: &str, to: &str) -> SocketAddr {
        self.proxy(from, to).addr()
    }

    /// Nothing passes between `a` and `b`, either way, on either link.
    pub fn cut(&self, a: &str, b: &str) {
        for proxy in self.both(a, b) {
            proxy.stall(Dir::Forth);
            proxy.stall(Dir::Back);
        }
    }

    /// `from` reaches `to`, `to` does not reach `from`: bytes from `to` to `from` stall, on
    /// either link.
    pub fn one_way(&self, from: &str, to: &str) {
        self.proxy(from, to).stall(Dir::Back);
        self.proxy(to, from).stall(Dir::Forth);
    }

    /// `a` cut from every other node.
    pub fn isolate(&self, a: &str) {
        self.others(a).for_each(|other| self.cut(a, other));
    }

    /// Every session between `a` and `b` reset, and new ones refused, until healed.
    pub fn reset(&self, a: &str, b: &str) {
        self.both(a, b).iter().for_each(|proxy| proxy.reset());
    }

    /// Bytes between `a` and `b` wait `delay`, each way: the round trip grows by twice that.
    pub fn delay(&self, a: &str, b: &str, delay: Duration) {
        for proxy in self.both(a, b) {
            proxy.delay(Dir::Forth, delay);
            proxy.delay(Dir::Back, delay);
        }
    }

    /// No fault between `a` and `b` any more.
    pub fn heal(&self, a: &str, b: &str) {
        self.both(a, b).iter().for_each(|proxy| proxy.heal());
    }

    /// No fault anywhere.
    pub fn heal_all(&self) {
        self.links.values().for_each(Proxy::heal);
    }

    /// The faults now, per link, for a log: `"no faults"` when there are none.
    pub fn describe(&self) -> String {
        let mut links = Vec::new();
        for ((from, to), proxy) in &self.links {
            let faults = proxy.faults();
            let mut said = Vec::new();
            for (dir, sender, receiver) in [(Dir::Forth, from, to), (Dir::Back, to, from)] {
                let way = faults.ways[dir as usize];
                if way.stalled {
                    said.push(format!("{sender}→{receiver} stalled"));
                }
                if !way.delay.is_zero() {
                    said.push(format!("{sender}→{receiver} delayed {:?}", way.delay));
                }
            }
            if faults.reset {
                said.push("reset".to_owned());
            }
            if !said.is_empty() {
                links.push(format!("P({from}→{to}): {}", said.join(", ")));
            }
        }
        match links.is_empty() {
            true => "no faults".to_owned(),
            false => links.join("; "),
        }
    }

    fn others<'n>(&'n self, node: &'n str) -> impl Iterator<Item = &'n str> {
        let others = self.nodes.iter().filter(move |(n, _)| n != node);
        others.map(|(n, _)| n.as_str())
    }

    fn proxy(&self, from: &str, to: &str) -> &Proxy {
        let proxy = self.links.get(&(from.to_owned(), to.to_owned()));
        proxy.unwrap_or_else(|| panic!("no link {from}→{to} in the net"))
    }

    fn both(&self, a: &str, b: &str) -> [&Proxy; 2] {
        [self.proxy(a, b), self.proxy(b, a)]
    }
}

#[cfg(test)]
mod tests;
