//! Seeded schedules of faults for a test cluster: a small PRNG (splitmix64) picks, step after
//! step, a [`Fault`] between the nodes (a cut link, a one-way link, an isolated node, a flapping
//! link, a delayed link, a reset link, or a quiet step), and [`Nemesis::run`] applies them to
//! the [`Net`] of `proxy.rs`, one at a time: each step heals the previous fault first, so a
//! majority of three nodes always reaches each other, and the run heals everything at its end.
//! A soak also draws a [`NodeFault`] now and then (a pause, a kill, a wiped disk, a node leaving
//! and joining again), which the cluster harness applies (`partitions.rs`, with `shop.rs`). The
//! same seed gives the same faults in the same order (their times vary with the machine). The
//! seed comes from `AGORA_NEMESIS_SEED`, a soak's length from `AGORA_NEMESIS_SECS`.

use std::fmt;
use std::time::{Duration, Instant};

use super::proxy::Net;

/// The seed without `AGORA_NEMESIS_SEED`.
const DEFAULT_SEED: u64 = 0x5eed;

/// The seed of this run's schedules: `AGORA_NEMESIS_SEED`, else a fixed one; printed, for a
/// failure to be replayed.
pub fn seed() -> u64 {
    let seed = number("AGORA_NEMESIS_SEED").unwrap_or(DEFAULT_SEED);
    eprintln!("nemesis: seed {seed} (AGORA_NEMESIS_SEED={seed} replays it)");
    seed
}

/// How long a soak runs its nemesis, in seconds: `AGORA_NEMESIS_SECS`, if set.
pub fn soak_secs() -> Option<u64> {
    number("AGORA_NEMESIS_SECS")
}

fn number(var: &str) -> Option<u64> {
    parse(var, std::env::var(var).ok())
}

/// A number, if `raw` is one; a value that is not one fails the test rather than be ignored.
fn parse(var: &str, raw: Option<String>) -> Option<u64> {
    let raw = raw?;
    let number = raw.trim().parse();
    Some(number.unwrap_or_else(|_| panic!("{var}={raw}: not a number")))
}

/// splitmix64: small, fast, and the same numbers for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// One step's fault between the nodes, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Nothing passes between the two, either way.
    Cut(String, String),
    /// `from` reaches `to`, `to` does not reach `from`.
    OneWay { from: String, to: String },
    /// The node cut from every other: a minority of one.
    Isolate(String),
    /// The link cut and healed `times` times, each state lasting `every`.
    Flap {
        a: String,
        b: String,
        times: u64,
        every: Duration,
    },
    /// Bytes between the two wait this long, each way.
    Delay(String, String, Duration),
    /// Sessions between the two reset, new ones refused.
    Reset(String, String),
    /// No fault.
    HealAll,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Cut(a, b) => write!(f, "cut {a}–{b}"),
            Fault::OneWay { from, to } => {
                write!(f, "one-way {from}→{to} ({to} cannot reach {from})")
            }
            Fault::Isolate(a) => write!(f, "isolate {a}"),
            Fault::Flap { a, b, times, every } => {
                write!(
                    f,
                    "flap {a}–{b} {times} times, {every:?} cut and {every:?} healed"
                )
            }
            Fault::Delay(a, b, delay) => write!(f, "delay {a}–{b} by {delay:?} each way"),
            Fault::Reset(a, b) => write!(f, "reset {a}–{b}"),
            Fault::HealAll => write!(f, "heal all"),
        }
    }
}

impl Fault {
    /// Puts this fault on `net` (a flap runs its course here), on top of any there.
    pub async fn apply(&self, net: &Net) {
        match self {
            Fault::Cut(a, b) => net.cut(a, b),
            Fault::OneWay { from, to } => net.one_way(from, to),
            Fault::Isolate(a) => net.isolate(a),
            Fault::Flap { a, b, times, every } => {
                for _ in 0..*times {
                    net.cut(a, b);
                    tokio::time::sleep(*every).await;
                    net.heal(a, b);
                    tokio::time::sleep(*every).await;
                }
            }
            Fault::Delay(a, b, delay) => net.delay(a, b, *delay),
            Fault::Reset(a, b) => net.reset(a, b),
            Fault::HealAll => net.heal_all(),
        }
    }
}

/// A fault of one node, by name, for a soak; the cluster is healed while it lasts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFault {
    /// Frozen (SIGSTOP) past the election timeout and the lease, then thawed.
    Pause(String),
    /// kill -9, then started again on its data directory.
    Kill(String),
    /// kill -9, then started again on an emptied data directory: it rejoins under its name.
    Wipe(String),
    /// Leaves the cluster gracefully, then joins it again on an emptied data directory: two
    /// membership changes.
    Rejoin(String),
}

impl fmt::Display for NodeFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeFault::Pause(a) => write!(f, "pause {a} (SIGSTOP, then SIGCONT)"),
            NodeFault::Kill(a) => write!(f, "kill -9 {a}, restart it on its data"),
            NodeFault::Wipe(a) => write!(f, "kill -9 {a}, restart it wiped"),
            NodeFault::Rejoin(a) => write!(f, "{a} leaves, then joins again wiped"),
        }
    }
}

/// A fault, as it reads, and when it began.
#[derive(Debug, Clone)]
pub struct Applied {
    pub at: Instant,
    pub what: String,
}

impl Applied {
    /// `what` begins now.
    pub fn note(what: String) -> Applied {
        Applied {
            at: Instant::now(),
            what,
        }
    }
}

/// The faults of one seed among some nodes.
pub struct Nemesis {
    rng: Rng,
    nodes: Vec<String>,
    /// What the times it prints count from.
    born: Instant,
}

impl Nemesis {
    pub fn new(seed: u64, nodes: Vec<String>) -> Nemesis {
        assert!(
            nodes.len() >= 2,
            "faults between fewer than two nodes: {nodes:?}"
        );
        Nemesis {
            rng: Rng(seed),
            nodes,
            born: Instant::now(),
        }
    }

    /// The schedule's next fault.
    pub fn next_fault(&mut self) -> Fault {
        let (a, b) = self.two();
        match self.rng.between(0, 6) {
            0 => Fault::Cut(a, b),
            1 => Fault::OneWay { from: a, to: b },
            2 => Fault::Isolate(a),
            3 => Fault::Flap {
                a,
                b,
                times: self.rng.between(2, 4),
                every: Duration::from_millis(self.rng.between(50, 250)),
            },
            4 => Fault::Delay(a, b, Duration::from_millis(self.rng.between(50, 300))),
            5 => Fault::Reset(a, b),
            _ => Fault::HealAll,
        }
    }

    /// The schedule's next fault of a node. The first node founded the cluster: it is paused
    /// or killed, never emptied (it would found another).
    pub fn next_node_fault(&mut self) -> NodeFault {
        let n = self.nodes.len() as u64;
        let any = self.nodes[self.rng.between(0, n - 1) as usize].clone();
        let joiner = self.nodes[self.rng.between(1, n - 1) as usize].clone();
        match self.rng.between(0, 3) {
            0 => NodeFault::Pause(any),
            1 => NodeFault::Kill(any),
            2 => NodeFault::Wipe(joiner),
            _ => NodeFault::Rejoin(joiner),
        }
    }

    /// Two different nodes.
    fn two(&mut self) -> (String, String) {
        let n = self.nodes.len() as u64;
        let a = self.rng.between(0, n - 1);
        let b = (a + self.rng.between(1, n - 1)) % n;
        let name = |i: u64| self.nodes[i as usize].clone();
        (name(a), name(b))
    }

    /// Applies a new fault to `net` every `step` for `length` (each replacing the one before),
    /// then heals everything; returns every fault with its time, the final heal included.
    pub async fn run(&mut self, net: &Net, length: Duration, step: Duration) -> Vec<Applied> {
        let started = Instant::now();
        let end = started + length;
        let born = self.born;
        let since = |at: Instant| at.duration_since(born);
        let mut applied = Vec::new();
        let mut next = started;
        while next < end {
            let fault = self.next_fault();
            net.heal_all();
            eprintln!("nemesis +{:.1?}: {fault}", since(Instant::now()));
            applied.push(Applied::note(fault.to_string()));
            fault.apply(net).await;
            next += step;
            tokio::time::sleep_until(next.min(end).into()).await;
        }
        net.heal_all();
        eprintln!("nemesis +{:.1?}: healed", since(Instant::now()));
        applied.push(Applied::note(Fault::HealAll.to_string()));
        applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::integration::support::free_addr;

    const NODES: [&str; 3] = ["n1", "n2", "n3"];

    fn schedule(seed: u64, n: usize) -> Vec<Fault> {
        let mut nemesis = Nemesis::new(seed, NODES.map(String::from).to_vec());
        (0..n).map(|_| nemesis.next_fault()).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_another_seed_another() {
        assert_eq!(schedule(1, 50), schedule(1, 50));
        assert_ne!(schedule(1, 50), schedule(2, 50));
        let long = schedule(1, 200);
        let kinds: std::collections::HashSet<_> = long.iter().map(std::mem::discriminant).collect();
        assert_eq!(kinds.len(), 7, "not every kind of fault in 200");
    }

    #[test]
    fn node_faults_are_seeded_and_never_empty_the_founder() {
        let faults = |seed| {
            let mut nemesis = Nemesis::new(seed, NODES.map(String::from).to_vec());
            (0..100)
                .map(|_| nemesis.next_node_fault())
                .collect::<Vec<_>>()
        };
        assert_eq!(faults(5), faults(5));
        let faults = faults(5);
        let kinds: std::collections::HashSet<_> =
            faults.iter().map(std::mem::discriminant).collect();
        assert_eq!(kinds.len(), 4, "not every kind of node fault in 100");
        for fault in faults {
            if let NodeFault::Wipe(a) | NodeFault::Rejoin(a) = &fault {
                assert_ne!(a, NODES[0], "{fault}");
            }
        }
    }

    #[test]
    fn a_fault_names_two_different_nodes() {
        for fault in schedule(3, 200) {
            if let Fault::Cut(a, b) | Fault::Delay(a, b, _) | Fault::Reset(a, b) = &fault {
                assert_ne!(a, b, "{fault}");
            }
            if let Fault::OneWay { from: a, to: b } | Fault::Flap { a, b, .. } = &fault {
                assert_ne!(a, b, "{fault}");
            }
        }
    }

    #[test]
    fn knobs_are_numbers_or_unset() {
        assert_eq!(
            parse("AGORA_NEMESIS_SECS", Some(" 42 ".to_owned())),
            Some(42)
        );
        assert_eq!(parse("AGORA_NEMESIS_SECS", None), None);
        let bad = std::panic::catch_unwind(|| parse("AGORA_NEMESIS_SEED", Some("x".to_owned())));
        assert!(bad.is_err(), "a seed that is no number taken");
    }

    #[tokio::test]
    async fn a_run_applies_faults_in_turn_and_heals_at_the_end() {
        let addrs = NODES.map(|n| (n, free_addr()));
        let net = Net::start(&addrs).await;
        let mut nemesis = Nemesis::new(seed(), NODES.map(String::from).to_vec());
        eprintln!("a soak would run {:?} s", soak_secs());
        let step = Duration::from_millis(100);
        let applied = nemesis.run(&net, 4 * step, step).await;
        assert!(applied.len() >= 2, "{applied:?}");
        let last = applied.last().map(|a| a.what.as_str());
        assert_eq!(last, Some(Fault::HealAll.to_string().as_str()));
        assert!(applied.windows(2).all(|two| two[0].at <= two[1].at));
        assert_eq!(net.describe(), "no faults");
    }
}
