//! Kind-wide lists (products, orders, notifications): each owner lists its own keys, and the
//! directory gathers the parts from every node at once, this node's through its own actors.
//! A node that does not answer leaves its part out and is named in [`Gathered::missing`]; in a
//! replicated cluster each part also says which partitions its node led throughout, and a
//! partition that no part covers (a leader change while listing) is named there too.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::Directory;
use crate::actors::call;
use crate::actors::entity::{decode_answer, RemoteRequest, Replicas};
use crate::actors::notification::{replicated, NotificationMsg, NotificationRecord};
use crate::actors::order::OrderQuery;
use crate::actors::product::{ProductQuery, ProductView};
use crate::codec;
use crate::config::Role;
use crate::domain::{Order, OrderNumber, ProductId};
use crate::error::ShopError;
use crate::storage::event_group;

/// Kind-wide reads that every owner answers for its own keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ListRequest {
    Products {
        after: Option<ProductId>,
        limit: usize,
    },
    Orders {
        after: Option<OrderNumber>,
        limit: usize,
    },
    Notifications {
        after: Option<u64>,
        limit: usize,
    },
    /// In a replicated cluster: per partition, the records after its key in `cursor`.
    NotificationsSince {
        cursor: BTreeMap<u32, u64>,
        limit: usize,
    },
}

/// One node's part of a list: its items and, in a replicated cluster, the partitions it
/// confirmed it led throughout (the items are theirs, and all of theirs).
#[derive(Debug, Serialize, Deserialize)]
struct Part<T> {
    items: Vec<T>,
    led: Vec<u32>,
}

/// A kind-wide list gathered from every node that owns part of it.
#[derive(Debug)]
pub struct Gathered<T> {
    pub items: Vec<T>,
    /// Nodes that did not answer: the list lacks their part.
    pub missing: Vec<String>,
}

/// How long a part may take to confirm its leadership of one partition.
const CONFIRM_WITHIN: Duration = Duration::from_millis(300);

/// A listed item's partition, by the key its owner stores it under.
trait Listed {
    fn partition(&self, replicas: &dyn Replicas) -> u32;
}

impl Listed for ProductView {
    fn partition(&self, replicas: &dyn Replicas) -> u32 {
        replicas.partition(&self.product.id.to_string())
    }
}

impl Listed for Order {
    fn partition(&self, replicas: &dyn Replicas) -> u32 {
        replicas.partition(&self.number.to_string())
    }
}

impl Listed for NotificationRecord {
    fn partition(&self, _: &dyn Replicas) -> u32 {
        event_group(self.seq) as u32
    }
}

impl<T> Gathered<T> {
    /// Keeps the first `limit` items in `key` order (the right page, since every node sent its
    /// first `limit` after the same cursor) and gives the key to continue after when the page
    /// is full.
    pub fn first_page<K: Ord>(&mut self, limit: usize, key: impl Fn(&T) -> K) -> Option<K> {
        self.items.sort_by_key(&key);
        // Two nodes that both believed they led a partition sent its items twice.
        self.items.dedup_by(|a, b| key(a) == key(b));
        self.items.truncate(limit);
        self.items
            .last()
            .filter(|_| self.items.len() == limit)
            .map(key)
    }
}

impl Directory {
    /// Products after `after` from every owner of products.
    pub async fn list_products(
        &self,
        after: Option<ProductId>,
        limit: usize,
    ) -> Result<Gathered<ProductView>, ShopError> {
        let list = ListRequest::Products { after, limit };
        let here = self.products_here(after, limit);
        self.gather(self.owners_of(Role::Product), list, here).await
    }

    /// Orders after `after` from every owner of orders.
    pub async fn list_orders(
        &self,
        after: Option<OrderNumber>,
        limit: usize,
    ) -> Result<Gathered<Order>, ShopError> {
        let list = ListRequest::Orders { after, limit };
        let here = self.orders_here(after, limit);
        self.gather(self.owners_of(Role::Order), list, here).await
    }

    /// Notifications after sequence `after` from each of `nodes` (in a replicated cluster,
    /// from every member: each lists the partitions it leads).
    pub async fn list_notifications(
        &self,
        nodes: Vec<String>,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Gathered<NotificationRecord>, ShopError> {
        let nodes = match &self.replicas {
            Some(_) => self.owners_of(Role::Notification),
            None => nodes,
        };
        let list = ListRequest::Notifications { after, limit };
        let here = self.notifications_here(after, limit);
        self.gather(nodes, list, here).await
    }

    /// In a replicated cluster, the records of every partition after its key in `cursor` (up
    /// to `limit` of each), from the members that lead them.
    pub async fn list_notifications_since(
        &self,
        cursor: BTreeMap<u32, u64>,
        limit: usize,
    ) -> Result<Gathered<NotificationRecord>, ShopError> {
        let here = self.notifications_since_here(&cursor, limit);
        let list = ListRequest::NotificationsSince {
            cursor: cursor.clone(),
            limit,
        };
        self.gather(self.owners_of(Role::Notification), list, here)
            .await
    }

    /// The members that own partitions of `role` (just this node when it runs alone).
    fn owners_of(&self, role: Role) -> Vec<String> {
        match &self.remote {
            Some(remote) => remote.members_with(role),
            None => vec![self.node.clone()],
        }
    }

    /// Asks each of `nodes` for its part of `list` at once (this node's through `here`, from its
    /// own actors) and collects what answered. Fails only if this node's own part fails.
    async fn gather<T: DeserializeOwned + Listed>(
        &self,
        nodes: Vec<String>,
        list: ListRequest,
        here: impl Future<Output = Result<Vec<T>, ShopError>>,
    ) -> Result<Gathered<T>, ShopError> {
        let own = nodes.contains(&self.node);
        let others: Vec<String> = nodes.into_iter().filter(|n| *n != self.node).collect();
        let calls = others.iter().map(|node| self.remote_part(node, &list));
        let here = async {
            match own {
                true => self.part(here).await,
                false => Ok(Part {
                    items: Vec::new(),
                    led: Vec::new(),
                }),
            }
        };
        let (mine, theirs) = futures::join!(here, join_all(calls));
        let mine = mine?;
        let mut covered: BTreeSet<u32> = mine.led.into_iter().collect();
        let mut gathered = Gathered {
            items: mine.items,
            missing: Vec::new(),
        };
        for (node, answer) in others.into_iter().zip(theirs) {
            match answer {
                Ok(part) => {
                    gathered.items.extend(part.items);
                    covered.extend(part.led);
                }
                // In a replicated cluster what matters is that every partition is covered
                // (a dead member leads none).
                Err(e) if self.replicas.is_some() => {
                    tracing::debug!(node, error = %e, "a member did not answer for a list");
                }
                Err(e) => {
                    tracing::warn!(node, error = %e, "a node's part of a list is missing");
                    gathered.missing.push(node);
                }
            }
        }
        if let Some(replicas) = &self.replicas {
            let uncovered = (0..replicas.partitions()).filter(|p| !covered.contains(p));
            gathered
                .missing
                .extend(uncovered.map(|p| format!("partition {p}")));
        }
        Ok(gathered)
    }

    /// This node's part of a list, `items`, with the partitions it led throughout: confirmed
    /// by a read index before listing (so the list sees every write committed before it) and
    /// again after, in the same term. Items of other partitions are left out: a replica that
    /// believes it leads but cannot confirm it may be behind. Each confirmation has
    /// [`CONFIRM_WITHIN`], well inside a remote part's timeout, so one partition without a
    /// quorum leaves out that partition, not the node's whole part.
    async fn part<T: Listed>(
        &self,
        items: impl Future<Output = Result<Vec<T>, ShopError>>,
    ) -> Result<Part<T>, ShopError> {
        let Some(replicas) = &self.replicas else {
            let items = items.await?;
            return Ok(Part {
                items,
                led: Vec::new(),
            });
        };
        let terms = |partitions: Vec<u32>| async move {
            let confirmed = partitions.into_iter().map(|p| async move {
                let tenure = tokio::time::timeout(CONFIRM_WITHIN, replicas.lead(p)).await;
                Some((p, tenure.ok()?.ok()?.term))
            });
            let confirmed = join_all(confirmed).await.into_iter().flatten();
            confirmed.collect::<BTreeMap<u32, u64>>()
        };
        let led = (0..replicas.partitions()).filter(|p| replicas.leads(*p));
        let before = terms(led.collect()).await;
        let mut items = items.await?;
        let after = terms(before.keys().copied().collect()).await;
        let led: BTreeSet<u32> = (before.iter())
            .filter(|(p, term)| after.get(p) == Some(term))
            .map(|(p, _)| *p)
            .collect();
        items.retain(|item| led.contains(&item.partition(&**replicas)));
        Ok(Part {
            items,
            led: led.into_iter().collect(),
        })
    }

    async fn remote_part<T: DeserializeOwned>(
        &self,
        node: &str,
        list: &ListRequest,
    ) -> Result<Part<T>, ShopError> {
        let remote = (self.remote.as_ref())
            .ok_or_else(|| ShopError::Unavailable("this node is not in a cluster".into()))?;
        let list = codec::encode(list)
            .map_err(|e| ShopError::Internal(format!("a request does not encode: {e}")))?;
        decode_answer(&remote.call(node, RemoteRequest::List(list)).await?)
    }

    /// Answers another node's list request (encoded) with this node's part, encoded as a
    /// `Result<Vec<_>, ShopError>`.
    pub(super) async fn serve_list(&self, list: &[u8]) -> Vec<u8> {
        let encoded = match codec::decode::<ListRequest>(list) {
            Ok(ListRequest::Products { after, limit }) => {
                codec::encode(&self.part(self.products_here(after, limit)).await)
            }
            Ok(ListRequest::Orders { after, limit }) => {
                codec::encode(&self.part(self.orders_here(after, limit)).await)
            }
            Ok(ListRequest::Notifications { after, limit }) => {
                codec::encode(&self.part(self.notifications_here(after, limit)).await)
            }
            Ok(ListRequest::NotificationsSince { cursor, limit }) => {
                let here = self.notifications_since_here(&cursor, limit);
                codec::encode(&self.part(here).await)
            }
            Err(e) => {
                let error = ShopError::Internal(format!("a list request does not decode: {e}"));
                codec::encode(&Err::<(), _>(error))
            }
        };
        encoded.unwrap_or_default()
    }

    async fn products_here(
        &self,
        after: Option<ProductId>,
        limit: usize,
    ) -> Result<Vec<ProductView>, ShopError> {
        let list = |reply| ProductQuery::List {
            after,
            limit,
            reply,
        };
        self.products.query(list).await
    }

    async fn orders_here(
        &self,
        after: Option<OrderNumber>,
        limit: usize,
    ) -> Result<Vec<Order>, ShopError> {
        let list = |reply| OrderQuery::List {
            after,
            limit,
            reply,
        };
        self.orders.query(list).await
    }

    async fn notifications_since_here(
        &self,
        cursor: &BTreeMap<u32, u64>,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>, ShopError> {
        let replicas = (self.replicas.as_ref())
            .ok_or_else(|| ShopError::Internal("a cursor per partition needs a cluster".into()))?;
        replicated::since(&self.storage, &**replicas, cursor, limit).map_err(ShopError::from)
    }

    async fn notifications_here(
        &self,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<NotificationRecord>, ShopError> {
        if let Some(replicas) = &self.replicas {
            return replicated::list(&self.storage, &**replicas, after, limit)
                .map_err(ShopError::from);
        }
        let service = (self.notification.as_ref()).ok_or_else(|| {
            ShopError::Unavailable("this node does not run the notification service".into())
        })?;
        let list = |reply| NotificationMsg::List {
            after,
            limit,
            reply,
        };
        call(service, list, self.call_timeout)
            .await?
            .map_err(ShopError::Internal)
    }
}
