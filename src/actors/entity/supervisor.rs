//! The supervisor of one entity kind: spawns each key's actor on demand, forwards it the
//! key's commands (buffering them while the actor stops or restarts), passivates idle or
//! released actors, restarts failed ones from storage and escalates past the restart limit.
//! Entity actors and callers (through the kind's `Route`) talk to it with [`SupervisorMsg`]; it
//! answers `/health` with its active and escalated keys.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::reply::reject;
use super::{Deps, Entity, EntityActor, EntityMsg, SupervisorMsg};
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

enum Slot<E: Entity> {
    Active {
        actor: ActorRef<EntityMsg<E>>,
        last_used: Instant,
        /// Its place in `SupervisorState::recency`.
        used: u64,
    },
    /// The actor is stopping or failed; commands wait here for its successor.
    Waiting { buffer: Vec<E::Command> },
    /// The actor is starting (loading its state) in its own task, so the supervisor never
    /// waits for a spawn; commands wait here until it is up.
    Starting { buffer: Vec<E::Command> },
}

pub struct SupervisorState<E: Entity> {
    args: SupervisorArgs<E>,
    slots: HashMap<E::Key, Slot<E>>,
    /// Exactly one entry per `Slot::Active`, under its `used`.
    recency: Recency<E::Key>,
    keys_by_actor: HashMap<ActorId, E::Key>,
    /// Failure times per key, only those within the restart window.
    failures: HashMap<E::Key, VecDeque<Instant>>,
    /// Keys that failed past the limit, refused until the instant given.
    escalated: HashMap<E::Key, Instant>,
    sweep: JoinHandle<()>,
}

/// The keys of the active slots by when they were last used (a counter), oldest first.
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
    /// Tells the active actor of `key` to stop after the commands it already has; commands
    /// that arrive meanwhile wait in the slot for its successor.
    fn passivate(&mut self, key: &E::Key) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        if let Slot::Active { actor, used, .. } = slot {
            let _ = actor.cast(EntityMsg::Passivate);
            self.recency.forget(*used);
            let metrics = &self.args.deps.metrics;
            metrics
                .actor_passivations
                .with_label_values(&[E::KIND])
                .inc();
            *slot = Slot::Waiting { buffer: Vec::new() };
        }
    }

    /// Passivates the least recently used actors while more than the limit are live.
    fn keep_within_limit(&mut self) {
        while self.recency.by_use.len() > self.args.max_live {
            match self.recency.by_use.pop_first() {
                Some((_, key)) => self.passivate(&key),
                None => return,
            }
        }
    }

    /// Starts the actor of `key` in a task of its own; `buffer` goes to it once it is up
    /// ([`SupervisorMsg::Started`]).
    fn start_entity(
        &mut self,
        myself: &ActorRef<SupervisorMsg<E>>,
        key: E::Key,
        buffer: Vec<E::Command>,
    ) {
        self.slots.insert(key.clone(), Slot::Starting { buffer });
        let args = (self.args.deps.clone(), key.clone(), myself.clone());
        let supervisor = myself.clone();
        let start = async move {
            let actor = EntityActor::<E>(PhantomData);
            let started = Actor::spawn_linked(None, actor, args, supervisor.get_cell())
                .await
                .map(|(actor, _)| actor)
                .map_err(|e| match e {
                    // Not this node's to serve (it does not lead the key's partition): as it is.
                    ractor::SpawnErr::StartupFailed(e) if e.is::<ShopError>() => e
                        .downcast::<ShopError>()
                        .map_or_else(|e| ShopError::Internal(e.to_string()), |e| *e),
                    e => ShopError::Internal(format!("cannot load {} {key}: {e}", E::KIND)),
                });
            let _ = supervisor.cast(SupervisorMsg::Started { key, started });
        };
        // In the span of the command that caused it, so its request id follows the commands
        // sent once the actor is up.
        tokio::spawn(start.instrument(tracing::Span::current()));
    }

    fn on_started(&mut self, key: E::Key, started: Result<ActorRef<EntityMsg<E>>, ShopError>) {
        let buffer = match self.slots.remove(&key) {
            Some(Slot::Starting { buffer }) => buffer,
            Some(other) => {
                self.slots.insert(key, other);
                return;
            }
            None => Vec::new(),
        };
        match started {
            Ok(actor) => {
                self.keys_by_actor.insert(actor.get_id(), key.clone());
                let slot = Slot::Active {
                    actor: actor.clone(),
                    last_used: Instant::now(),
                    used: self.recency.touch(&key, None),
                };
                self.slots.insert(key.clone(), slot);
                for command in buffer {
                    self.send(&actor, key.clone(), command);
                }
                self.keep_within_limit();
            }
            Err(e) => reject(buffer, e),
        }
    }

    /// Sends `command` to the key's actor, or holds it for a successor if the actor just died.
    fn send(&mut self, actor: &ActorRef<EntityMsg<E>>, key: E::Key, command: E::Command) {
        if let Err(ractor::MessagingErr::SendErr(EntityMsg::Command(command))) =
            actor.cast(EntityMsg::Command(command))
        {
            // Its exit is not processed yet: the command waits for the successor.
            match self.slots.get_mut(&key) {
                Some(Slot::Waiting { buffer }) => buffer.push(command),
                _ => {
                    let buffer = vec![command];
                    let was = self.slots.insert(key, Slot::Waiting { buffer });
                    if let Some(Slot::Active { used, .. }) = was {
                        self.recency.forget(used);
                    }
                }
            }
        }
    }

    fn deliver(&mut self, myself: &ActorRef<SupervisorMsg<E>>, key: E::Key, command: E::Command) {
        if let Some(until) = self.escalated.get(&key) {
            if *until > Instant::now() {
                let msg = format!(
                    "{} {key} keeps failing and was escalated; retry later",
                    E::KIND
                );
                return reject([command], ShopError::Unavailable(msg));
            }
            self.escalated.remove(&key);
        }
        let actor = match self.slots.get_mut(&key) {
            Some(Slot::Active {
                actor,
                last_used,
                used,
            }) => {
                *last_used = Instant::now();
                *used = self.recency.touch(&key, Some(*used));
                actor.clone()
            }
            Some(Slot::Waiting { buffer } | Slot::Starting { buffer }) => {
                return buffer.push(command)
            }
            None => return self.start_entity(myself, key, vec![command]),
        };
        self.send(&actor, key, command);
    }

    fn sweep_idle(&mut self) {
        let now = Instant::now();
        let idle = |slot: &Slot<E>| matches!(slot, Slot::Active { last_used, .. } if now.duration_since(*last_used) >= self.args.idle);
        let keys: Vec<E::Key> = (self.slots.iter())
            .filter(|(_, slot)| idle(slot))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.passivate(&key);
        }
    }

    fn release(&mut self, key: &E::Key, id: ActorId) {
        if matches!(self.slots.get(key), Some(Slot::Active { actor, .. }) if actor.get_id() == id) {
            self.passivate(key);
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

    fn on_exit(
        &mut self,
        myself: &ActorRef<SupervisorMsg<E>>,
        cell: &ActorCell,
        failure: Option<String>,
    ) {
        let Some(key) = self.keys_by_actor.remove(&cell.get_id()) else {
            return;
        };
        let buffer = match self.slots.remove(&key) {
            Some(Slot::Waiting { buffer }) => buffer,
            Some(Slot::Active { used, .. }) => {
                self.recency.forget(used);
                Vec::new()
            }
            _ => Vec::new(),
        };
        let restart = match &failure {
            None => !buffer.is_empty(),
            Some(error) => {
                self.args
                    .deps
                    .metrics
                    .actor_restarts
                    .with_label_values(&[E::KIND])
                    .inc();
                if self.record_failure(&key) {
                    tracing::warn!(kind = E::KIND, %key, %error, "entity actor failed; restarting it from storage");
                    true
                } else {
                    tracing::error!(kind = E::KIND, %key, %error, "entity actor failed past the restart limit; escalating");
                    self.args
                        .deps
                        .metrics
                        .actor_escalations
                        .with_label_values(&[E::KIND])
                        .inc();
                    self.escalated
                        .insert(key.clone(), Instant::now() + self.args.policy.window);
                    let msg = format!(
                        "{} {key} keeps failing and was escalated; retry later",
                        E::KIND
                    );
                    reject(buffer, ShopError::Unavailable(msg));
                    return;
                }
            }
        };
        if restart {
            self.start_entity(myself, key, buffer);
        }
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
            keys_by_actor: HashMap::new(),
            failures: HashMap::new(),
            escalated: HashMap::new(),
            sweep: myself.send_interval(every, || SupervisorMsg::SweepIdle),
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.sweep.abort();
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SupervisorMsg::Deliver { key, command } => state.deliver(&myself, key, command),
            SupervisorMsg::Started { key, started } => state.on_started(key, started),
            SupervisorMsg::Query(query) => {
                tokio::spawn(E::query(state.args.deps.clone(), query));
            }
            SupervisorMsg::InjectPanic { key } => {
                if let Some(Slot::Active { actor, .. }) = state.slots.get(&key) {
                    let _ = actor.cast(EntityMsg::Panic);
                }
            }
            SupervisorMsg::SweepIdle => state.sweep_idle(),
            SupervisorMsg::Release { key, actor } => state.release(&key, actor),
            SupervisorMsg::Health(reply) => {
                let _ = reply.send(state.health());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, _) => state.on_exit(&myself, &cell, None),
            SupervisionEvent::ActorFailed(cell, error) => {
                state.on_exit(&myself, &cell, Some(error.to_string()))
            }
            _ => {}
        }
        Ok(())
    }
}
