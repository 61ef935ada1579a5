//! The supervisor of one entity kind: holds each live entity's state between commands, runs a
//! key's commands in one task at a time (`activation`), queueing those that arrive meanwhile,
//! passivates idle and least recently used entities, restarts failed ones from storage and
//! escalates past the restart limit. Callers (through the kind's `Route`) and the activation
//! tasks talk to it with [`SupervisorMsg`]; it answers `/health` with its live and escalated
//! keys.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

use super::activation::{self, Loaded, Outcome, Work};
use super::reply::reject;
use super::{Deps, Entity, SupervisorMsg};
use crate::error::ShopError;
use crate::health::ComponentHealth;

/// When to stop restarting: more than `max_restarts` failures of one key within `window`.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub window: Duration,
}

pub struct SupervisorArgs<E: Entity> {
    /// The node's name, for the supervisor's actor name.
    pub node: String,
    pub deps: Deps<E>,
    pub policy: RestartPolicy,
    pub idle: Duration,
    /// Live actors of this kind allowed at once: past it the least recently used one is
    /// passivated (`--max-live-entities`, as Akka Cluster Sharding's active-entity limit).
    pub max_live: usize,
}

/// One live entity.
struct Slot<E: Entity> {
    /// Its state while no task runs its work; `None` while one does (or loads it).
    idle: Option<Loaded<E>>,
    /// Work that arrived while a task ran, for the next run, in arrival order.
    queue: Vec<Work<E>>,
    last_used: Instant,
    /// Its place in `SupervisorState::recency`; `None` once passivated while its task ran (the
    /// state is then dropped when the task is done, unless more work came).
    used: Option<u64>,
}

pub struct SupervisorState<E: Entity> {
    args: SupervisorArgs<E>,
    slots: HashMap<E::Key, Slot<E>>,
    /// Exactly one entry per slot whose `used` is set, under it.
    recency: Recency<E::Key>,
    /// Failure times per key, only those within the restart window.
    failures: HashMap<E::Key, VecDeque<Instant>>,
    /// Keys that failed past the limit, refused until the instant given.
    escalated: HashMap<E::Key, Instant>,
    sweep: JoinHandle<()>,
    /// The running activation tasks: stopping waits for them (a shutdown flushes after).
    tasks: JoinSet<()>,
}

/// The keys of the live slots by when they were last used (a counter), oldest first.
struct Recency<K> {
    by_use: BTreeMap<u64, K>,
    next: u64,
}

impl<K> Default for Recency<K> {
    fn default() -> Self {
        Recency {
            by_use: BTreeMap::new(),
            next: 0,
        }
    }
}

impl<K: Clone> Recency<K> {
    /// Moves `key` (at `before`, if it had a place) to the young end; its new place.
    fn touch(&mut self, key: &K, before: Option<u64>) -> u64 {
        if let Some(before) = before {
            self.by_use.remove(&before);
        }
        self.next += 1;
        self.by_use.insert(self.next, key.clone());
        self.next
    }

    fn forget(&mut self, used: u64) {
        self.by_use.remove(&used);
    }
}

/// How long stopping waits for the entities' running work.
const STOP_WAIT: Duration = Duration::from_secs(10);

pub struct EntitySupervisor<E>(PhantomData<fn() -> E>);

/// Spawns the supervisor of kind `E`, linked to `root`, named `{node}/{kind}`.
pub async fn spawn_supervisor<E: Entity>(
    args: SupervisorArgs<E>,
    root: ActorCell,
) -> anyhow::Result<ActorRef<SupervisorMsg<E>>> {
    let name = format!("{}/{}", args.node, E::KIND);
    let (actor, _) = Actor::spawn_linked(
        Some(name.clone()),
        EntitySupervisor::<E>(PhantomData),
        args,
        root,
    )
    .await
    .map_err(|e| anyhow::anyhow!("cannot start supervisor {name}: {e}"))?;
    Ok(actor)
}

impl<E: Entity> SupervisorState<E> {
    /// What a key escalated past the restart limit answers until its window ends.
    fn escalated(key: &E::Key) -> ShopError {
        let msg = format!(
            "{} {key} keeps failing and was escalated; retry later",
            E::KIND
        );
        ShopError::Unavailable(msg)
    }

    fn count_passivation(&self) {
        let metrics = &self.args.deps.metrics;
        (metrics.actor_passivations)
            .with_label_values(&[E::KIND])
            .inc();
    }

    /// Drops the state of `key` when no task runs it; otherwise once its task is done.
    fn passivate(&mut self, key: &E::Key) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if let Some(used) = slot.used.take() {
            self.recency.forget(used);
        }
        if slot.idle.is_some() {
            self.slots.remove(key);
            self.count_passivation();
        }
    }

    /// Forgets `key` (its task is done, and it has nothing left to run).
    fn remove(&mut self, key: &E::Key) {
        if let Some(Slot {
            used: Some(used), ..
        }) = self.slots.remove(key)
        {
            self.recency.forget(used);
        }
    }

    /// Passivates the least recently used entities while more than the limit are live.
    fn keep_within_limit(&mut self) {
        while self.recency.by_use.len() > self.args.max_live {
            match self.recency.by_use.pop_first() {
                Some((_, key)) => self.passivate(&key),
                None => return,
            }
        }
    }

    /// Runs `work` on `key` in a task of its own, which reports back with
    /// [`SupervisorMsg::Done`].
    fn run(
        &mut self,
        myself: &ActorRef<SupervisorMsg<E>>,
        key: E::Key,
        loaded: Option<Loaded<E>>,
        work: Vec<Work<E>>,
    ) {
        let deps = self.args.deps.clone();
        let supervisor = myself.clone();
        let task = async move {
            let outcome = activation::run(deps, key.clone(), loaded, work).await;
            let _ = supervisor.cast(SupervisorMsg::Done { key, outcome });
        };
        // In the span of the command that caused it, so its request id follows the work.
        self.tasks.spawn(task.instrument(tracing::Span::current()));
        while self.tasks.try_join_next().is_some() {}
    }

    fn deliver(&mut self, myself: &ActorRef<SupervisorMsg<E>>, key: E::Key, work: Work<E>) {
        if let Some(until) = self.escalated.get(&key) {
            if *until > Instant::now() {
                return reject([work], Self::escalated(&key));
            }
            self.escalated.remove(&key);
        }
        let Some(slot) = self.slots.get_mut(&key) else {
            let slot = Slot {
                idle: None,
                queue: Vec::new(),
                last_used: Instant::now(),
                used: Some(self.recency.touch(&key, None)),
            };
            self.slots.insert(key.clone(), slot);
            self.run(myself, key, None, vec![work]);
            return self.keep_within_limit();
        };
        slot.last_used = Instant::now();
        slot.used = Some(self.recency.touch(&key, slot.used));
        let Some(loaded) = slot.idle.take() else {
            return slot.queue.push(work);
        };
        let work = match work {
            Work::Command(command) if !self.args.deps.is_replicated() => {
                match loaded.read(&key, command) {
                    Ok(()) => return slot.idle = Some(loaded),
                    Err(command) => Work::Command(command),
                }
            }
            work => work,
        };
        self.run(myself, key, Some(loaded), vec![work]);
    }

    fn on_done(&mut self, myself: &ActorRef<SupervisorMsg<E>>, key: E::Key, outcome: Outcome<E>) {
        let Some(slot) = self.slots.get_mut(&key) else {
            return;
        };
        let mut queue = std::mem::take(&mut slot.queue);
        match outcome {
            Outcome::Kept(loaded) if !queue.is_empty() => {
                self.run(myself, key, Some(loaded), queue)
            }
            Outcome::Kept(loaded) if slot.used.is_some() && loaded.keep_alive() => {
                slot.idle = Some(loaded)
            }
            Outcome::Kept(_) => {
                self.remove(&key);
                self.count_passivation();
            }
            Outcome::Dropped { mut rest } => {
                rest.append(&mut queue);
                self.run_afresh(myself, key, rest);
            }
            Outcome::Refused(error) => {
                self.remove(&key);
                reject(queue, error);
            }
            Outcome::Failed { error, mut rest } => {
                rest.append(&mut queue);
                self.on_failure(myself, key, error, rest);
            }
        }
    }

    /// Runs `work` on a state loaded afresh, or forgets `key` if there is none.
    fn run_afresh(&mut self, myself: &ActorRef<SupervisorMsg<E>>, key: E::Key, work: Vec<Work<E>>) {
        if work.is_empty() {
            self.remove(&key);
        } else {
            self.run(myself, key, None, work);
        }
    }

    /// A command of `key` failed: restart it from storage with `work`, or escalate.
    fn on_failure(
        &mut self,
        myself: &ActorRef<SupervisorMsg<E>>,
        key: E::Key,
        error: String,
        work: Vec<Work<E>>,
    ) {
        let metrics = self.args.deps.metrics.clone();
        metrics.actor_restarts.with_label_values(&[E::KIND]).inc();
        if self.record_failure(&key) {
            tracing::warn!(kind = E::KIND, %key, %error, "entity failed; restarting it from storage");
            return self.run_afresh(myself, key, work);
        }
        tracing::error!(kind = E::KIND, %key, %error, "entity failed past the restart limit; escalating");
        (metrics.actor_escalations)
            .with_label_values(&[E::KIND])
            .inc();
        self.remove(&key);
        self.escalated
            .insert(key.clone(), Instant::now() + self.args.policy.window);
        reject(work, Self::escalated(&key));
    }

    fn sweep_idle(&mut self) {
        let now = Instant::now();
        let idle = |slot: &Slot<E>| {
            slot.idle.is_some() && now.duration_since(slot.last_used) >= self.args.idle
        };
        let keys: Vec<E::Key> = (self.slots.iter())
            .filter(|(_, slot)| idle(slot))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.passivate(&key);
        }
    }

    /// Records a failure of `key`; true when it is still within the restart limit.
    fn record_failure(&mut self, key: &E::Key) -> bool {
        let now = Instant::now();
        let window = self.args.policy.window;
        let failures = self.failures.entry(key.clone()).or_default();
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            failures.pop_front();
        }
        failures.len() <= self.args.policy.max_restarts as usize
    }

    fn health(&self) -> ComponentHealth {
        let now = Instant::now();
        let escalated: Vec<String> = self
            .escalated
            .iter()
            .filter(|(_, until)| **until > now)
            .map(|(k, _)| k.to_string())
            .take(5)
            .collect();
        let active = self.slots.len();
        if escalated.is_empty() {
            ComponentHealth::up(format!("{active} {} actors", E::KIND))
        } else {
            ComponentHealth::degraded(format!(
                "{active} {} actors; escalated after repeated failures: {}",
                E::KIND,
                escalated.join(", ")
            ))
        }
    }
}

impl<E: Entity> Actor for EntitySupervisor<E> {
    type Msg = SupervisorMsg<E>;
    type State = SupervisorState<E>;
    type Arguments = SupervisorArgs<E>;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs<E>,
    ) -> Result<Self::State, ActorProcessingErr> {
        let every = (args.idle / 2).clamp(Duration::from_millis(200), Duration::from_secs(30));
        Ok(SupervisorState {
            args,
            slots: HashMap::new(),
            recency: Recency::default(),
            failures: HashMap::new(),
            escalated: HashMap::new(),
            sweep: myself.send_interval(every, || SupervisorMsg::SweepIdle),
            tasks: JoinSet::new(),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.sweep.abort();
        let finish = async { while state.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(STOP_WAIT, finish).await.is_err() {
            tracing::warn!(
                kind = E::KIND,
                "entity work still running after {STOP_WAIT:?}; stopping anyway"
            );
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Deliver { key, command } => {
                state.deliver(&myself, key, Work::Command(command))
            }
            SupervisorMsg::Done { key, outcome } => state.on_done(&myself, key, outcome),
            SupervisorMsg::Query(query) => {
                tokio::spawn(E::query(state.args.deps.clone(), query));
            }
            SupervisorMsg::InjectPanic { key } => {
                if state.slots.contains_key(&key) {
                    state.deliver(&myself, key, Work::Panic);
                }
            }
            SupervisorMsg::SweepIdle => state.sweep_idle(),
            SupervisorMsg::Health(reply) => {
                let _ = reply.send(state.health());
            }
        }
        Ok(())
    }
}
