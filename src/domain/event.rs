//! Order events: the [`OrderEvent`] an order's outbox holds on its way to Kafka, and the JSON
//! it is sent as.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Order, OrderLine, OrderNumber, Price};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    OrderPlaced,
    OrderCancelled,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderPlaced => "OrderPlaced",
            EventType::OrderCancelled => "OrderCancelled",
        }
    }
}

/// An event in the outbox, on its way to Kafka.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEvent {
    pub event_id: Uuid,
    pub event_type: EventType,
    pub order_number: OrderNumber,
    pub lines: Vec<OrderLine>,
    pub total: Price,
    pub timestamp_ms: u64,
}

impl OrderEvent {
    /// The event of `event_type` for `order`. Its id depends only on the order and the type, so
    /// an event built again (see `recovery::republish_unrecorded`) is recognised as the same.
    pub fn for_order(order: &Order, event_type: EventType, now_ms: u64) -> OrderEvent {
        let name = format!("{}/{}", order.number, event_type.as_str());
        OrderEvent {
            event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
            event_type,
            order_number: order.number,
            lines: order.lines.clone(),
            total: order.total,
            timestamp_ms: now_ms,
        }
    }

    /// The JSON value sent to Kafka: the original's `OrderPlacedEvent {orderNumber}` and more.
    /// Its lines have the shape of the API's order lines (the gateway's `LineJson`).
    pub fn to_json(&self) -> serde_json::Value {
        let lines: Vec<serde_json::Value> = (self.lines.iter())
            .map(|line| {
                serde_json::json!({
                    "skuCode": line.sku.as_str(),
                    "price": line.price.amount(),
                    "quantity": line.quantity,
                })
            })
            .collect();
        serde_json::json!({
            "eventId": self.event_id.to_string(),
            "eventType": self.event_type.as_str(),
            "orderNumber": self.order_number.to_string(),
            "lines": lines,
            "total": self.total.amount(),
            "timestamp": self.timestamp_ms,
        })
    }
}
