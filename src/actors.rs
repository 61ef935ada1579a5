//! Actors: the supervised entities (one actor per product, per SKU's stock, per order), the
//! root supervisor, the notifier and the notification service.
//!
//! Requests go through the [`Directory`]: to the kind's supervisor on this node (found through
//! the registry) when this node owns the key, or through the cluster to the owning node's.
//! The supervisor forwards each command to the entity actor for its key, spawning it on demand.
//! Replies come back through reply ports as `Result<_, ShopError>`.

pub mod entity;
pub mod notification;
pub mod notifier;
pub mod order;
pub mod product;
pub mod recovery;
pub mod root;
pub mod stock;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use ractor::{ActorCell, ActorRef, RpcReplyPort};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use self::entity::{ask_entity, Entity, EntityRequest, KeyOf, SupervisorMsg};
use crate::cluster::layout::Layout;
use crate::cluster::links::Links;
use crate::cluster::remote::{ListRequest, RemoteRequest};
use crate::config::Role;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::storage::{Storage, StorageError};

/// What an entity command can fail with; the gateway maps each variant to one HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum ShopError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("not enough stock for {}", .0.join(", "))]
    OutOfStock(Vec<String>),
    #[error("no product has SKU {}", .0.join(", "))]
    UnknownSku(Vec<String>),
    #[error("the catalog price differs for {}", .0.join(", "))]
    PriceChanged(Vec<String>),
    #[error("order {0} is already cancelled")]
    AlreadyCancelled(String),
    #[error("a product with SKU {0} already exists")]
    SkuTaken(String),
    #[error("{0}")]
    Invalid(String),
    #[error("this Idempotency-Key was used with a different order")]
    IdempotencyMismatch,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StorageError> for ShopError {
    fn from(err: StorageError) -> Self {
        ShopError::Internal(err.to_string())
    }
}

/// A reply port for an entity command.
pub type Reply<T> = RpcReplyPort<Result<T, ShopError>>;

/// Sends a request and waits for its reply, turning actor failures into [`ShopError`]s.
pub async fn request<M, T>(
    actor: &ActorRef<M>,
    make: impl FnOnce(RpcReplyPort<T>) -> M,
    timeout: Duration,
) -> Result<T, ShopError>
where
    M: ractor::Message,
    T: Send + 'static,
{
    use ractor::rpc::CallResult;
    match actor.call(make, Some(timeout)).await {
        Ok(CallResult::Success(reply)) => Ok(reply),
        Ok(CallResult::Timeout) => Err(ShopError::Unavailable(
            "the actor did not answer in time".into(),
        )),
        Ok(CallResult::SenderError) => Err(ShopError::Unavailable(
            "the actor stopped before answering (it is restarting: retry)".into(),
        )),
        Err(e) => Err(ShopError::Unavailable(format!(
            "the actor is not running: {e}"
        ))),
    }
}

/// [`request`] for commands whose reply is itself a `Result<T, ShopError>`.
pub async fn ask<M, T>(
    actor: &ActorRef<M>,
    make: impl FnOnce(Reply<T>) -> M,
    timeout: Duration,
) -> Result<T, ShopError>
where
    M: ractor::Message,
    T: Send + 'static,
{
    request(actor, make, timeout).await?
}

/// Everything an entity actor needs besides its own state.
#[derive(Clone)]
pub struct Deps {
    pub node: String,
    pub storage: Storage,
    pub directory: Directory,
    pub metrics: Arc<Metrics>,
}

/// Finds the actor that serves a request: this node's, through the registry, or the owning
/// node's, through the cluster.
#[derive(Clone)]
pub struct Directory {
    pub registry: Registry,
    pub layout: Arc<Layout>,
    /// Calls to other nodes; `None` when the node runs alone.
    pub links: Option<Links>,
    /// Timeout of one call to an actor of this node.
    pub call_timeout: Duration,
}

/// A kind-wide list gathered from every node that owns part of it.
#[derive(Debug)]
pub struct Gathered<T> {
    pub items: Vec<T>,
    /// Nodes that did not answer: the list lacks their part.
    pub missing: Vec<String>,
}

impl<T> Gathered<T> {
    /// Keeps the first `limit` items in `key` order (the right page, since every node sent its
    /// first `limit` after the same cursor) and gives the key to continue after when the page
    /// is full.
    pub fn first_page<K: Ord>(&mut self, limit: usize, key: impl Fn(&T) -> K) -> Option<K> {
        self.items.sort_by_key(&key);
        self.items.truncate(limit);
        self.items
            .last()
            .filter(|_| self.items.len() == limit)
            .map(key)
    }
}

impl Directory {
    /// Sends `request` to the entity `key`, on whichever node owns it, and waits for the answer.
    pub async fn ask<R: EntityRequest>(
        &self,
        key: KeyOf<R>,
        request: R,
    ) -> Result<R::Response, ShopError>
    where
        RemoteRequest: From<(KeyOf<R>, R)>,
    {
        let Some(owner) = self.owner::<R::Entity>(&key)? else {
            return self.ask_here(key, request).await;
        };
        self.remote()?
            .call(&owner, RemoteRequest::from((key, request)))
            .await
    }

    /// Sends `request` to the entity `key` without waiting for its answer: a cast on this node,
    /// a call in a task of its own to another node. What becomes of it is not known.
    pub fn tell<R: EntityRequest>(&self, key: KeyOf<R>, request: R)
    where
        RemoteRequest: From<(KeyOf<R>, R)>,
    {
        match self.owner::<R::Entity>(&key) {
            Ok(None) => {
                // Nobody waits: the answer goes to a port whose other end is dropped.
                let (port, _) = ractor::concurrency::oneshot();
                let command = request.into_command(port.into());
                if let Ok(supervisor) = self.supervisor::<R::Entity>() {
                    let _ = supervisor.cast(SupervisorMsg::Deliver { key, command });
                }
            }
            _ => {
                let directory = self.clone();
                tokio::spawn(async move { directory.ask(key, request).await });
            }
        }
    }

    /// Sends `request` to the entity `key` on this node.
    pub async fn ask_here<R: EntityRequest>(
        &self,
        key: KeyOf<R>,
        request: R,
    ) -> Result<R::Response, ShopError> {
        let supervisor = self.supervisor::<R::Entity>()?;
        let command = |reply| request.into_command(reply);
        ask_entity(&supervisor, key, command, self.call_timeout).await
    }

    /// Sends a kind-wide query (a list of this node's entities) to this node's supervisor.
    pub async fn query_here<E: Entity, T: Send + 'static>(
        &self,
        query: impl FnOnce(Reply<T>) -> E::Query,
    ) -> Result<T, ShopError> {
        let supervisor = self.supervisor::<E>()?;
        let message = |reply| SupervisorMsg::Query(query(reply));
        ask(&supervisor, message, self.call_timeout).await
    }

    /// This node's supervisor of kind `E`.
    pub fn supervisor<E: Entity>(&self) -> Result<ActorRef<SupervisorMsg<E>>, ShopError> {
        self.resolve(E::SERVICE)
    }

    /// `None` when this node owns `key`, else the owner's name.
    fn owner<E: Entity>(&self, key: &E::Key) -> Result<Option<String>, ShopError> {
        if self.layout.is_single() {
            return Ok(None);
        }
        let owner = self
            .layout
            .owner(E::ROLE, &key.to_string())
            .ok_or_else(|| {
                ShopError::Unavailable(format!("no member of the cluster runs {:?}", E::ROLE))
            })?;
        Ok((owner != self.layout.node()).then(|| owner.to_owned()))
    }

    fn remote(&self) -> Result<&Links, ShopError> {
        self.links
            .as_ref()
            .ok_or_else(|| ShopError::Unavailable("this node is not in a cluster".into()))
    }

    /// Asks each of `nodes` for its part of `list` (this node's part through `here`), at once,
    /// and collects what answered. Fails only if this node's own part fails.
    pub async fn gather<T: DeserializeOwned>(
        &self,
        nodes: Vec<String>,
        list: ListRequest,
        here: impl std::future::Future<Output = Result<Vec<T>, ShopError>>,
    ) -> Result<Gathered<T>, ShopError> {
        let own = nodes.iter().any(|n| n == self.layout.node());
        let others: Vec<String> = nodes
            .into_iter()
            .filter(|n| n != self.layout.node())
            .collect();
        let calls = others.iter().map(|node| async {
            match self.remote() {
                Ok(links) => {
                    links
                        .call::<Vec<T>>(node, RemoteRequest::List(list.clone()))
                        .await
                }
                Err(e) => Err(e),
            }
        });
        let (mine, theirs) = futures::join!(
            async {
                match own {
                    true => here.await,
                    false => Ok(Vec::new()),
                }
            },
            join_all(calls)
        );
        let mut gathered = Gathered {
            items: mine?,
            missing: Vec::new(),
        };
        for (node, answer) in others.into_iter().zip(theirs) {
            match answer {
                Ok(items) => gathered.items.extend(items),
                Err(e) => {
                    tracing::warn!(node, error = %e, "a node's part of a list is missing");
                    gathered.missing.push(node);
                }
            }
        }
        Ok(gathered)
    }

    /// The members that own partitions of `role` (just this node when it runs alone).
    pub fn owners_of(&self, role: Role) -> Vec<String> {
        self.layout.members_with(role).map(str::to_owned).collect()
    }

    /// The actor registered for `app` (for example [`crate::registry::ORDER_SERVICE`]).
    pub fn resolve<M: ractor::Message>(&self, app: &str) -> Result<ActorRef<M>, ShopError> {
        let name = self
            .registry
            .actor_name(app)
            .ok_or_else(|| ShopError::Unavailable(format!("no instance of {app} is up")))?;
        ractor::registry::where_is(name.clone())
            .map(ActorRef::from)
            .ok_or_else(|| ShopError::Unavailable(format!("actor {name} of {app} is not running")))
    }
}

/// Stops an actor after stopping its children, depth first.
pub async fn stop_children_first(cell: ActorCell) {
    let mut stack = vec![(cell, false)];
    while let Some((cell, children_done)) = stack.pop() {
        if children_done {
            cell.stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(10)))
                .await
                .ok();
        } else {
            let children = cell.get_children();
            stack.push((cell, true));
            stack.extend(children.into_iter().map(|c| (c, false)));
        }
    }
}
