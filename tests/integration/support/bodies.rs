//! The JSON a test sends (product and order bodies) and the tallies it checks answers with
//! (notifications per order and event, units sold per SKU).

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{json, Value};

/// The body of `POST /api/product` for `sku`, with `quantity` in stock.
pub fn product_body(sku: &str, price: f64, quantity: u32) -> Value {
    json!({"name": format!("Product {sku}"), "description": "test", "price": price, "skuCode": sku, "quantity": quantity})
}

/// One line of an order: any JSON as `skuCode` and `quantity`, bad input included.
pub fn order_line(sku: impl Serialize, quantity: impl Serialize) -> Value {
    json!({"skuCode": sku, "quantity": quantity})
}

/// The body of `POST /api/order` with `lines` (a JSON array, or anything that makes one).
pub fn order_body(lines: impl Into<Value>) -> Value {
    json!({ "orderLineItemsDtoList": lines.into() })
}

/// Counts notifications per (orderNumber, eventType).
pub fn notification_counts(notifications: &[Value]) -> HashMap<(String, String), usize> {
    let mut counts = HashMap::new();
    for n in notifications {
        let key = (
            n["orderNumber"].as_str().unwrap_or("").to_owned(),
            n["eventType"].as_str().unwrap_or("").to_owned(),
        );
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

/// Units per SKU over every line of `orders`.
pub fn sold<'o>(orders: impl IntoIterator<Item = &'o Value>) -> HashMap<String, u64> {
    let mut sold = HashMap::new();
    for order in orders {
        for line in order["lines"].as_array().expect("lines") {
            let sku = line["skuCode"].as_str().expect("sku").to_owned();
            *sold.entry(sku).or_insert(0) += line["quantity"].as_u64().expect("quantity");
        }
    }
    sold
}
