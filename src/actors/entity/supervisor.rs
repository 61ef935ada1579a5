//! The supervisor of one entity kind: spawns each key's actor on demand, forwards it the
//! key's commands (buffering them while the actor stops or restarts), passivates idle or
//! released actors, restarts failed ones from storage and escalates past the restart limit,
//! and keeps the kind's service registered. Entity actors and callers talk to it through
//! [`SupervisorMsg`]; it answers `/health` with its active and escalated keys.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{Entity, EntityActor, EntityMsg, SupervisorMsg};
use crate::actors::{Deps, ShopError};
use crate::health::ComponentHealth;
use crate::registry::LocalInstance;

/// When to stop restarting: more than `max_restarts` failures of one key within `window`.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    pub max_restarts: u32,
    pub window: Duration,
}

pub struct SupervisorArgs {
    pub deps: Deps,
    pub policy: RestartPolicy,
    pub idle: Duration,
    pub lease: Duration,
    /// The gateway's address, advertised in the registry.
    pub http_addr: SocketAddr,
}

enum Slot<E: Entity> {
    Active {
        actor: ActorRef<EntityMsg<E>>,
        last_used: Instant,
    },
    /// The actor is stopping or failed; commands wait here for its successor.
    Waiting { buffer: Vec<E::Command> },
    /// The actor is starting (loading its state) in its own task, so the supervisor never
    /// waits for a spawn; commands wait here until it is up.
    Starting { buffer: Vec<E::Command> },
}

pub struct SupervisorState<E: Entity> {
    args: SupervisorArgs,
    slots: HashMap<E::Key, Slot<E>>,
    keys_by_actor: HashMap<ActorId, E::Key>,
    /// Failure times per key, only those within the restart window.
    failures: HashMap<E::Key, VecDeque<Instant>>,
    /// Keys that failed past the limit, refused until the instant given.
    escalated: HashMap<E::Key, Instant>,
    instance_id: String,
    timers: Vec<JoinHandle<()>>,
}

pub struct EntitySupervisor<E>(PhantomData<fn() -> E>);

/// Spawns the supervisor of kind `E`, linked to `root`, named `{node}/{kind}`.
pub async fn spawn_supervisor<E: Entity>(
    args: SupervisorArgs,
    root: ActorCell,
) -> anyhow::Result<ActorRef<SupervisorMsg<E>>> {
    let name = format!("{}/{}", args.deps.node, E::KIND);
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

/// Tells an active actor to stop after the commands it already has; commands that arrive
/// meanwhile wait in the slot for its successor.
fn passivate<E: Entity>(slot: &mut Slot<E>) {
    if let Slot::Active { actor, .. } = slot {
        let _ = actor.cast(EntityMsg::Passivate);
        *slot = Slot::Waiting { buffer: Vec::new() };
    }
}

impl<E: Entity> SupervisorState<E> {
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
                .map_err(|e| format!("cannot load {} {key}: {e}", E::KIND));
            let _ = supervisor.cast(SupervisorMsg::Started { key, started });
        };
        // In the span of the command that caused it, so its request id follows the commands
        // sent once the actor is up.
        tokio::spawn(start.instrument(tracing::Span::current()));
    }

    fn on_started(&mut self, key: E::Key, started: Result<ActorRef<EntityMsg<E>>, String>) {
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
                let last_used = Instant::now();
                let slot = Slot::Active {
                    actor: actor.clone(),
                    last_used,
                };
                self.slots.insert(key.clone(), slot);
                for command in buffer {
                    self.send(&actor, key.clone(), command);
                }
            }
            Err(e) => buffer
                .into_iter()
                .for_each(|c| E::reject(c, ShopError::Internal(e.clone()))),
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
                    self.slots.insert(key, Slot::Waiting { buffer });
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
                return E::reject(command, ShopError::Unavailable(msg));
            }
            self.escalated.remove(&key);
        }
        let actor = match self.slots.get_mut(&key) {
            Some(Slot::Active { actor, last_used }) => {
                *last_used = Instant::now();
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
        for slot in self.slots.values_mut() {
            if let Slot::Active { last_used, .. } = slot {
                if now.duration_since(*last_used) >= self.args.idle {
                    passivate(slot);
                }
            }
        }
    }

    fn release(&mut self, key: &E::Key, id: ActorId) {
        if let Some(slot @ Slot::Active { .. }) = self.slots.get_mut(key) {
            if matches!(slot, Slot::Active { actor, .. } if actor.get_id() == id) {
                passivate(slot);
            }
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
                    buffer
                        .into_iter()
                        .for_each(|c| E::reject(c, ShopError::Unavailable(msg.clone())));
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

    async fn renew_lease(&mut self) {
        let instance = self.local_instance();
        let registry = &self.args.deps.directory.registry;
        registry
            .keep_registered(&instance, &mut self.instance_id)
            .await;
    }

    fn local_instance(&self) -> LocalInstance {
        LocalInstance {
            app: E::SERVICE,
            node: self.args.deps.node.clone(),
            actor_name: format!("{}/{}", self.args.deps.node, E::KIND),
            http_addr: self.args.http_addr,
        }
    }
}

impl<E: Entity> Actor for EntitySupervisor<E> {
    type Msg = SupervisorMsg<E>;
    type State = SupervisorState<E>;
    type Arguments = SupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: SupervisorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let sweep = (args.idle / 2).clamp(Duration::from_millis(200), Duration::from_secs(30));
        let renew = (args.lease / 3).max(Duration::from_millis(200));
        let timers = vec![
            myself.send_interval(sweep, || SupervisorMsg::SweepIdle),
            myself.send_interval(renew, || SupervisorMsg::RenewLease),
        ];
        let mut state = SupervisorState {
            args,
            slots: HashMap::new(),
            keys_by_actor: HashMap::new(),
            failures: HashMap::new(),
            escalated: HashMap::new(),
            instance_id: String::new(),
            timers,
        };
        state.instance_id = state
            .args
            .deps
            .directory
            .registry
            .register_local(state.local_instance())
            .await?;
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.timers.iter().for_each(JoinHandle::abort);
        let _ = state
            .args
            .deps
            .directory
            .registry
            .cancel(E::SERVICE, &state.instance_id)
            .await;
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
            SupervisorMsg::RenewLease => state.renew_lease().await,
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
