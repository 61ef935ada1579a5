//! The error every actor request can end in, crate-wide: entities, services and other nodes
//! answer with it, and the gateway maps each variant to one HTTP status (`gateway::error`).

use serde::{Deserialize, Serialize};

use crate::storage::StorageError;

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
    /// Unavailable here, and refused before it ran: this node does not lead the key's
    /// partition (or could not confirm it does). Unlike a timeout, sending the request again
    /// elsewhere cannot run it twice.
    #[error("{0}")]
    NotLeader(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StorageError> for ShopError {
    fn from(err: StorageError) -> Self {
        ShopError::Internal(err.to_string())
    }
}
