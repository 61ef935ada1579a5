//! Domain types: validated newtypes and the records the entity actors own.
//!
//! Nothing here does IO. The gateway turns request bodies into these types (rejecting bad input
//! with a [`Invalid`] that names the field), the actors keep them as state, and the codec
//! stores them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};
use uuid::Uuid;

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

/// Most lines one order may have.
pub const MAX_ORDER_LINES: usize = 100;
/// Most units of one SKU in one order line.
pub const MAX_LINE_QUANTITY: u32 = 10_000;
/// Most units a SKU's stock may hold.
pub const MAX_STOCK: u32 = 1_000_000_000;
/// Highest price, in cents (one billion units of currency).
pub const MAX_PRICE_CENTS: i64 = 100_000_000_000;

/// A stock keeping unit code: 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sku(String);

/// What [`Sku::parse`] accepts, for the OpenAPI document.
impl PartialSchema for Sku {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(r"^[A-Za-z0-9_.\-]{1,64}$"))
            .examples(["iphone_13"])
            .into()
    }
}

impl ToSchema for Sku {}

impl Sku {
    pub fn parse(raw: &str) -> Result<Sku, Invalid> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if ok {
            Ok(Sku(raw.to_owned()))
        } else {
            Err(Invalid::new(
                "skuCode",
                "must be 1 to 64 characters of A-Z a-z 0-9 _ - .",
            ))
        }
    }

    /// The SKU a product gets when the client gives none: "iPhone 13" → `iphone_13`.
    pub fn derive_from(name: &ProductName) -> Result<Sku, Invalid> {
        let mut out = String::new();
        for c in name.as_str().chars().flat_map(char::to_lowercase) {
            if c.is_ascii_alphanumeric() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('_') {
                out.push('_');
            }
        }
        let trimmed: String = out.trim_end_matches('_').chars().take(64).collect();
        Sku::parse(trimmed.trim_end_matches('_'))
            .map_err(|_| Invalid::new("skuCode", "cannot be derived from the name: give one"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A product name: 1 to 200 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(raw: &str) -> Result<ProductName, Invalid> {
        let name = raw.trim();
        match name.chars().count() {
            0 => Err(Invalid::new("name", "must not be empty")),
            1..=200 => Ok(ProductName(name.to_owned())),
            _ => Err(Invalid::new("name", "must be at most 200 characters")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product description: at most 2000 characters, may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Description, Invalid> {
        if raw.chars().count() > 2000 {
            return Err(Invalid::new(
                "description",
                "must be at most 2000 characters",
            ));
        }
        Ok(Description(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A price in cents; 0 up to [`MAX_PRICE_CENTS`]. JSON shows it in currency units (`1000.5`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Price(i64);

impl Price {
    pub fn from_cents(cents: i64) -> Result<Price, Invalid> {
        if (0..=MAX_PRICE_CENTS).contains(&cents) {
            Ok(Price(cents))
        } else {
            Err(Invalid::new("price", "must be between 0 and 1000000000"))
        }
    }

    /// Parses a JSON number exactly (no float rounding): at most two decimals.
    pub fn parse(field: &str, number: &serde_json::Number) -> Result<Price, Invalid> {
        let text = number.to_string();
        let bad = || Invalid::new(field, "must be a number >= 0 with at most two decimals");
        if text.starts_with('-') || text.contains(['e', 'E']) {
            return Err(bad());
        }
        let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
        if frac.len() > 2 || whole.len() > 12 {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac: i64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
        Price::from_cents(whole * 100 + frac).map_err(|e| Invalid::new(field, e.message))
    }

    pub fn cents(self) -> i64 {
        self.0
    }

    /// The price as a JSON number in currency units.
    pub fn to_json(self) -> serde_json::Value {
        if self.0 % 100 == 0 {
            serde_json::Value::from(self.0 / 100)
        } else {
            serde_json::Value::from(self.0 as f64 / 100.0)
        }
    }

    /// The price as JSON shows it.
    pub fn amount(self) -> Amount {
        Amount(self)
    }

    pub fn times(self, quantity: u32) -> Price {
        Price(self.0 * i64::from(quantity))
    }

    pub fn sum(prices: impl IntoIterator<Item = Price>) -> Price {
        Price(prices.into_iter().map(|p| p.0).sum())
    }
}

/// A price as the API and the events show it: a JSON number in currency units with at most two
/// decimals (`19.9`, `1000`). (`Price` itself serializes as cents, for storage.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(value_type = f64, example = 19.9)]
pub struct Amount(Price);

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.to_json().serialize(serializer)
    }
}

/// Parses a stock level: 0 to [`MAX_STOCK`].
pub fn parse_stock(field: &str, raw: i64) -> Result<u32, Invalid> {
    u32::try_from(raw)
        .ok()
        .filter(|q| *q <= MAX_STOCK)
        .ok_or_else(|| Invalid::new(field, format!("must be between 0 and {MAX_STOCK}")))
}

/// Parses the quantity of an order line: 1 to [`MAX_LINE_QUANTITY`].
pub fn parse_line_quantity(field: &str, raw: i64) -> Result<u32, Invalid> {
    u32::try_from(raw)
        .ok()
        .filter(|q| (1..=MAX_LINE_QUANTITY).contains(q))
        .ok_or_else(|| Invalid::new(field, format!("must be between 1 and {MAX_LINE_QUANTITY}")))
}

/// A product id. It is derived from the SKU, so one SKU has at most one product and a retried
/// create lands on the same product actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProductId(Uuid);

impl ProductId {
    pub fn for_sku(sku: &Sku) -> ProductId {
        ProductId(Uuid::new_v5(&Uuid::NAMESPACE_OID, sku.as_str().as_bytes()))
    }

    pub fn parse(raw: &str) -> Result<ProductId, Invalid> {
        Uuid::parse_str(raw)
            .map(ProductId)
            .map_err(|_| Invalid::new("id", "is not a product id"))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
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

/// A catalog entry, owned by its product actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Always `ProductId::for_sku(&sku)`.
    pub id: ProductId,
    pub sku: Sku,
    pub name: ProductName,
    pub description: Description,
    pub price: Price,
}

/// A change to a SKU's stock made by an order saga and not yet settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PendingChange {
    /// Units taken from `quantity` for an order that may not be placed yet.
    Reserved(u32),
    /// Units given back to `quantity` by the cancel of an order.
    Returned(u32),
}

/// The stock of one SKU, owned by its stock actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockLevel {
    pub sku: Sku,
    /// Units available to order; reserved units are already taken out.
    pub quantity: u32,
    /// Saga steps per order, kept until the order's outcome is durable, so recovery after a
    /// crash can settle them (see `recovery`).
    pub pending: BTreeMap<OrderNumber, PendingChange>,
}

/// One line of an order, priced from the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: Sku,
    pub price: Price,
    pub quantity: u32,
}

/// An order's status; JSON shows it in capitals (`PLACED`), storage by its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(rename_all = "UPPERCASE")]
pub enum OrderStatus {
    Placed,
    Cancelled,
}

impl OrderStatus {
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
}

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
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "eventId": self.event_id.to_string(),
            "eventType": self.event_type.as_str(),
            "orderNumber": self.order_number.to_string(),
            "lines": self.lines.iter().map(LineJson::from).collect::<Vec<_>>(),
            "total": self.total.amount(),
            "timestamp": self.timestamp_ms,
        })
    }
}

/// An order line as JSON shows it, in API answers and in events.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineJson {
    #[schema(value_type = Sku)]
    pub sku_code: String,
    /// The unit price.
    pub price: Amount,
    pub quantity: u32,
}

impl From<&OrderLine> for LineJson {
    fn from(line: &OrderLine) -> LineJson {
        LineJson {
            sku_code: line.sku.as_str().to_owned(),
            price: line.price.amount(),
            quantity: line.quantity,
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

    fn num(text: &str) -> serde_json::Number {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn prices_parse_exactly() {
        assert_eq!(
            Price::parse("price", &num("1000")).unwrap().cents(),
            100_000
        );
        assert_eq!(Price::parse("price", &num("19.9")).unwrap().cents(), 1_990);
        assert_eq!(Price::parse("price", &num("0.07")).unwrap().cents(), 7);
        for bad in ["-1", "1.001", "1e-3", "10000000000000"] {
            assert!(Price::parse("price", &num(bad)).is_err(), "{bad}");
        }
        assert_eq!(
            Price::from_cents(1_990).unwrap().to_json(),
            serde_json::json!(19.9)
        );
        assert_eq!(
            Price::from_cents(100_000).unwrap().to_json(),
            serde_json::json!(1000)
        );
    }

    #[test]
    fn skus_validate_and_derive() {
        assert!(Sku::parse("iphone_13-red.v2").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("a b").is_err());
        assert!(Sku::parse(&"x".repeat(65)).is_err());
        let name = ProductName::parse("  iPhone 13 (Red)! ").unwrap();
        assert_eq!(Sku::derive_from(&name).unwrap().as_str(), "iphone_13_red");
        assert!(Sku::derive_from(&ProductName::parse("№№").unwrap()).is_err());
    }

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
