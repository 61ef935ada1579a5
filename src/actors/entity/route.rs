//! [`Route`]: how callers reach the entities of one kind, by key: the kind's supervisor on this
//! node when this node owns the key, the owning node through [`Remote`] otherwise. The cluster
//! implements [`Remote`]; on a single node there is none and every key is local.
//!
//! A command for another node travels as its kind's protocol enum, encoded with its key
//! ([`RemoteRequest::Entity`]); the owner's routing layer hands it to [`Route::serve`], which
//! delivers it to the local supervisor and, for writes, waits until they are durable before it
//! answers, so an acknowledged remote write survives the owner's crash.

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::reply::{decode_answer, decode_remote, reject};
use super::{Entity, EntityRequest, Reply, SupervisorMsg};
use crate::codec;
use crate::config::Role;
use crate::error::ShopError;
use crate::storage::Storage;

/// The other nodes, as the routing layer sees them: who owns a key, and a way to ask them.
#[async_trait::async_trait]
pub trait Remote: Send + Sync + 'static {
    /// The member that owns `key` of `role`, or `None` when it is this node.
    fn owner(&self, role: Role, key: &str) -> Result<Option<String>, ShopError>;

    /// The members that own partitions of `role`, this node among them if it does.
    fn members_with(&self, role: Role) -> Vec<String>;

    /// The other members, and whether each is reachable now.
    fn peers(&self) -> Vec<(String, bool)>;

    /// Sends `request` to `node`; the answer comes back encoded.
    async fn call(&self, node: &str, request: RemoteRequest) -> Result<Vec<u8>, ShopError>;

    /// Members, partitions and leaders, in a replicated cluster.
    fn describe(&self) -> Option<ClusterView>;

    /// Starts this node's leaving of a replicated cluster (`None` when it is in none):
    /// `Some(false)` when it was leaving already.
    fn leave(&self) -> Option<bool>;
}

/// A replicated cluster as one node sees it (`GET /cluster`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub node: String,
    /// Replicas per partition placement asks for (`--replicas`, capped by the members).
    pub replicas_wanted: usize,
    pub members: Vec<MemberView>,
    pub partitions: Vec<PartitionView>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub name: String,
    pub cluster_addr: String,
    pub http_addr: String,
    pub reachable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionView {
    pub partition: u32,
    /// `None` while an election is under way (or this node has not heard of one).
    pub leader: Option<String>,
    pub replicas: Vec<String>,
    pub learners: Vec<String>,
    pub term: u64,
    pub last_applied: Option<u64>,
}

/// What one node asks another's routing layer.
#[derive(Debug, Serialize, Deserialize)]
pub enum RemoteRequest {
    /// A command for one entity of `kind`: `(key, command)`, encoded.
    Entity {
        kind: String,
        writes: bool,
        command: Vec<u8>,
    },
    /// A kind-wide list, encoded by the routing layer.
    List(Vec<u8>),
}

/// Reaches the entities of kind `E`; cheap to clone.
pub struct Route<E: Entity> {
    supervisor: ActorRef<SupervisorMsg<E>>,
    /// The other nodes; `None` when this node runs alone.
    remote: Option<Arc<dyn Remote>>,
    /// Timeout of one call to an actor of this node.
    timeout: Duration,
}

impl<E: Entity> Clone for Route<E> {
    fn clone(&self) -> Self {
        Route {
            supervisor: self.supervisor.clone(),
            remote: self.remote.clone(),
            timeout: self.timeout,
        }
    }
}

impl<E: Entity> Route<E> {
    pub fn new(
        supervisor: ActorRef<SupervisorMsg<E>>,
        remote: Option<Arc<dyn Remote>>,
        timeout: Duration,
    ) -> Route<E> {
        Route {
            supervisor,
            remote,
            timeout,
        }
    }

    /// This node's supervisor of the kind.
    pub fn supervisor(&self) -> &ActorRef<SupervisorMsg<E>> {
        &self.supervisor
    }

    /// Sends `request` to the entity `key`, on whichever node owns it, and waits for the answer.
    /// In a cluster, an owner that turns out not to serve the key (a leader that just lost its
    /// partition and refused it unrun) is a stale guess: when the owner changed meanwhile, the
    /// request goes once more, to the new one. A request that timed out is not sent again: it
    /// may still be running there, and two sagas of one order must never run at once.
    pub async fn ask<R: EntityRequest<Entity = E>>(
        &self,
        key: E::Key,
        request: R,
    ) -> Result<R::Response, ShopError> {
        if self.remote.is_none() {
            return self.ask_here(key, request).await;
        }
        let owner = self.owner(&key)?;
        let again = codec::encode(&request)
            .map_err(|e| ShopError::Internal(format!("a request does not encode: {e}")))?;
        match self.ask_owner(owner.clone(), key.clone(), request).await {
            Err(ShopError::NotLeader(why)) => match self.owner(&key) {
                Ok(now) if now != owner => {
                    let request: R = codec::decode(&again).map_err(|e| {
                        ShopError::Internal(format!("a request does not decode: {e}"))
                    })?;
                    self.ask_owner(now, key, request).await
                }
                _ => Err(ShopError::NotLeader(why)),
            },
            answer => answer,
        }
    }

    /// Sends `request` to `owner` (`None`: this node) and waits for the answer.
    async fn ask_owner<R: EntityRequest<Entity = E>>(
        &self,
        owner: Option<String>,
        key: E::Key,
        request: R,
    ) -> Result<R::Response, ShopError> {
        match (owner, &self.remote) {
            (Some(node), Some(remote)) => {
                let command = request.into_command(Reply::nobody());
                let command = codec::encode(&(key, command))
                    .map_err(|e| ShopError::Internal(format!("a request does not encode: {e}")))?;
                let request = RemoteRequest::Entity {
                    kind: E::KIND.into(),
                    writes: R::WRITES,
                    command,
                };
                decode_answer(&remote.call(&node, request).await?)
            }
            _ => self.ask_here(key, request).await,
        }
    }

    /// Sends `request` to the entity `key` without waiting for its answer: a cast on this node,
    /// a call in a task of its own to another node. What becomes of it is not known.
    pub fn tell<R: EntityRequest<Entity = E>>(&self, key: E::Key, request: R) {
        match self.owner(&key) {
            Ok(None) => self.deliver(key, request.into_command(Reply::nobody())),
            _ => {
                let route = self.clone();
                tokio::spawn(async move { route.ask(key, request).await });
            }
        }
    }

    /// Sends `request` to the entity `key` on this node.
    pub async fn ask_here<R: EntityRequest<Entity = E>>(
        &self,
        key: E::Key,
        request: R,
    ) -> Result<R::Response, ShopError> {
        let (reply, answer) = Reply::here();
        self.deliver(key, request.into_command(reply));
        self.wait(answer).await
    }

    /// Asks this node's supervisor a kind-wide query (a list of this node's entities).
    pub async fn query<T: Send + 'static>(
        &self,
        query: impl FnOnce(Reply<T>) -> E::Query,
    ) -> Result<T, ShopError> {
        let (reply, answer) = Reply::here();
        if let Err(ractor::MessagingErr::SendErr(message)) =
            self.supervisor.cast(SupervisorMsg::Query(query(reply)))
        {
            reject([message], self.not_running());
        }
        self.wait(answer).await
    }

    /// Serves `command` (a `(key, command)` another node's [`Route::ask`] encoded): its answer,
    /// encoded, once a write is durable.
    pub async fn serve(&self, command: &[u8], writes: bool, storage: &Storage) -> Vec<u8> {
        let (caller, answer) = oneshot::channel();
        let answer = match decode_remote::<(E::Key, E::Command)>(command, caller) {
            Ok((key, command)) => {
                self.deliver(key, command);
                match tokio::time::timeout(self.timeout, answer).await {
                    Ok(Ok(answer)) => Ok(answer),
                    _ => Err(ShopError::Unavailable(format!(
                        "the {} actor did not answer in time",
                        E::KIND
                    ))),
                }
            }
            Err(e) => Err(ShopError::Internal(format!(
                "a request does not decode: {e}"
            ))),
        };
        let durable = match writes {
            true => storage.durable().await.map_err(ShopError::from),
            false => Ok(()),
        };
        match (answer, durable) {
            (Ok(answer), Ok(())) => answer,
            (Err(e), _) | (_, Err(e)) => codec::encode(&Err::<(), _>(e)).unwrap_or_default(),
        }
    }

    /// Hands `command` to the supervisor; if it is gone, the command's reply says so.
    fn deliver(&self, key: E::Key, command: E::Command) {
        if let Err(ractor::MessagingErr::SendErr(message)) = self
            .supervisor
            .cast(SupervisorMsg::Deliver { key, command })
        {
            reject([message], self.not_running());
        }
    }

    fn not_running(&self) -> ShopError {
        ShopError::Unavailable(format!("the {} supervisor is not running", E::KIND))
    }

    async fn wait<T>(
        &self,
        answer: oneshot::Receiver<Result<T, ShopError>>,
    ) -> Result<T, ShopError> {
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ShopError::Unavailable(
                "the actor stopped before answering (it is restarting: retry)".into(),
            )),
            Err(_) => Err(ShopError::Unavailable(
                "the actor did not answer in time".into(),
            )),
        }
    }

    /// `None` when this node owns `key`, else the owner's name.
    fn owner(&self, key: &E::Key) -> Result<Option<String>, ShopError> {
        match &self.remote {
            None => Ok(None),
            Some(remote) => remote.owner(E::ROLE, &key.to_string()),
        }
    }
}
