//! Actors: the supervised entities (one entity actor, an activation its kind's supervisor
//! runs, per product, per SKU's stock, per order), the root supervisor, the notifier and the
//! notification service.
//!
//! Callers reach an entity kind through its typed [`entity::Route`] (the routing layer holds
//! one per kind): the kind's supervisor on this node when this node owns the key, the owning
//! node through the cluster otherwise. The supervisor runs each command on the entity of its key,
//! loading it on demand. Replies come back through [`entity::Reply`] as
//! `Result<_, ShopError>`. Entities reach each other through the routes they were given at start
//! ([`entity::Entity::Calls`]), never by name.

pub mod entity;
pub mod notification;
pub mod notifier;
pub mod order;
pub mod product;
pub mod recovery;
pub mod root;
pub mod stock;

use std::time::Duration;

use ractor::{ActorCell, ActorRef, RpcReplyPort};

use crate::error::ShopError;

/// Calls a service actor (not an entity) and waits for its reply, turning actor failures into
/// [`ShopError`]s.
pub async fn call<M, T>(
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
