//! Support for the unit tests inside `src/`: a throwaway supervisor for the actors under test,
//! and one way to wait for a condition. Integration tests have their own (`tests/integration/
//! support.rs`), since they only see the crate's public API.

use std::future::Future;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};

use crate::domain::{Order, OrderNumber, OrderStatus, Price};

/// A placed order `number` with no lines, for tests of what stores or carries orders.
pub fn empty_order(number: OrderNumber) -> Order {
    Order {
        number,
        status: OrderStatus::Placed,
        lines: Vec::new(),
        total: Price::from_cents(1).expect("one cent is a price"),
        created_ms: 0,
        fingerprint: 0,
        restocked: false,
        saga: Default::default(),
    }
}

/// A supervisor for the actors under test: it outlives their stopping and ignores their
/// failures (the test asserts on those itself).
pub struct TestRoot;

/// The test root has nothing to be asked.
pub enum TestRootMsg {}

impl ractor::Message for TestRootMsg {}

impl Actor for TestRoot {
    type Msg = TestRootMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<TestRootMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<TestRootMsg>,
        _: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

impl TestRoot {
    /// Spawns an unnamed test root.
    pub async fn spawn() -> ActorRef<TestRootMsg> {
        let (root, _) = Actor::spawn(None, TestRoot, ())
            .await
            .expect("the test root starts");
        root
    }
}

/// Polls `done` every 20 ms until it holds, failing the test after `deadline`.
pub async fn eventually<F: Future<Output = bool>>(
    what: &str,
    deadline: Duration,
    done: impl Fn() -> F,
) {
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
