//! The load generator: exactly `connections` HTTP/1.1 keep-alive connections (hyper), each
//! driven by one task that sends the next request as soon as the last answer is read, for a
//! warm-up and then a measured period. Latencies go into HdrHistograms.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// One request: method, path and JSON body (empty for GET).
pub struct Call {
    pub post: bool,
    pub path: String,
    pub body: String,
}

/// Makes the n-th request of a worker (the scenario decides what to ask).
pub type MakeCall = Arc<dyn Fn(u64) -> Call + Send + Sync>;

/// What one measured run produced.
pub struct Outcome {
    pub histogram: Histogram<u64>,
    pub errors: u64,
    /// The measured errors by HTTP status, `0` for a connection that failed or broke.
    pub answers: BTreeMap<u16, u64>,
    /// Connections whose request was still unanswered [`GRACE`] after the end.
    pub stalled: u64,
    pub elapsed: Duration,
    /// Bodies of the 2xx answers to POSTs (orders), for the audit.
    pub created: Vec<Bytes>,
}

/// How long a run waits for the requests in flight at its end.
const GRACE: Duration = Duration::from_secs(15);

/// What one connection's task produced.
struct Worker {
    histogram: Histogram<u64>,
    errors: u64,
    answers: BTreeMap<u16, u64>,
    created: Vec<Bytes>,
}

impl Outcome {
    pub fn per_sec(&self) -> f64 {
        self.histogram.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// The round with the median requests/s, carrying the errors of every round.
pub fn median(mut rounds: Vec<Outcome>) -> Outcome {
    let errors = rounds.iter().map(|r| r.errors).sum();
    let stalled = rounds.iter().map(|r| r.stalled).sum();
    let mut answers = BTreeMap::new();
    for (status, n) in rounds.iter().flat_map(|r| &r.answers) {
        *answers.entry(*status).or_default() += n;
    }
    rounds.sort_by(|a, b| a.per_sec().total_cmp(&b.per_sec()));
    let mut median = rounds.swap_remove(rounds.len() / 2);
    (median.errors, median.answers, median.stalled) = (errors, answers, stalled);
    median
}

/// Runs `make` over `connections` connections, spread over `addrs`: `warmup` unmeasured, then
/// `measure`.
pub async fn run(
    addrs: &[SocketAddr],
    connections: usize,
    make: MakeCall,
    warmup: Duration,
    measure: Duration,
) -> Outcome {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..connections)
        .map(|w| {
            let (make, measuring, stop) = (make.clone(), measuring.clone(), stop.clone());
            let addr = addrs[w % addrs.len()];
            tokio::spawn(async move { worker(addr, w as u64, make, measuring, stop).await })
        })
        .collect();
    tokio::time::sleep(warmup).await;
    measuring.store(true, Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::sleep(measure).await;
    stop.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed();
    let mut outcome = Outcome {
        histogram: Histogram::new(3).expect("histogram"),
        errors: 0,
        answers: BTreeMap::new(),
        stalled: 0,
        elapsed,
        created: Vec::new(),
    };
    let deadline = tokio::time::Instant::now() + GRACE;
    for mut worker in workers {
        let Ok(done) = tokio::time::timeout_at(deadline, &mut worker).await else {
            worker.abort();
            outcome.stalled += 1;
            continue;
        };
        let done = done.expect("worker task");
        outcome.histogram.add(done.histogram).expect("same bounds");
        outcome.errors += done.errors;
        for (status, n) in done.answers {
            *outcome.answers.entry(status).or_default() += n;
        }
        outcome.created.extend(done.created);
    }
    outcome
}

async fn worker(
    addr: SocketAddr,
    id: u64,
    make: MakeCall,
    measuring: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Worker {
    let mut histogram = Histogram::<u64>::new(3).expect("histogram");
    let (mut errors, mut created, mut n) =
        (0u64, Vec::new(), id.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut answers = BTreeMap::new();
    let mut sender = None;
    while !stop.load(Ordering::Relaxed) {
        if sender.is_none() {
            sender = connect(addr).await;
            if sender.is_none() {
                errors += 1;
                *answers.entry(0).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        }
        n = n.wrapping_add(1);
        let call = make(n);
        let request = Request::builder()
            .method(if call.post { "POST" } else { "GET" })
            .uri(&call.path)
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(call.body)))
            .expect("valid request");
        let started = Instant::now();
        let answer = async {
            let response = sender
                .as_mut()
                .expect("connected")
                .send_request(request)
                .await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        }
        .await;
        let counted = measuring.load(Ordering::Relaxed);
        match answer {
            Ok((status, body)) if status.is_success() => {
                if counted {
                    histogram
                        .record(started.elapsed().as_micros().max(1) as u64)
                        .expect("in range");
                }
                if call.post {
                    // A copy: the body is a slice of hyper's read buffer and would keep all of
                    // it alive (gigabytes over a run, and the page faults to match).
                    created.push(Bytes::copy_from_slice(&body));
                }
            }
            Ok((status, _)) => {
                if counted {
                    errors += 1;
                    *answers.entry(status.as_u16()).or_default() += 1;
                }
            }
            Err(_) => {
                if counted {
                    errors += 1;
                    *answers.entry(0).or_default() += 1;
                }
                sender = None;
            }
        }
    }
    Worker {
        histogram,
        errors,
        answers,
        created,
    }
}

async fn connect(addr: SocketAddr) -> Option<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(connection);
    Some(sender)
}
