//! The layouts of format version 1 that version 2 changed, and how their records upgrade.
//! Only [`super::decode_record`] reads them; nothing writes them.
//!
//! Version 1 had no saga ids: every reservation and order upgrades to the same one, the
//! default (term 0, number 0), so a format-1 order settles the reservations format 1 made.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{decode_body, CodecError, Record};
use crate::domain::{
    Order, OrderEvent, OrderLine, OrderNumber, OrderStatus, PendingChange, Price, Product, SagaId,
    Sku, StockLevel,
};

#[derive(Deserialize)]
struct OrderV1 {
    number: OrderNumber,
    status: OrderStatus,
    lines: Vec<OrderLine>,
    total: Price,
    created_ms: u64,
    fingerprint: u64,
    restocked: bool,
}

impl Record for Order {
    fn decode_v1(body: &[u8]) -> Result<Order, CodecError> {
        let v1: OrderV1 = decode_body(body)?;
        Ok(Order {
            number: v1.number,
            status: v1.status,
            lines: v1.lines,
            total: v1.total,
            created_ms: v1.created_ms,
            fingerprint: v1.fingerprint,
            restocked: v1.restocked,
            saga: SagaId::default(),
        })
    }
}

#[derive(Deserialize)]
enum PendingChangeV1 {
    Reserved(u32),
    Returned(u32),
}

#[derive(Deserialize)]
struct StockLevelV1 {
    sku: Sku,
    quantity: u32,
    pending: BTreeMap<OrderNumber, PendingChangeV1>,
}

impl Record for StockLevel {
    fn decode_v1(body: &[u8]) -> Result<StockLevel, CodecError> {
        let v1: StockLevelV1 = decode_body(body)?;
        let upgrade = |change| match change {
            PendingChangeV1::Reserved(quantity) => PendingChange::Reserved {
                quantity,
                saga: SagaId::default(),
            },
            PendingChangeV1::Returned(quantity) => PendingChange::Returned(quantity),
        };
        Ok(StockLevel {
            sku: v1.sku,
            quantity: v1.quantity,
            pending: v1
                .pending
                .into_iter()
                .map(|(k, c)| (k, upgrade(c)))
                .collect(),
        })
    }
}

/// Layouts version 2 kept.
impl Record for Product {}
impl Record for OrderEvent {}
impl Record for u64 {}
impl Record for String {}

/// Index entries: the key is all they hold.
impl Record for () {}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    /// Version 1 bytes as a build before saga ids wrote them.
    fn v1<T: Serialize>(value: &T) -> Vec<u8> {
        let mut bytes = super::super::encode(value).unwrap();
        bytes[0] = 1;
        bytes
    }

    #[derive(Serialize)]
    enum WrittenChange {
        Reserved(u32),
        Returned(u32),
    }

    #[test]
    fn version_1_stock_and_orders_read_back_with_the_default_saga() {
        let (sku, order) = (Sku::parse("a").unwrap(), OrderNumber::new());
        let written = (
            sku.clone(),
            7u32,
            BTreeMap::from([(order, WrittenChange::Reserved(2))]),
        );
        let level: StockLevel = super::super::decode_record(&v1(&written)).unwrap();
        assert_eq!(level.quantity, 7);
        assert_eq!(
            level.pending[&order],
            PendingChange::Reserved {
                quantity: 2,
                saga: SagaId::default()
            }
        );
        let returned = (
            sku,
            1u32,
            BTreeMap::from([(order, WrittenChange::Returned(3))]),
        );
        let level: StockLevel = super::super::decode_record(&v1(&returned)).unwrap();
        assert_eq!(level.pending[&order], PendingChange::Returned(3));

        let current = crate::test_support::empty_order(OrderNumber::new());
        let o = &current;
        let written = (
            o.number,
            o.status,
            &o.lines,
            o.total,
            o.created_ms,
            o.fingerprint,
            o.restocked,
        );
        let read: Order = super::super::decode_record(&v1(&written)).unwrap();
        assert_eq!(read, current);
        assert!(
            super::super::decode_record::<Order>(&super::super::encode(&written).unwrap()).is_err(),
            "a version 2 order has its saga"
        );
    }
}
