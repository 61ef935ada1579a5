//! Routing: the one place requests find the actors that serve them. `app` builds the
//! [`Directory`] from the typed references it got when it spawned each actor (as ractor's own
//! supervisor example keeps its children): one [`Route`] per entity kind, the notifier and the
//! notification service. The gateway, the cluster's peer and settler, benchmarks and tests ask
//! through it; nothing looks an actor up by name.
//!
//! Other nodes are reached through the [`Remote`] trait, which the cluster implements; a single
//! node has none. Requests from other nodes come in through [`Directory::serve`]. Kind-wide
//! lists, gathered from every owner, are in `lists`.

mod lists;

use std::sync::Arc;

use ractor::ActorRef;

use crate::actors::entity::{Entity, EntityRequest, KeyOf, Remote, RemoteRequest, Replicas, Route};
use crate::actors::notification::NotificationMsg;
use crate::actors::notifier::NotifierMsg;
use crate::actors::order::OrderEntity;
use crate::actors::product::ProductEntity;
use crate::actors::stock::Stock;
use crate::codec;
use crate::error::ShopError;
use crate::storage::Storage;

pub use self::lists::{Gathered, ListRequest};

/// Typed references to this node's actors, and the way to other nodes; cheap to clone.
#[derive(Clone)]
pub struct Directory {
    pub node: String,
    pub products: Route<ProductEntity>,
    pub stock: Route<Stock>,
    pub orders: Route<OrderEntity>,
    pub notifier: ActorRef<NotifierMsg>,
    /// `None` when this node does not run the notification role.
    pub notification: Option<ActorRef<NotificationMsg>>,
    /// Remote writes are durable here before they are answered.
    pub storage: Storage,
    /// The other nodes; `None` when this node runs alone.
    pub remote: Option<Arc<dyn Remote>>,
    /// The replicated partitions, in a replicated cluster: remote writes are committed there.
    pub replicas: Option<Arc<dyn Replicas>>,
    /// Timeout of one call to a service actor of this node.
    pub call_timeout: std::time::Duration,
}

/// An entity kind the directory routes to.
pub trait Routed: Entity {
    fn route(directory: &Directory) -> &Route<Self>;
}

impl Routed for ProductEntity {
    fn route(directory: &Directory) -> &Route<Self> {
        &directory.products
    }
}

impl Routed for Stock {
    fn route(directory: &Directory) -> &Route<Self> {
        &directory.stock
    }
}

impl Routed for OrderEntity {
    fn route(directory: &Directory) -> &Route<Self> {
        &directory.orders
    }
}

impl Directory {
    /// Sends `request` to the entity `key`, on whichever node owns it, and waits for the answer.
    pub async fn ask<R>(&self, key: KeyOf<R>, request: R) -> Result<R::Response, ShopError>
    where
        R: EntityRequest,
        R::Entity: Routed,
    {
        R::Entity::route(self).ask(key, request).await
    }

    /// The route of kind `E`.
    pub fn route<E: Routed>(&self) -> &Route<E> {
        E::route(self)
    }

    /// Whether this node runs alone (it owns every key).
    pub fn is_single(&self) -> bool {
        self.peers().is_none_or(|peers| peers.is_empty())
    }

    /// The other members and whether each is reachable; `None` on a single node.
    pub fn peers(&self) -> Option<Vec<(String, bool)>> {
        self.remote.as_ref().map(|remote| remote.peers())
    }

    /// Answers a request from another node with what this node's actors say, encoded.
    pub async fn serve(&self, request: RemoteRequest) -> Vec<u8> {
        let storage = &self.storage;
        match request {
            RemoteRequest::Entity {
                kind,
                writes,
                command,
            } => match kind.as_str() {
                // Among replicas a write is committed before the actor answers.
                _ if self.replicas.is_some() && writes => {
                    let serve = RemoteRequest::Entity {
                        kind,
                        writes: false,
                        command,
                    };
                    Box::pin(self.serve(serve)).await
                }
                ProductEntity::KIND => self.products.serve(&command, writes, storage).await,
                Stock::KIND => self.stock.serve(&command, writes, storage).await,
                OrderEntity::KIND => self.orders.serve(&command, writes, storage).await,
                _ => {
                    let error = ShopError::Internal(format!("no entity kind {kind}"));
                    codec::encode(&Err::<(), _>(error)).unwrap_or_default()
                }
            },
            RemoteRequest::List(list) => self.serve_list(&list).await,
        }
    }
}
