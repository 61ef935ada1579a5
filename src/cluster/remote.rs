//! What crosses between nodes: a request for an entity (or a kind-wide list) in an
//! [`Envelope`], and its encoded answer. Both go through the project's codec.
//!
//! The caller is `Directory` (through `Links`); the peer actor on the owning node hands the
//! request to [`serve`], which asks the local supervisor and, for writes, waits until they are
//! durable before it answers, so an acknowledged remote write survives the owner's crash.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::actors::entity::{EntityRequest, KeyOf};
use crate::actors::notification::{NotificationMsg, NotificationRecord};
use crate::actors::order::{self, OrderEntity, OrderQuery};
use crate::actors::product::{self, ProductEntity, ProductQuery, ProductView};
use crate::actors::stock;
use crate::actors::{request, Directory, ShopError};
use crate::codec::{self, CodecError};
use crate::domain::{Order, OrderNumber, ProductId};
use crate::registry::NOTIFICATION_SERVICE;
use crate::storage::Storage;

/// One request from another node.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// The calling node.
    pub from: String,
    /// The request id of the HTTP request that caused this call, logged on both nodes.
    pub request_id: Option<String>,
    pub request: RemoteRequest,
}

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
}

macro_rules! remote_requests {
    ($($variant:ident: $request:ty),* $(,)?) => {
        /// Every request one node may send another: one variant per entity request, with its
        /// key, and the lists.
        #[derive(Debug, Serialize, Deserialize)]
        pub enum RemoteRequest {
            $($variant(KeyOf<$request>, $request),)*
            List(ListRequest),
        }

        $(
            impl From<(KeyOf<$request>, $request)> for RemoteRequest {
                fn from((key, request): (KeyOf<$request>, $request)) -> RemoteRequest {
                    RemoteRequest::$variant(key, request)
                }
            }
        )*

        /// Answers a request from another node with what the local actors say, encoded.
        pub async fn serve(
            directory: &Directory,
            storage: &Storage,
            request: RemoteRequest,
        ) -> Result<Vec<u8>, CodecError> {
            match request {
                $(RemoteRequest::$variant(key, request) => {
                    answer(directory, storage, key, request).await
                })*
                RemoteRequest::List(list) => serve_list(directory, list).await,
            }
        }
    };
}

remote_requests! {
    GetProduct: product::GetProduct,
    CreateProduct: product::CreateProduct,
    UpdateProduct: product::UpdateProduct,
    DeleteProduct: product::DeleteProduct,
    GetStock: stock::GetStock,
    SetStock: stock::SetStock,
    SeedStock: stock::SeedStock,
    ReserveStock: stock::ReserveStock,
    ReleaseReservation: stock::ReleaseReservation,
    SettleOrder: stock::SettleOrder,
    ReturnStock: stock::ReturnStock,
    PlaceOrder: order::PlaceOrder,
    GetOrder: order::GetOrder,
    CancelOrder: order::CancelOrder,
    ResolvePending: order::ResolvePending,
}

async fn answer<R: EntityRequest>(
    directory: &Directory,
    storage: &Storage,
    key: KeyOf<R>,
    request: R,
) -> Result<Vec<u8>, CodecError> {
    let mut result = directory.ask_here(key, request).await;
    if R::WRITES {
        if let Err(e) = storage.durable().await {
            result = Err(ShopError::from(e));
        }
    }
    codec::encode(&result)
}

async fn serve_list(directory: &Directory, list: ListRequest) -> Result<Vec<u8>, CodecError> {
    match list {
        ListRequest::Products { after, limit } => {
            codec::encode(&list_products(directory, after, limit).await)
        }
        ListRequest::Orders { after, limit } => {
            codec::encode(&list_orders(directory, after, limit).await)
        }
        ListRequest::Notifications { after, limit } => {
            codec::encode(&list_notifications(directory, after, limit).await)
        }
    }
}

/// This node's products after `after`, in id order.
pub async fn list_products(
    directory: &Directory,
    after: Option<ProductId>,
    limit: usize,
) -> Result<Vec<ProductView>, ShopError> {
    let list = |reply| ProductQuery::List {
        after,
        limit,
        reply,
    };
    directory.query_here::<ProductEntity, _>(list).await
}

/// This node's orders after `after`, in number order.
pub async fn list_orders(
    directory: &Directory,
    after: Option<OrderNumber>,
    limit: usize,
) -> Result<Vec<Order>, ShopError> {
    let list = |reply| OrderQuery::List {
        after,
        limit,
        reply,
    };
    directory.query_here::<OrderEntity, _>(list).await
}

/// This node's notifications after sequence `after`, oldest first.
pub async fn list_notifications(
    directory: &Directory,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<NotificationRecord>, ShopError> {
    let service = directory.resolve(NOTIFICATION_SERVICE)?;
    let list = |reply| NotificationMsg::List {
        after,
        limit,
        reply,
    };
    request(&service, list, directory.call_timeout)
        .await?
        .map_err(ShopError::Internal)
}

/// Decodes an answer [`serve`] encoded.
pub fn decode_answer<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ShopError> {
    codec::decode::<Result<T, ShopError>>(bytes)
        .map_err(|e| ShopError::Internal(format!("a peer's answer does not decode: {e}")))?
}
