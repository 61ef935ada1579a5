//! The entity pattern every kind shares: one activation per key (an actor in the sense of
//! Orleans or Akka's sharded entities: its own state and queue, one command at a time), made on
//! demand by the kind's supervisor, passivated when idle or least recently used, restarted
//! after a failure with its state reloaded from sled, and escalated past a restart limit.
//!
//! The supervisor receives every command for its kind ([`SupervisorMsg::Deliver`]), holds each
//! live entity's state between commands, and runs a key's queued commands in one task at a
//! time (`activation`), so a key never has two writers. Callers reach a kind through its
//! [`Route`]; answers come back through [`Reply`].

mod activation;
mod replica;
mod reply;
mod route;
mod supervisor;

use std::fmt::Display;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use ractor::{ActorProcessingErr, RpcReplyPort};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::Role;
use crate::domain::SagaId;
use crate::error::ShopError;
use crate::health::ComponentHealth;
use crate::metrics::Metrics;
use crate::storage::{Batch, Storage, StorageError, Table, TableKey};

use self::activation::Outcome;
use self::replica::Writes;
pub use self::replica::{Committed, Replicas, Tenure};
pub use self::reply::{decode_answer, reject, Reply};
pub use self::route::{ClusterView, MemberView, PartitionView, Remote, RemoteRequest, Route};
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

    /// Answers `command` from `state` alone, at once, if it only reads; gives it back otherwise.
    /// The supervisor asks this of an idle entity on a node alone (among replicas a read first
    /// confirms leadership), so such a read costs no task. It runs in the supervisor: it must
    /// not panic (clone and reply).
    fn read(
        key: &Self::Key,
        state: &Self::State,
        command: Self::Command,
    ) -> Result<(), Self::Command> {
        let _ = (key, state);
        Err(command)
    }

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
    /// Where writes go: storage directly, or the partition's replicas under the actor's tenure.
    writes: Writes,
}

impl<E: Entity> Clone for Deps<E> {
    fn clone(&self) -> Self {
        Deps {
            storage: self.storage.clone(),
            metrics: self.metrics.clone(),
            calls: self.calls.clone(),
            writes: self.writes.clone(),
        }
    }
}

impl<E: Entity> Deps<E> {
    /// `replicas` is `None` on a node alone: writes then go straight to storage.
    pub fn new(
        storage: Storage,
        metrics: Arc<Metrics>,
        calls: E::Calls,
        replicas: Option<Arc<dyn Replicas>>,
    ) -> Deps<E> {
        Deps {
            storage,
            metrics,
            calls,
            writes: Writes {
                replicas,
                ..Writes::default()
            },
        }
    }

    /// Writes `batch`. On a node alone it is written at once and durable after
    /// [`Deps::durable`]; among replicas it returns once committed on a majority.
    pub async fn commit(&self, batch: Batch) -> Result<(), ShopError> {
        self.writes.commit(&self.storage, batch).await
    }

    /// Returns once every write committed before is durable: the node's group commit on a
    /// node alone or after a [`Committed::Unflushed`] commit; otherwise a commit already is.
    pub async fn durable(&self) -> Result<(), ShopError> {
        if !self.writes.flush_needed() {
            return Ok(());
        }
        let flushed = self.storage.durable().await;
        if flushed.is_err() {
            // Still not known durable: the next call flushes again.
            self.writes
                .unflushed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(flushed?)
    }

    /// The raft term this actor leads its partition in (0 on a node alone, where no other
    /// node runs its key).
    pub fn term(&self) -> u64 {
        self.writes.tenure.map_or(0, |tenure| tenure.term)
    }

    /// A new saga's id: this term, and a number no earlier saga of this node drew.
    pub fn new_saga(&self) -> Result<SagaId, ShopError> {
        let seq = self.storage.next_id()?;
        Ok(SagaId {
            term: self.term(),
            seq,
        })
    }

    /// Whether writes are replicated (a cluster) rather than local.
    pub fn is_replicated(&self) -> bool {
        self.writes.replicas.is_some()
    }

    /// Up to `limit` records of `table` after `after` that this node answers lists for: all
    /// of them on a node alone; among replicas, those of the partitions it leads (every
    /// replica holds them, and each partition must be listed once).
    pub fn page<K, V>(
        &self,
        table: &Table<K, V>,
        after: Option<&K>,
        limit: usize,
    ) -> Result<Vec<(K, V)>, StorageError>
    where
        K: TableKey + Display,
        V: crate::codec::Record,
    {
        let Some(replicas) = &self.writes.replicas else {
            return table.scan(after, limit);
        };
        let leads = |key: &K| replicas.leads(replicas.partition(&key.to_string()));
        let mut page = Vec::new();
        for entry in table.entries_after(after) {
            let (key, stored) = entry?;
            if page.len() == limit {
                break;
            }
            if leads(&key) {
                let value = stored.read()?;
                page.push((key, value));
            }
        }
        Ok(page)
    }

    /// Confirms this node still leads the partition of `key` (see [`Replicas::lead`]): the
    /// tenure, and whether it differs from the one the state was loaded under.
    async fn lead(&mut self, key: &E::Key) -> Result<bool, ShopError> {
        let Some(replicas) = &self.writes.replicas else {
            return Ok(false);
        };
        let tenure = replicas.lead(replicas.partition(&key.to_string())).await?;
        let changed = self.writes.tenure != Some(tenure);
        self.writes.tenure = Some(tenure);
        Ok(changed)
    }
}

/// A request to one entity: the variant of its kind's protocol it becomes, and what it answers.
/// Sent with [`Route::ask`] (or `routing::Directory::ask`), here or on the owning node.
pub trait EntityRequest: Serialize + DeserializeOwned + Send + 'static {
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
    /// The task running the work of `key` is done.
    Done {
        key: E::Key,
        outcome: Outcome<E>,
    },
    Health(RpcReplyPort<ComponentHealth>),
}

impl<E: Entity> ractor::Message for SupervisorMsg<E> {}
