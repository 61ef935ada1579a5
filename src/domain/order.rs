//! Orders: [`OrderNumber`], the [`OrderLine`]s and [`OrderStatus`] of an [`Order`], and the
//! bounds a request for one must keep.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Invalid, Price, SagaId, Sku};

/// Most lines one order may have.
pub const MAX_ORDER_LINES: usize = 100;
/// Most units of one SKU in one order line.
pub const MAX_LINE_QUANTITY: u32 = 10_000;

/// Parses the quantity of an order line: 1 to [`MAX_LINE_QUANTITY`].
pub fn parse_line_quantity(field: &str, raw: i64) -> Result<u32, Invalid> {
    u32::try_from(raw)
        .ok()
        .filter(|q| (1..=MAX_LINE_QUANTITY).contains(q))
        .ok_or_else(|| Invalid::new(field, format!("must be between 1 and {MAX_LINE_QUANTITY}")))
}

/// An order number: a time-ordered UUID (v7), or, with an `Idempotency-Key`, one derived from
/// the key so that retries reach the same order actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderNumber(Uuid);

impl OrderNumber {
    pub fn new() -> OrderNumber {
        OrderNumber(Uuid::now_v7())
    }

    pub fn for_idempotency_key(key: &str) -> OrderNumber {
        OrderNumber(Uuid::new_v5(&Uuid::NAMESPACE_URL, key.as_bytes()))
    }

    pub fn parse(raw: &str) -> Result<OrderNumber, Invalid> {
        Uuid::parse_str(raw)
            .map(OrderNumber)
            .map_err(|_| Invalid::new("orderNumber", "is not an order number"))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The inverse of [`OrderNumber::as_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> OrderNumber {
        OrderNumber(Uuid::from_bytes(bytes))
    }
}

impl Default for OrderNumber {
    fn default() -> Self {
        OrderNumber::new()
    }
}

impl fmt::Display for OrderNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One line of an order, priced from the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub price: Price,
    pub quantity: u32,
}

/// An order's status; JSON shows it in capitals ([`OrderStatus::as_str`]), storage by its
/// position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderStatus {
    Placed,
    Cancelled,
}

impl OrderStatus {
    /// Every status, in declaration order.
    pub const ALL: [OrderStatus; 2] = [OrderStatus::Placed, OrderStatus::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "PLACED",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }
}

/// A placed order, owned by its order actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub number: OrderNumber,
    pub status: OrderStatus,
    pub lines: Vec<OrderLine>,
    /// Sum of price × quantity over `lines`.
    pub total: Price,
    pub created_ms: u64,
    /// Hash of the requested lines: a retry with the same idempotency key must match it.
    pub fingerprint: u64,
    /// False between a cancel being recorded and its units being back in stock.
    pub restocked: bool,
    /// The saga that placed it: its reservations are the order's units, any other saga's are
    /// given back when settled (see `stock`).
    pub saga: SagaId,
}
