//! A Jepsen-style history of a test's client operations, orders of one unit and stock reads,
//! each with its client, node, start, end and outcome, and its check against the state the
//! cluster ends in: nothing acknowledged lost and nothing refused kept, every unit of stock
//! accounted for, one `OrderPlaced` per order, and reads linearizable for a stock that only
//! goes down. The checks are pure ([`check`], on the operations and a [`Final`] state), so
//! synthetic histories test them; [`History`] talks to the nodes through `TestApp`. A failed
//! check writes the history to `<target dir>/histories/` and names the seed to replay it with.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agora::domain::OrderNumber;
use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde_json::{json, Value};

use self::check::{check, Anomaly};
use crate::integration::support::{order_body, order_line, target_dir, TestApp};

/// Past this, a request has no answer: its outcome is unknown.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);
/// How long the final state may take to settle (events on their way to the notifications).
const SETTLE: Duration = Duration::from_secs(30);
const SETTLE_POLL: Duration = Duration::from_millis(200);
/// Anomalies a failure shows (the file has every one).
const SHOWN: usize = 5;

/// What an operation got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "camelCase")]
pub enum Outcome {
    /// 201: the order exists.
    Placed,
    /// 409: out of stock, the order does not exist.
    Refused,
    /// 503 with Retry-After: the order may or may not exist.
    Unavailable,
    /// No answer (a timeout, a connection error): the order may or may not exist.
    Indeterminate(String),
    /// A read's stock.
    Stock(i64),
    ReadFailed(String),
    /// An answer no order may get (not 201, 409, or 503 in JSON with Retry-After).
    Unexpected(String),
}

/// An order of one unit of `sku` (its `number`), or a read of its stock (no number).
#[derive(Debug, Clone, Serialize)]
struct Op {
    client: usize,
    /// The gateway's base URL.
    node: String,
    sku: String,
    number: Option<String>,
    /// Since the history's start.
    #[serde(serialize_with = "millis")]
    start: Duration,
    #[serde(serialize_with = "millis")]
    end: Duration,
    #[serde(flatten)]
    outcome: Outcome,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.number {
            Some(number) => write!(f, "order {number}")?,
            None => write!(f, "read")?,
        }
        let (sku, client, node) = (&self.sku, self.client, &self.node);
        let (start, end, outcome) = (self.start, self.end, &self.outcome);
        write!(f, " of {sku} by client {client} via {node}, ")?;
        write!(f, "{start:.1?}–{end:.1?}: {outcome:?}")
    }
}

fn millis<S: serde::Serializer>(time: &Duration, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_f64(time.as_secs_f64() * 1000.0)
}

/// Every operation of a test, shared by its clients, and notes (faults) at their times.
pub struct History {
    test: String,
    seed: u64,
    started: Instant,
    ops: Mutex<Vec<Op>>,
    notes: Mutex<Vec<Value>>,
}

impl History {
    /// An empty history of `test`, whose faults came from `seed`; its clock starts now.
    pub fn new(test: &str, seed: u64) -> History {
        History {
            test: test.to_owned(),
            seed,
            started: Instant::now(),
            ops: Mutex::default(),
            notes: Mutex::default(),
        }
    }

    /// Client `client` orders one unit of `sku` through `app`, under a fresh Idempotency-Key.
    pub async fn order(&self, client: usize, app: &TestApp, sku: &str) -> Outcome {
        let key = uuid::Uuid::new_v4().to_string();
        self.order_under(client, app, sku, &key).await
    }

    /// The same under Idempotency-Key `key`: a retry of an order whose answer was not final.
    pub async fn order_under(&self, client: usize, app: &TestApp, sku: &str, key: &str) -> Outcome {
        let number = OrderNumber::for_idempotency_key(key).to_string();
        let mut op = self.begin(client, app, sku, Some(number));
        let body = order_body(vec![order_line(sku, 1)]);
        let request = app.http(Method::POST, "/api/order").json(&body);
        let outcome = match send(request.header("idempotency-key", key)).await {
            Err(e) => Outcome::Indeterminate(e),
            Ok((201, _, body)) => {
                if let Some(number) = body["orderNumber"].as_str() {
                    op.number = Some(number.to_owned());
                }
                Outcome::Placed
            }
            Ok((409, ..)) => Outcome::Refused,
            Ok((503, true, body)) if body.is_object() => Outcome::Unavailable,
            Ok((status, retry_after, body)) => {
                Outcome::Unexpected(format!("{status} (Retry-After: {retry_after}) {body}"))
            }
        };
        self.end(op, outcome)
    }

    /// Client `client` reads the stock of `sku` through `app`.
    pub async fn read_stock(&self, client: usize, app: &TestApp, sku: &str) -> Outcome {
        let op = self.begin(client, app, sku, None);
        let request = app.http(Method::GET, &format!("/api/inventory?skuCode={sku}"));
        let outcome = match send(request).await {
            Ok((200..=299, _, body)) => match levels(&body).get(sku) {
                Some(&quantity) => Outcome::Stock(quantity),
                None => Outcome::ReadFailed(body.to_string()),
            },
            answer => Outcome::ReadFailed(format!("{answer:?}")),
        };
        self.end(op, outcome)
    }

    /// An operation starting now, indeterminate until [`History::end`].
    fn begin(&self, client: usize, app: &TestApp, sku: &str, number: Option<String>) -> Op {
        let (node, sku, start) = (app.base.clone(), sku.to_owned(), self.started.elapsed());
        let outcome = Outcome::Indeterminate("under way".to_owned());
        Op {
            client,
            node,
            sku,
            number,
            start,
            end: start,
            outcome,
        }
    }

    /// `op` ends now with `outcome`, which it returns.
    fn end(&self, mut op: Op, outcome: Outcome) -> Outcome {
        (op.end, op.outcome) = (self.started.elapsed(), outcome.clone());
        self.ops.lock().expect("history").push(op);
        outcome
    }

    /// Notes what happened at `at` besides the operations (a fault), for the history's file.
    pub fn note(&self, at: Instant, what: impl Into<String>) {
        let at = at.saturating_duration_since(self.started).as_secs_f64() * 1000.0;
        let note = json!({"at": at, "what": what.into()});
        self.notes.lock().expect("history").push(note);
    }

    /// Checks the history against the final state read through `app`, the stock having
    /// started at `initial`; retried a while as long as every anomaly may yet settle. Fails
    /// the test on any anomaly (see [`History::fail`]); else prints and returns the tally.
    /// For after the clients stopped and the faults healed: an operation still running is
    /// not in the history, and `TestApp` fails the test if orders or notifications cannot
    /// be listed.
    pub async fn verify(&self, app: &TestApp, initial: &BTreeMap<String, u64>) -> Summary {
        let ops = self.ops.lock().expect("history").clone();
        let deadline = Instant::now() + SETTLE;
        loop {
            // Fails on a state read after the deadline, however long a look took.
            let last_look = Instant::now() >= deadline;
            let state = Final::read(app, initial).await;
            let anomalies = check(&ops, initial, &state);
            if anomalies.is_empty() {
                break;
            }
            if last_look || !anomalies.iter().all(|a| a.check.settles()) {
                self.fail(&ops, &state, &anomalies);
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
        let summary = Summary::of(&ops);
        eprintln!("history {} (seed {}): {summary:?}", self.test, self.seed);
        summary
    }

    /// Writes the history, the final state and the anomalies to
    /// `<target dir>/histories/<test>-<seed>.json`, then fails the test with the first few.
    fn fail(&self, ops: &[Op], state: &Final, anomalies: &[Anomaly]) -> ! {
        let dir = target_dir().join("histories");
        let path = dir.join(format!("{}-{}.json", self.test, self.seed));
        let listed: Vec<&str> = state.orders.iter().filter_map(number).collect();
        let notes = self.notes.lock().expect("history").clone();
        let record = json!({
            "test": self.test, "seed": self.seed, "anomalies": anomalies, "notes": notes,
            "ops": ops, "final": {"stock": state.stock, "orders": listed},
        });
        let record = serde_json::to_string_pretty(&record).expect("JSON");
        let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, record));
        let shown = anomalies.iter().take(SHOWN).map(|a| format!("{a:?}"));
        let (test, seed, shown) = (&self.test, self.seed, shown.collect::<Vec<_>>());
        panic!(
            "{} anomalies in the history of {test} (seed {seed}: replay with \
             AGORA_NEMESIS_SEED={seed}), the history in {} ({written:?}):\n{}",
            anomalies.len(),
            path.display(),
            shown.join("\n")
        );
    }
}

/// Sends `request`: its status, whether Retry-After came, and its JSON body (null if none); or
/// why no answer came.
async fn send(request: RequestBuilder) -> Result<(u16, bool, Value), String> {
    let response = request.timeout(ANSWER_WITHIN).send().await;
    let response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    Ok((
        status,
        retry_after,
        response.json().await.unwrap_or_default(),
    ))
}

/// `[{"skuCode": .., "quantity": ..}]` (`GET /api/inventory`) as SKU → quantity.
/// The stock per SKU in the body of `GET /api/inventory`.
pub fn levels(body: &Value) -> BTreeMap<String, i64> {
    let level = |l: &Value| Some((l["skuCode"].as_str()?.to_owned(), l["quantity"].as_i64()?));
    body.as_array()
        .into_iter()
        .flatten()
        .filter_map(level)
        .collect()
}

fn number(order: &Value) -> Option<&str> {
    order["orderNumber"].as_str()
}

/// What the cluster ends with: its orders, stock per SKU (a SKU not read is missing), and
/// notifications.
struct Final {
    orders: Vec<Value>,
    stock: BTreeMap<String, i64>,
    notifications: Vec<Value>,
}

impl Final {
    async fn read(app: &TestApp, initial: &BTreeMap<String, u64>) -> Final {
        let query: Vec<String> = initial.keys().map(|s| format!("skuCode={s}")).collect();
        let request = app.http(Method::GET, &format!("/api/inventory?{}", query.join("&")));
        let stock = match send(request).await {
            Ok((200..=299, _, body)) => levels(&body),
            _ => BTreeMap::new(),
        };
        let (orders, notifications) = (app.all_orders().await, app.notifications().await);
        Final {
            orders,
            stock,
            notifications,
        }
    }
}

/// How many operations of each outcome a history has (unexpected answers as indeterminate).
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub ops: usize,
    pub placed: usize,
    pub refused: usize,
    pub unavailable: usize,
    pub indeterminate: usize,
    pub reads: usize,
    pub reads_failed: usize,
}

impl Summary {
    fn of(ops: &[Op]) -> Summary {
        let mut summary = Summary {
            ops: ops.len(),
            ..Summary::default()
        };
        for op in ops {
            *match op.outcome {
                Outcome::Placed => &mut summary.placed,
                Outcome::Refused => &mut summary.refused,
                Outcome::Unavailable => &mut summary.unavailable,
                Outcome::Indeterminate(_) | Outcome::Unexpected(_) => &mut summary.indeterminate,
                Outcome::Stock(_) => &mut summary.reads,
                Outcome::ReadFailed(_) => &mut summary.reads_failed,
            } += 1;
        }
        summary
    }
}

mod check;
#[cfg(test)]
mod tests;
