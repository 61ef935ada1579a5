//! Money: [`Price`], exact cents, and [`Amount`], how JSON shows a price.

use serde::{Deserialize, Serialize, Serializer};

use super::Invalid;

/// Highest price, in cents (one billion units of currency).
pub const MAX_PRICE_CENTS: i64 = 100_000_000_000;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount(Price);

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.to_json().serialize(serializer)
    }
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
}
