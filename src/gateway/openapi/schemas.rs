//! How the OpenAPI document describes the domain types that API bodies carry ([`Sku`],
//! [`Amount`], [`OrderStatus`]): their `ToSchema`, written here so that `domain` knows nothing
//! of utoipa. Each schema says what the type's parsing accepts or its serialization writes.

use utoipa::openapi::{KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{Amount, OrderStatus, Sku};

/// What [`Sku::parse`] accepts.
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

/// What [`Amount`]'s serialization writes: a number in currency units.
impl PartialSchema for Amount {
    fn schema() -> RefOr<Schema> {
        let mut number = ObjectBuilder::new()
            .schema_type(Type::Number)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Double)))
            .description(Some(
                "A price as the API and the events show it: a JSON number in currency units \
                 with at most two\n\
                 decimals (`19.9`, `1000`). (`Price` itself serializes as cents, for storage.)",
            ))
            .build();
        // The single `example` the document has always had (the builder's method is deprecated).
        number.example = Some(serde_json::json!(19.9));
        number.into()
    }
}

impl ToSchema for Amount {}

/// The statuses as [`OrderStatus::as_str`] writes them.
impl PartialSchema for OrderStatus {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(OrderStatus::ALL.map(OrderStatus::as_str)))
            .description(Some(
                "An order's status; JSON shows it in capitals (`PLACED`), storage by its \
                 position.",
            ))
            .into()
    }
}

impl ToSchema for OrderStatus {}
