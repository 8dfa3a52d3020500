//! The one place money changes representation.
//!
//! SQL statements hand money to Rust as integer cents on both backends (PostgreSQL converts its
//! exact `numeric(10,2)` with `(x * 100)::int8`; SQLite stores cents), so sums stay exact and
//! one decoder serves both.

use rust_decimal::Decimal;

/// Largest amount a `numeric(10,2)` column holds, in cents.
pub const MAX_CENTS: i64 = 9_999_999_999;

/// Cents to a two-decimal [`Decimal`] (`1250` -> `12.50`).
pub fn from_cents(cents: i64) -> Decimal {
    Decimal::new(cents, 2)
}

/// What an amount that [`to_cents`] refuses must be instead, as its refusal says it: the
/// real reason, never "at most 2 decimals" for an amount that has none.
pub fn cents_requirement(amount: Decimal) -> &'static str {
    match amount.checked_mul(Decimal::ONE_HUNDRED) {
        Some(scaled) if scaled.fract() != Decimal::ZERO => "an amount with at most 2 decimals",
        _ => "an amount between -99999999.99 and 99999999.99",
    }
}

/// A [`Decimal`] to cents; `None` when it has more than two decimals or is out of range.
pub fn to_cents(amount: Decimal) -> Option<i64> {
    let scaled = amount.checked_mul(Decimal::ONE_HUNDRED)?;
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    let cents = i64::try_from(scaled.trunc()).ok()?;
    (cents.abs() <= MAX_CENTS).then_some(cents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn round_trips_two_decimals() {
        let d = Decimal::from_str("12.50").unwrap_or_default();
        assert_eq!(to_cents(d), Some(1250));
        assert_eq!(from_cents(1250).to_string(), "12.50");
        assert_eq!(from_cents(5).to_string(), "0.05");
    }

    #[test]
    fn rejects_sub_cent_and_huge_amounts() {
        assert_eq!(
            to_cents(Decimal::from_str("0.001").unwrap_or_default()),
            None
        );
        assert_eq!(to_cents(Decimal::new(1_000_000_000_000, 0)), None);
        assert!(cents_requirement(Decimal::new(100_000_000, 0)).contains("between"));
        assert!(cents_requirement(Decimal::new(1, 3)).contains("2 decimals"));
        assert_eq!(
            to_cents(Decimal::from_str("-3").unwrap_or_default()),
            Some(-300)
        );
    }
}
