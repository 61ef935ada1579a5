//! Actors: the supervised entities (one actor per product, per SKU's stock, per order), the
//! root supervisor, the notifier and the notification service.
//!
//! The gateway talks to a kind's supervisor (found through the registry by the [`Directory`]);
//! the supervisor forwards each command to the entity actor for its key, spawning it on demand.
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

use ractor::{ActorCell, ActorRef, RpcReplyPort};

use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::storage::{Storage, StorageError};

/// What an entity command can fail with; the gateway maps each variant to one HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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
    /// Timeout of one call from an actor to another.
    pub call_timeout: Duration,
}

/// Finds this node's service actors by asking the registry which actor serves a service.
#[derive(Clone)]
pub struct Directory {
    pub registry: Registry,
}

impl Directory {
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
