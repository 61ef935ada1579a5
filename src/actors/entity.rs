//! The entity pattern every kind shares: one actor per key, spawned on demand by the kind's
//! supervisor, passivated when idle, restarted after a failure with its state reloaded from
//! sled, and escalated past a restart limit.
//!
//! The supervisor receives every command for its kind ([`SupervisorMsg::Deliver`]) and forwards
//! it to the key's actor, so it knows which keys are busy. While an actor is being passivated
//! (or restarted) commands for its key are buffered, so a key never has two actors: one writer
//! per key. The supervisor also registers its service in the registry and renews the lease.

use std::collections::{HashMap, VecDeque};
use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::task::JoinHandle;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ask, Deps, Reply, ShopError};
use crate::config::Role;
use crate::health::ComponentHealth;
use crate::registry::LocalInstance;
use crate::storage::StorageError;

/// One kind of entity: how its state loads and how it handles commands.
pub trait Entity: Send + Sync + Sized + 'static {
    /// The registry app this kind's supervisor registers as.
    const SERVICE: &'static str;
    /// Short name for actor names, logs and metrics.
    const KIND: &'static str;
    /// The role whose members own this kind's partitions.
    const ROLE: Role;
    /// Its text decides the partition; it crosses nodes inside remote requests.
    type Key: Clone + Eq + Hash + Display + Serialize + DeserializeOwned + Send + Sync + 'static;
    type Command: Send + 'static;
    /// Kind-wide reads (lists) that no single entity answers.
    type Query: Send + 'static;
    type State: Send + 'static;

    /// Loads the state of `key` from storage (absent records load as an empty state).
    fn load(deps: &Deps, key: &Self::Key) -> Result<Self::State, StorageError>;

    /// Handles one command, replying through its port. An `Err` fails the actor, which the
    /// supervisor restarts from storage.
    fn handle(
        deps: &Deps,
        key: &Self::Key,
        state: &mut Self::State,
        command: Self::Command,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send;

    /// Answers a kind-wide query (runs in its own task, not in the supervisor).
    fn query(deps: Deps, query: Self::Query) -> impl Future<Output = ()> + Send + 'static;

    /// Answers a command that cannot be delivered with `error`.
    fn reject(command: Self::Command, error: ShopError);

    /// Whether the actor stays in memory after a command (until idle). An entity rarely asked
    /// twice, or a key that does not exist, is passivated at once: live actors then stay
    /// bounded by the working set, not by how many keys were ever asked for.
    fn keep_alive(state: &Self::State) -> bool;
}

/// A request to one entity that can travel to the node owning its key: it and its answer are
/// serialisable, so [`crate::actors::Directory::ask`] serves it locally or through the cluster.
pub trait EntityRequest: Serialize + DeserializeOwned + Send + 'static {
    type Entity: Entity;
    type Response: Serialize + DeserializeOwned + Send + 'static;
    /// Whether it writes: a remote owner makes its writes durable before it answers.
    const WRITES: bool;

    fn into_command(self, reply: Reply<Self::Response>) -> <Self::Entity as Entity>::Command;
}

/// The key type of a request's entity.
pub type KeyOf<R> = <<R as EntityRequest>::Entity as Entity>::Key;

/// Implements [`EntityRequest`] for request structs whose command variant has the same name
/// and fields plus `reply`.
#[macro_export]
macro_rules! entity_requests {
    ($entity:ty, $command:ident { $($request:ident { $($field:ident),* } -> $response:ty, writes: $writes:expr;)* }) => {
        $(
            impl $crate::actors::entity::EntityRequest for $request {
                type Entity = $entity;
                type Response = $response;
                const WRITES: bool = $writes;

                fn into_command(self, reply: $crate::actors::Reply<$response>) -> $command {
                    let $request { $($field),* } = self;
                    $command::$request { $($field,)* reply }
                }
            }
        )*
    };
}

/// A message to one entity actor.
pub enum EntityMsg<E: Entity> {
    Command(E::Command),
    /// Stop after the commands already queued (sent by the supervisor when idle).
    Passivate,
    /// Panic, to exercise supervision (only reachable with fault injection on).
    Panic,
}

impl<E: Entity> ractor::Message for EntityMsg<E> {}

struct EntityActor<E>(PhantomData<fn() -> E>);

struct Loaded<E: Entity> {
    deps: Deps,
    key: E::Key,
    state: E::State,
    supervisor: ActorRef<SupervisorMsg<E>>,
}

impl<E: Entity> Actor for EntityActor<E> {
    type Msg = EntityMsg<E>;
    type State = Loaded<E>;
    type Arguments = (Deps, E::Key, ActorRef<SupervisorMsg<E>>);

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        (deps, key, supervisor): Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let state = E::load(&deps, &key)?;
        Ok(Loaded {
            deps,
            key,
            state,
            supervisor,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        loaded: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EntityMsg::Command(command) => {
                E::handle(&loaded.deps, &loaded.key, &mut loaded.state, command).await?;
                if !E::keep_alive(&loaded.state) {
                    let done = SupervisorMsg::Release {
                        key: loaded.key.clone(),
                        actor: myself.get_id(),
                    };
                    let _ = loaded.supervisor.cast(done);
                }
                Ok(())
            }
            EntityMsg::Passivate => {
                myself.stop(Some("passivated".into()));
                Ok(())
            }
            EntityMsg::Panic => panic!("fault injection: {} {} panics", E::KIND, loaded.key),
        }
    }
}

/// A message to a kind's supervisor.
pub enum SupervisorMsg<E: Entity> {
    /// Forward `command` to the actor of `key`, spawning it if needed.
    Deliver {
        key: E::Key,
        command: E::Command,
    },
    Query(E::Query),
    /// Make the actor of `key` panic (fault injection).
    InjectPanic {
        key: E::Key,
    },
    /// Passivate entities idle for longer than the idle timeout.
    SweepIdle,
    /// The entity actor `actor` of `key` need not stay in memory: passivate it.
    Release {
        key: E::Key,
        actor: ActorId,
    },
    /// Renew this service's registry lease.
    RenewLease,
    Health(RpcReplyPort<ComponentHealth>),
}

impl<E: Entity> ractor::Message for SupervisorMsg<E> {}

/// Sends `command` to the entity `key` through its kind's supervisor and waits for the reply.
pub async fn ask_entity<E: Entity, T: Send + 'static>(
    supervisor: &ActorRef<SupervisorMsg<E>>,
    key: E::Key,
    command: impl FnOnce(Reply<T>) -> E::Command,
    timeout: Duration,
) -> Result<T, ShopError> {
    let message = |reply| SupervisorMsg::Deliver {
        key,
        command: command(reply),
    };
    ask(supervisor, message, timeout).await
}

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
    async fn spawn_entity(
        &mut self,
        myself: &ActorRef<SupervisorMsg<E>>,
        key: &E::Key,
    ) -> Result<ActorRef<EntityMsg<E>>, ShopError> {
        let args = (self.args.deps.clone(), key.clone(), myself.clone());
        let (actor, _) =
            Actor::spawn_linked(None, EntityActor::<E>(PhantomData), args, myself.get_cell())
                .await
                .map_err(|e| ShopError::Internal(format!("cannot load {} {key}: {e}", E::KIND)))?;
        self.keys_by_actor.insert(actor.get_id(), key.clone());
        self.slots.insert(
            key.clone(),
            Slot::Active {
                actor: actor.clone(),
                last_used: Instant::now(),
            },
        );
        Ok(actor)
    }

    async fn deliver(
        &mut self,
        myself: &ActorRef<SupervisorMsg<E>>,
        key: E::Key,
        command: E::Command,
    ) {
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
            Some(Slot::Waiting { buffer }) => return buffer.push(command),
            None => match self.spawn_entity(myself, &key).await {
                Ok(actor) => actor,
                Err(e) => return E::reject(command, e),
            },
        };
        if let Err(ractor::MessagingErr::SendErr(EntityMsg::Command(command))) =
            actor.cast(EntityMsg::Command(command))
        {
            // The actor died and its exit is not processed yet: hold the command for its successor.
            self.slots.insert(
                key,
                Slot::Waiting {
                    buffer: vec![command],
                },
            );
        }
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

    async fn on_exit(
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
            for command in buffer {
                self.deliver(myself, key.clone(), command).await;
            }
            if failure.is_some() && !self.slots.contains_key(&key) {
                if let Err(e) = self.spawn_entity(myself, &key).await {
                    tracing::error!(kind = E::KIND, %key, error = %e, "entity actor could not be restarted");
                }
            }
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
            SupervisorMsg::Deliver { key, command } => state.deliver(&myself, key, command).await,
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
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.on_exit(&myself, &cell, None).await
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                state.on_exit(&myself, &cell, Some(error.to_string())).await
            }
            _ => {}
        }
        Ok(())
    }
}
