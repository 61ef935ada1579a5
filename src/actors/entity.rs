//! The entity pattern every kind shares: one actor per key, spawned on demand by the kind's
//! supervisor, passivated when idle, restarted after a failure with its state reloaded from
//! sled, and escalated past a restart limit.
//!
//! The supervisor receives every command for its kind ([`SupervisorMsg::Deliver`]) and forwards
//! it to the key's actor, so it knows which keys are busy. While an actor is being passivated
//! (or restarted) commands for its key are buffered, so a key never has two actors: one writer
//! per key. Callers reach a kind through its [`Route`]; answers come back through [`Reply`].

mod reply;
mod route;
mod supervisor;

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Role;
use crate::health::ComponentHealth;
use crate::metrics::Metrics;
use crate::storage::{Storage, StorageError};

pub use self::reply::{decode_answer, reject, Reply};
pub use self::route::{Remote, RemoteRequest, Route};
pub use self::supervisor::{spawn_supervisor, EntitySupervisor, RestartPolicy, SupervisorArgs};

/// One kind of entity: its protocol, how its state loads and how it handles commands.
pub trait Entity: Send + Sync + Sized + 'static {
    /// The registry app this kind's service registers as.
    const SERVICE: &'static str;
    /// Short name for actor names, logs, metrics and requests between nodes.
    const KIND: &'static str;
    /// The role whose members own this kind's partitions.
    const ROLE: Role;
    /// Its text decides the partition; it crosses nodes with the command.
    type Key: Clone + Eq + Hash + Display + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The kind's protocol: one variant per request, carrying the request and its [`Reply`].
    /// It is serialisable (a reply encodes as nothing), so it also crosses to another node.
    type Command: Serialize + DeserializeOwned + Send + 'static;
    /// Kind-wide reads (lists) that no single entity answers.
    type Query: Send + 'static;
    type State: Send + 'static;
    /// The actors this kind calls (other kinds' routes, the notifier), given at start.
    type Calls: Clone + Send + Sync + 'static;

    /// Loads the state of `key` from storage (absent records load as an empty state).
    fn load(deps: &Deps<Self>, key: &Self::Key) -> Result<Self::State, StorageError>;

    /// Handles one command, replying through its [`Reply`]. An `Err` fails the actor, which
    /// the supervisor restarts from storage (the dropped reply answers `Unavailable`).
    fn handle(
        deps: &Deps<Self>,
        key: &Self::Key,
        state: &mut Self::State,
        command: Self::Command,
    ) -> impl Future<Output = Result<(), ActorProcessingErr>> + Send;

    /// Answers a kind-wide query (runs in its own task, not in the supervisor).
    fn query(deps: Deps<Self>, query: Self::Query) -> impl Future<Output = ()> + Send + 'static;

    /// Whether the actor stays in memory after a command (until idle). An entity rarely asked
    /// twice, or a key that does not exist, is passivated at once: live actors then stay
    /// bounded by the working set, not by how many keys were ever asked for.
    fn keep_alive(state: &Self::State) -> bool;
}

/// Everything an entity actor of kind `E` needs besides its own state.
pub struct Deps<E: Entity> {
    pub storage: Storage,
    pub metrics: Arc<Metrics>,
    pub calls: E::Calls,
}

impl<E: Entity> Clone for Deps<E> {
    fn clone(&self) -> Self {
        Deps {
            storage: self.storage.clone(),
            metrics: self.metrics.clone(),
            calls: self.calls.clone(),
        }
    }
}

/// A request to one entity: the variant of its kind's protocol it becomes, and what it answers.
/// Sent with [`Route::ask`] (or `routing::Directory::ask`), here or on the owning node.
pub trait EntityRequest: Send + 'static {
    type Entity: Entity;
    type Response: Serialize + DeserializeOwned + Send + 'static;
    /// Whether it writes: a remote owner makes its writes durable before it answers.
    const WRITES: bool;

    fn into_command(self, reply: Reply<Self::Response>) -> <Self::Entity as Entity>::Command;
}

/// The key type of a request's entity.
pub type KeyOf<R> = <<R as EntityRequest>::Entity as Entity>::Key;

/// `impl EntityRequest for $request`: it becomes `$variant($request, reply)` of `$entity`'s
/// protocol and answers `$response`. This is all the macro writes.
#[macro_export]
macro_rules! entity_request {
    ($request:ty => $entity:ty, $variant:path, $response:ty, writes: $writes:expr) => {
        impl $crate::actors::entity::EntityRequest for $request {
            type Entity = $entity;
            type Response = $response;
            const WRITES: bool = $writes;

            fn into_command(
                self,
                reply: $crate::actors::entity::Reply<$response>,
            ) -> <$entity as $crate::actors::entity::Entity>::Command {
                $variant(self, reply)
            }
        }
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
    deps: Deps<E>,
    key: E::Key,
    state: E::State,
    supervisor: ActorRef<SupervisorMsg<E>>,
}

impl<E: Entity> Actor for EntityActor<E> {
    type Msg = EntityMsg<E>;
    type State = Loaded<E>;
    type Arguments = (Deps<E>, E::Key, ActorRef<SupervisorMsg<E>>);

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
    /// The actor of `key` started in the background (or could not load its state).
    Started {
        key: E::Key,
        started: Result<ActorRef<EntityMsg<E>>, String>,
    },
    /// The entity actor `actor` of `key` need not stay in memory: passivate it.
    Release {
        key: E::Key,
        actor: ActorId,
    },
    Health(RpcReplyPort<ComponentHealth>),
}

impl<E: Entity> ractor::Message for SupervisorMsg<E> {}
