//! Service supervision: keeps a node's service actors (the notifier, the notification service,
//! the registry actor, the cluster's links and peer actors) running behind one stable reference.
//!
//! [`Supervision::spawn`] starts a service supervisor whose message type is its child's, so the
//! `ActorRef<M>` it returns is what every caller holds (order actors and the routing directory,
//! the `Registry` and `Links` handles), and it stays valid across restarts. The supervisor
//! forwards each message to its current child. When the child fails it restarts it from its
//! [`SpawnChild`] factory after a backoff (`first_backoff`, doubling with each failure still in
//! the window, capped at `max_backoff`); meanwhile it keeps up to `buffer` messages and delivers
//! them in order to the new child (beyond that they are dropped: their reply ports drop, so the
//! callers get `Unavailable` at once). More than `max_restarts` failures within `window`
//! escalate: the supervisor stays up but stops forwarding, and hands every message to the
//! service's [`ServiceSpec::escalated`] hook, which answers a health probe DOWN with the reason
//! ("restarting too often; escalated …") and drops anything else. The component stays degraded
//! until the node restarts; the rest of the node keeps serving. The one failure that goes
//! further is storage's (a [`StorageError`] or `sled::Error` in the last failure's chain): then
//! the supervisor itself fails, and the root supervisor stops the node. A child that stops
//! cleanly (at shutdown) leaves its supervisor answering as escalated ("stopped").
//!
//! Restarts and escalations are counted in `agora_service_restarts_total{service}` and
//! `agora_service_escalations_total{service}`. The waiting is a small starter actor per restart
//! (a timer message, then the factory), so a shutdown that stops it during its backoff wins over
//! the restart, and a factory that fails counts as one more failure.
//!
//! It sits beside `actors` rather than in it: the registry uses it, and `actors` imports the
//! registry's service names, so `actors::service` would make the two import each other.

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, MessagingErr};
use ractor::{Message, SupervisionEvent};

use crate::metrics::Metrics;
use crate::storage::StorageError;

/// When a failed service is restarted, and when it is escalated instead.
#[derive(Debug, Clone, Copy)]
pub struct ServicePolicy {
    /// Failures within `window` that are restarted; one more escalates.
    pub max_restarts: u32,
    pub window: Duration,
    /// The wait before the first restart; it doubles with each failure still in the window.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Most messages kept for the next child while one restarts.
    pub buffer: usize,
}

impl ServicePolicy {
    /// `max_restarts` within `window` (the entities' limits), 100 ms doubling up to 5 s, and
    /// 1000 messages kept during a restart.
    pub fn new(max_restarts: u32, window: Duration) -> ServicePolicy {
        ServicePolicy {
            max_restarts,
            window,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            buffer: 1000,
        }
    }

    /// The wait before restarting after the `failures`-th failure in the window.
    fn backoff(&self, failures: usize) -> Duration {
        let doublings = failures.saturating_sub(1).min(16) as u32;
        (self.first_backoff * 2u32.pow(doublings)).min(self.max_backoff)
    }
}

/// Spawns one incarnation of a service's child with the name and linked to the supervisor
/// cell it is given.
pub type SpawnChild<M> =
    Arc<dyn Fn(String, ActorCell) -> BoxFuture<'static, anyhow::Result<ActorRef<M>>> + Send + Sync>;

/// A [`SpawnChild`] from an async spawn function (each call builds the child's arguments anew).
pub fn child<M, F, Fut>(spawn: F) -> SpawnChild<M>
where
    F: Fn(String, ActorCell) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<ActorRef<M>>> + Send + 'static,
{
    Arc::new(move |name, supervisor| Box::pin(spawn(name, supervisor)))
}

/// A [`SpawnChild`] that spawns the actor and arguments `build` makes anew each time.
pub fn actor<A, F>(build: F) -> SpawnChild<A::Msg>
where
    A: Actor,
    F: Fn() -> (A, A::Arguments) + Send + Sync + 'static,
{
    child(move |name: String, supervisor| {
        let (actor, args) = build();
        async move {
            let spawned = Actor::spawn_linked(Some(name.clone()), actor, args, supervisor);
            let (child, _) = spawned
                .await
                .with_context(|| format!("cannot start {name}"))?;
            Ok(child)
        }
    })
}

/// One supervised service.
pub struct ServiceSpec<M> {
    /// Its short name, for metrics and logs.
    pub service: &'static str,
    /// The child's actor name; the supervisor's is `{name}.supervisor`.
    pub name: String,
    pub spawn: SpawnChild<M>,
    /// What the escalated service does with a message, given the reason: answer a health probe
    /// with it, drop the rest (a dropped reply port answers the caller `Unavailable`).
    pub escalated: fn(M, &str),
}

/// The [`ServiceSpec::escalated`] hook of a service with no health probe: drops the message.
pub fn drop_message<M>(_: M, _: &str) {}

/// Where service supervisors run: their parent (the root), their policy, their metrics.
#[derive(Clone)]
pub struct Supervision {
    pub parent: ActorCell,
    pub policy: ServicePolicy,
    pub metrics: Arc<Metrics>,
}

impl Supervision {
    /// Spawns the supervisor of `spec` and its first child; the reference it returns is the
    /// service's for good. Fails if the first child does not start.
    pub async fn spawn<M: Message>(&self, spec: ServiceSpec<M>) -> anyhow::Result<ActorRef<M>> {
        let name = format!("{}.supervisor", spec.name);
        let state = ServiceState {
            spec,
            policy: self.policy,
            metrics: self.metrics.clone(),
            child: Child::Stopped(String::new()),
            buffer: VecDeque::new(),
            failures: VecDeque::new(),
        };
        let supervisor = ServiceSupervisor(PhantomData);
        let spawned =
            Actor::spawn_linked(Some(name.clone()), supervisor, state, self.parent.clone());
        let (service, _) = spawned
            .await
            .with_context(|| format!("cannot start the service {name}"))?;
        Ok(service)
    }
}

#[cfg(test)]
impl Supervision {
    /// Under a test's root, with the default policy and metrics of its own.
    pub fn for_tests(parent: ActorCell) -> Supervision {
        Supervision {
            parent,
            policy: ServicePolicy::new(5, Duration::from_secs(10)),
            metrics: Arc::new(Metrics::new()),
        }
    }
}

struct ServiceSupervisor<M>(PhantomData<fn() -> M>);

enum Child<M> {
    Running(ActorRef<M>),
    /// Waiting for a starter actor to spawn the next child.
    Restarting,
    /// Not forwarding any more, for this reason.
    Stopped(String),
}

struct ServiceState<M> {
    spec: ServiceSpec<M>,
    policy: ServicePolicy,
    metrics: Arc<Metrics>,
    child: Child<M>,
    /// Messages for the next child, in arrival order; at most `policy.buffer`.
    buffer: VecDeque<M>,
    /// Failure times, only those within the window.
    failures: VecDeque<Instant>,
}

impl<M: Message> Actor for ServiceSupervisor<M> {
    type Msg = M;
    type State = ServiceState<M>;
    type Arguments = ServiceState<M>;

    async fn pre_start(
        &self,
        myself: ActorRef<M>,
        mut state: ServiceState<M>,
    ) -> Result<ServiceState<M>, ActorProcessingErr> {
        let child = (state.spec.spawn)(state.spec.name.clone(), myself.get_cell()).await?;
        state.child = Child::Running(child);
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<M>,
        message: M,
        state: &mut ServiceState<M>,
    ) -> Result<(), ActorProcessingErr> {
        state.forward(message);
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<M>,
        event: SupervisionEvent,
        state: &mut ServiceState<M>,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorStarted(cell) => state.started(cell),
            SupervisionEvent::ActorFailed(cell, error) => {
                state.failed(myself.get_cell(), cell, error).await?
            }
            SupervisionEvent::ActorTerminated(cell, _, reason) if !state.is_starter(&cell) => {
                let reason = reason.unwrap_or_else(|| "no reason".into());
                tracing::info!(service = state.spec.service, reason, "service stopped");
                state.stop_forwarding(format!("the service stopped ({reason})"));
            }
            _ => {}
        }
        Ok(())
    }
}

impl<M: Message> ServiceState<M> {
    fn forward(&mut self, message: M) {
        match &self.child {
            Child::Running(child) => {
                if let Err(MessagingErr::SendErr(message)) = child.send_message(message) {
                    // The child is gone and its failure is on the way: keep it for the next.
                    self.hold(message);
                }
            }
            Child::Restarting => self.hold(message),
            Child::Stopped(reason) => (self.spec.escalated)(message, reason),
        }
    }

    fn hold(&mut self, message: M) {
        if self.buffer.len() < self.policy.buffer {
            self.buffer.push_back(message);
        } else {
            tracing::debug!(service = self.spec.service, "restart buffer full; dropping");
        }
    }

    /// Starters are the children whose message type is [`Start`].
    fn is_starter(&self, cell: &ActorCell) -> bool {
        cell.is_message_type_of::<Start>() == Some(true)
    }

    /// A child started: the new one, unless it is a starter or the child already running.
    fn started(&mut self, cell: ActorCell) {
        if self.is_starter(&cell) || !matches!(self.child, Child::Restarting) {
            return;
        }
        tracing::info!(service = self.spec.service, "service restarted");
        let child = ActorRef::<M>::from(cell);
        while let Some(message) = self.buffer.pop_front() {
            if let Err(MessagingErr::SendErr(message)) = child.send_message(message) {
                self.buffer.push_front(message);
                break;
            }
        }
        self.child = Child::Running(child);
    }

    /// The child (or a starter, whose spawn failed) failed: restart or escalate.
    async fn failed(
        &mut self,
        myself: ActorCell,
        cell: ActorCell,
        error: ActorProcessingErr,
    ) -> Result<(), ActorProcessingErr> {
        if matches!(self.child, Child::Stopped(_)) {
            return Ok(());
        }
        let service = self.spec.service;
        let now = Instant::now();
        self.failures.push_back(now);
        while (self.failures.front()).is_some_and(|t| now.duration_since(*t) > self.policy.window) {
            self.failures.pop_front();
        }
        let failures = self.failures.len();
        if failures <= self.policy.max_restarts as usize {
            let backoff = self.policy.backoff(failures);
            let actor = cell.get_name().unwrap_or_else(|| cell.get_id().to_string());
            tracing::warn!(service, actor, %error, ?backoff, "service actor failed; restarting it");
            let restarts = &self.metrics.service_restarts;
            restarts.with_label_values(&[service]).inc();
            let args = StarterArgs {
                service: myself.clone(),
                name: self.spec.name.clone(),
                spawn: self.spec.spawn.clone(),
                backoff,
            };
            Actor::spawn_linked(None, Starter(PhantomData), args, myself)
                .await
                .context("cannot start a service restart")?;
            self.child = Child::Restarting;
            return Ok(());
        }
        let escalations = &self.metrics.service_escalations;
        escalations.with_label_values(&[service]).inc();
        if is_storage_failure(&*error) {
            tracing::error!(service, %error, "service failed on storage past its restart limit");
            let error = format!("service {service} keeps failing on storage: {error}");
            return Err(error.into());
        }
        let window = self.policy.window;
        let reason = format!(
            "restarting too often; escalated after {failures} failures within {window:?}: {error}"
        );
        tracing::error!(
            service,
            reason,
            "service escalated; the node serves on without it"
        );
        self.stop_forwarding(reason);
        Ok(())
    }

    /// From now on every message goes to the escalation hook, the buffered ones first.
    fn stop_forwarding(&mut self, reason: String) {
        for message in self.buffer.drain(..) {
            (self.spec.escalated)(message, &reason);
        }
        self.child = Child::Stopped(reason);
    }
}

/// Whether `error` is (or was caused by) a storage failure, which no restart mends.
fn is_storage_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .any(|e| e.is::<StorageError>() || e.is::<sled::Error>())
}

/// Waits one backoff, then spawns the next child under the service supervisor, and stops; it
/// fails (so the supervisor counts a failure) if the spawn does.
struct Starter<M>(PhantomData<fn() -> M>);

struct StarterArgs<M> {
    service: ActorCell,
    name: String,
    spawn: SpawnChild<M>,
    backoff: Duration,
}

/// The starter's timer: the backoff is over.
struct Start;

impl Message for Start {}

impl<M: Message> Actor for Starter<M> {
    type Msg = Start;
    type State = StarterArgs<M>;
    type Arguments = StarterArgs<M>;

    async fn pre_start(
        &self,
        myself: ActorRef<Start>,
        args: StarterArgs<M>,
    ) -> Result<StarterArgs<M>, ActorProcessingErr> {
        myself.send_after(args.backoff, || Start);
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<Start>,
        _: Start,
        args: &mut StarterArgs<M>,
    ) -> Result<(), ActorProcessingErr> {
        (args.spawn)(args.name.clone(), args.service.clone()).await?;
        myself.stop(None);
        Ok(())
    }
}
