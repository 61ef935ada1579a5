//! The catalog: [`Sku`], [`ProductName`], [`Description`], [`ProductId`] and the [`Product`]
//! they make up.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Invalid, Price};

/// A stock keeping unit code: 1 to 64 characters of `A-Z a-z 0-9 _ - .`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Sku(String);

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

    /// The inverse of [`ProductId::as_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> ProductId {
        ProductId(Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for ProductId {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
