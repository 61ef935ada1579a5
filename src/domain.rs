//! Domain types: validated newtypes and the records the entity actors own.
//!
//! Nothing here does IO or knows about HTTP. The gateway turns request bodies into these types
//! (rejecting bad input with an [`Invalid`] that names the field) and describes them in its
//! OpenAPI document, the actors keep them as state, and the codec stores them. By concern:
//! `money` (prices), `catalog` (SKUs and products), `stock` (stock levels), `order` (orders)
//! and `event` (the order events sent to Kafka); every type is used as `crate::domain::X`.

mod catalog;
mod event;
mod money;
mod order;
mod stock;

pub use catalog::{Description, Product, ProductId, ProductName, Sku};
pub use event::{EventType, OrderEvent};
pub use money::{Amount, Price, MAX_PRICE_CENTS};
pub use order::{
    parse_line_quantity, Order, OrderLine, OrderNumber, OrderStatus, MAX_LINE_QUANTITY,
    MAX_ORDER_LINES,
};
pub use stock::{parse_stock, PendingChange, Refusal, SagaId, StockLevel, MAX_STOCK};

/// A field that failed validation, with a message a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_have_bounds() {
        assert!(parse_line_quantity("quantity", 0).is_err());
        assert!(parse_line_quantity("quantity", 10_001).is_err());
        assert_eq!(parse_line_quantity("quantity", 3).unwrap(), 3);
        assert!(parse_stock("quantity", -1).is_err());
        assert_eq!(parse_stock("quantity", 0).unwrap(), 0);
    }

    #[test]
    fn ids_are_stable() {
        let sku = Sku::parse("iphone_13").unwrap();
        assert_eq!(ProductId::for_sku(&sku), ProductId::for_sku(&sku));
        assert_eq!(
            OrderNumber::for_idempotency_key("k"),
            OrderNumber::for_idempotency_key("k")
        );
        assert_ne!(OrderNumber::new(), OrderNumber::new());
    }
}
