//! Failover measured again and again, on one cluster formed once (opt-in: a soak, too long for
//! CI): kill -9 of a node that leads partitions, then SIGSTOP of one, each `AGORA_FAILOVER_RUNS`
//! times, the victim rotating over n2 and n3 (n1 hosts the Kafka broker). Prints the min,
//! median and max of each figure.

use std::time::{Duration, Instant};

use super::ledger::{failover, Ledger};
use super::shop::{Setup, Shop};
use super::{skus, stock_up, ONE_CLUSTER_AT_A_TIME, PLENTY};

/// How long a frozen leader stays frozen: past the election timeout, and the lease.
const FROZEN: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "soak: set AGORA_FAILOVER_RUNS and run with --ignored"]
async fn failover_times() {
    let runs = std::env::var("AGORA_FAILOVER_RUNS").ok();
    let runs = runs
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0);
    let runs = runs.unwrap_or_else(|| {
        panic!("failover_times is a soak: set AGORA_FAILOVER_RUNS=N (runs of each failover)")
    });
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut shop = Shop::form(Setup::default()).await;
    let skus = skus(6);
    stock_up(&shop.node("n1"), &skus, PLENTY).await;
    let ledger = Ledger::default();

    let mut killed = Figures::new(["live leaders", "every SKU orderable", "whole after restart"]);
    for run in 0..runs {
        let (victim, led) = shop.leader_among(turn(run)).await;
        shop.kill(victim).await;
        let since = Instant::now();
        let (elected, serving) = failover(victim, &shop.running(), &skus, &ledger, since).await;
        let back = shop.restart(victim, false).await;
        killed.add(run, victim, led.len(), [elected, serving, back]);
    }

    let mut frozen = Figures::new(["new leaders", "every SKU orderable", "whole after SIGCONT"]);
    for run in 0..runs {
        let (victim, led) = shop.leader_among(turn(run)).await;
        let app = shop.node(victim);
        app.signal("STOP");
        let since = Instant::now();
        let others = shop.running_but(victim);
        let (elected, serving) = failover(victim, &others, &skus, &ledger, since).await;
        // Held for FROZEN in all: a pause, not a readiness wait.
        tokio::time::sleep(FROZEN.saturating_sub(since.elapsed())).await;
        app.signal("CONT");
        let resumed = Instant::now();
        shop.wait_whole().await;
        frozen.add(
            run,
            victim,
            led.len(),
            [elected, serving, resumed.elapsed()],
        );
    }

    eprintln!("replicated: answers {:?}", ledger.check_answers());
    killed.print(&format!("kill -9 of a leader, {runs} runs"));
    frozen.print(&format!("SIGSTOP of a leader for {FROZEN:?}, {runs} runs"));
}

/// The node to take down in `run`: n2 or n3 by turns, whichever leads partitions if only one
/// does.
fn turn(run: usize) -> &'static [&'static str] {
    [&["n2", "n3"], &["n3", "n2"]][run % 2]
}

/// Three durations measured in each run, by name.
struct Figures {
    names: [&'static str; 3],
    runs: Vec<[Duration; 3]>,
}

impl Figures {
    fn new(names: [&'static str; 3]) -> Figures {
        Figures {
            names,
            runs: Vec::new(),
        }
    }

    /// The figures of `run`, in which `victim` led `led` partitions.
    fn add(&mut self, run: usize, victim: &str, led: usize, figures: [Duration; 3]) {
        let named = self.names.iter().zip(figures);
        let named: Vec<String> = named.map(|(name, d)| format!("{name} {d:?}")).collect();
        eprintln!(
            "replicated: run {run}, {victim} (leader of {led} partitions): {}",
            named.join(", ")
        );
        self.runs.push(figures);
    }

    /// min/median/max of each figure.
    fn print(&self, what: &str) {
        for (i, name) in self.names.iter().enumerate() {
            let mut times: Vec<Duration> = self.runs.iter().map(|run| run[i]).collect();
            times.sort();
            let (min, median, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
            eprintln!("replicated: {what}: {name}: min {min:?} / median {median:?} / max {max:?}");
        }
    }
}
