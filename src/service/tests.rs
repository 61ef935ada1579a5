//! The service supervisor on a tiny child that fails on command: restarts behind the same
//! reference, delivery of what arrived meanwhile, escalation past the limit with fast failures,
//! the storage failure that goes further, and the metrics. (The notifier rebuilds its producer
//! in place instead of failing: `actors::notifier::tests::faults`.)

use std::sync::atomic::{AtomicU32, Ordering};

use ractor::rpc::CallResult;
use ractor::{ActorStatus, RpcReplyPort};
use tokio::sync::Semaphore;

use super::*;
use crate::test_support::{eventually, TestRoot, TestRootMsg};

/// How long a test waits for the supervisor to get somewhere.
const DEADLINE: Duration = Duration::from_secs(30);

enum FlakyMsg {
    /// Which incarnation is this (1 for the first)?
    Generation(RpcReplyPort<u32>),
    Health(RpcReplyPort<String>),
    Panic,
    FailOnStorage,
}

impl Message for FlakyMsg {}

struct Flaky;

impl Actor for Flaky {
    type Msg = FlakyMsg;
    type State = u32;
    type Arguments = u32;

    async fn pre_start(
        &self,
        _: ActorRef<FlakyMsg>,
        generation: u32,
    ) -> Result<u32, ActorProcessingErr> {
        Ok(generation)
    }

    async fn handle(
        &self,
        _: ActorRef<FlakyMsg>,
        message: FlakyMsg,
        generation: &mut u32,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            FlakyMsg::Generation(reply) => {
                let _ = reply.send(*generation);
            }
            FlakyMsg::Health(reply) => {
                let _ = reply.send("UP".into());
            }
            FlakyMsg::Panic => panic!("told to panic"),
            FlakyMsg::FailOnStorage => {
                let error = anyhow::Error::from(StorageError::Flush("the disk is gone".into()));
                return Err(error.context("writing the outbox").into());
            }
        }
        Ok(())
    }
}

/// An escalated flaky service answers its health probe with the reason.
fn health_down(message: FlakyMsg, reason: &str) {
    if let FlakyMsg::Health(reply) = message {
        let _ = reply.send(format!("DOWN: {reason}"));
    }
}

struct Fixture {
    service: ActorRef<FlakyMsg>,
    /// Children spawned so far (the generation of the latest).
    spawns: Arc<AtomicU32>,
    /// Restarts wait for a permit here (the first spawn does not).
    gate: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    _root: ActorRef<TestRootMsg>,
}

impl Fixture {
    /// A flaky service named `name` (unique among the tests); with `gated`, each restart waits
    /// for a permit; the spawn of generation `fail_spawn` fails.
    async fn start(name: &str, policy: ServicePolicy, gated: bool, fail_spawn: u32) -> Fixture {
        let root = TestRoot::spawn().await;
        let metrics = Arc::new(Metrics::new());
        let spawns = Arc::new(AtomicU32::new(0));
        let gate = Arc::new(Semaphore::new(if gated {
            0
        } else {
            Semaphore::MAX_PERMITS
        }));
        let (counter, permits) = (spawns.clone(), gate.clone());
        let spawn = move |name: String, supervisor| {
            let (counter, permits) = (counter.clone(), permits.clone());
            async move {
                let generation = counter.fetch_add(1, Ordering::SeqCst) + 1;
                if generation > 1 {
                    permits.acquire().await?.forget();
                }
                anyhow::ensure!(
                    generation != fail_spawn,
                    "generation {generation} fails to start"
                );
                let (actor, _) =
                    Actor::spawn_linked(Some(name), Flaky, generation, supervisor).await?;
                Ok(actor)
            }
        };
        let supervision = Supervision {
            parent: root.get_cell(),
            policy,
            metrics: metrics.clone(),
        };
        let spec = ServiceSpec {
            service: "flaky",
            name: name.to_owned(),
            spawn: child(spawn),
            escalated: health_down,
        };
        let service = supervision.spawn(spec).await.expect("the service starts");
        Fixture {
            service,
            spawns,
            gate,
            metrics,
            _root: root,
        }
    }

    async fn generation(&self) -> CallResult<u32> {
        let asked = self
            .service
            .call(FlakyMsg::Generation, Some(DEADLINE))
            .await;
        asked.expect("the supervisor takes messages")
    }

    /// Fails the current child and waits until the next generation answers.
    async fn fail_and_wait_for(&self, generation: u32) {
        self.service.cast(FlakyMsg::Panic).unwrap();
        eventually("the next generation answers", DEADLINE, || async {
            matches!(self.generation().await, CallResult::Success(g) if g == generation)
        })
        .await;
    }

    fn restarts(&self) -> u64 {
        self.metrics
            .service_restarts
            .with_label_values(&["flaky"])
            .get()
    }

    fn escalations(&self) -> u64 {
        self.metrics
            .service_escalations
            .with_label_values(&["flaky"])
            .get()
    }
}

fn policy(max_restarts: u32) -> ServicePolicy {
    ServicePolicy {
        first_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        ..ServicePolicy::new(max_restarts, Duration::from_secs(600))
    }
}

#[tokio::test]
async fn a_failed_child_restarts_behind_the_same_ref_and_gets_what_arrived_meanwhile() {
    let f = Fixture::start("svc-test-restart", policy(5), true, 0).await;
    assert!(matches!(f.generation().await, CallResult::Success(1)));
    f.service.cast(FlakyMsg::Panic).unwrap();
    eventually("the failure is counted", DEADLINE, || async {
        f.restarts() == 1
    })
    .await;
    // The restart waits at the gate: these arrive while no child runs.
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (tx, rx) = ractor::concurrency::oneshot();
        f.service.cast(FlakyMsg::Generation(tx.into())).unwrap();
        answers.push(rx);
    }
    f.gate.add_permits(1);
    for answer in answers {
        assert_eq!(answer.await.expect("delivered to the new child"), 2);
    }
    assert!(matches!(f.generation().await, CallResult::Success(2)));
    assert_eq!((f.restarts(), f.escalations()), (1, 0));
    assert_eq!(f.spawns.load(Ordering::SeqCst), 2);
    println!(
        "restart test: service_restarts_total{{service=\"flaky\"}} = {}",
        f.restarts()
    );
}

#[tokio::test]
async fn past_the_limit_it_escalates_fails_fast_and_keeps_running() {
    let f = Fixture::start("svc-test-escalate", policy(2), false, 0).await;
    f.fail_and_wait_for(2).await;
    f.fail_and_wait_for(3).await;
    f.service.cast(FlakyMsg::Panic).unwrap();
    eventually("the service escalates", DEADLINE, || async {
        f.escalations() == 1
    })
    .await;
    // No child, no timeout: the reply port is dropped at once.
    assert!(matches!(f.generation().await, CallResult::SenderError));
    let health = f
        .service
        .call(FlakyMsg::Health, Some(DEADLINE))
        .await
        .unwrap();
    let CallResult::Success(health) = health else {
        panic!("the escalated service answers its health probe")
    };
    assert!(
        health.starts_with("DOWN: restarting too often; escalated"),
        "{health}"
    );
    assert!(health.contains("told to panic"), "{health}");
    assert_eq!(f.service.get_status(), ActorStatus::Running);
    assert_eq!((f.restarts(), f.escalations()), (2, 1));
    assert_eq!(f.spawns.load(Ordering::SeqCst), 3);
    println!(
        "escalation test: service_restarts_total = {}, service_escalations_total = {}",
        f.restarts(),
        f.escalations()
    );
}

#[tokio::test]
async fn a_child_that_fails_to_start_counts_as_a_failure_and_is_retried() {
    let f = Fixture::start("svc-test-spawn-fails", policy(5), false, 2).await;
    f.fail_and_wait_for(3).await;
    assert_eq!((f.restarts(), f.escalations()), (2, 0));
}

#[tokio::test]
async fn a_storage_failure_past_the_limit_fails_the_supervisor() {
    let f = Fixture::start("svc-test-storage", policy(0), false, 0).await;
    f.service.cast(FlakyMsg::FailOnStorage).unwrap();
    eventually("the supervisor stops", DEADLINE, || async {
        f.service.get_status() == ActorStatus::Stopped
    })
    .await;
    assert_eq!((f.restarts(), f.escalations()), (0, 1));
}
