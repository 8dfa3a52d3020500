//! `products`: what can be ordered, with its current price and stock.

use rust_decimal::Decimal;

use super::load::Column;
use super::money::from_cents;
use super::order_items::narrow;
use super::session::DbRow;

/// A row of `products`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductRow {
    /// Primary key.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Unique stock-keeping unit.
    pub sku: String,
    /// Current unit price.
    pub price: Decimal,
    /// Units in stock (never negative).
    pub stock_quantity: i32,
}

/// The columns a load selects, in decoding order.
pub const COLUMNS: &[Column] = &[
    Column::plain("id"),
    Column::plain("name"),
    Column::plain("sku"),
    Column::money("price"),
    Column::int4("stock_quantity"),
];

/// Decodes [`COLUMNS`] starting at column `at`.
pub fn decode(r: &dyn DbRow, at: usize) -> Result<ProductRow, sqlx::Error> {
    Ok(ProductRow {
        id: r.i64(at)?,
        name: r.text(at + 1)?,
        sku: r.text(at + 2)?,
        price: from_cents(r.i64(at + 3)?),
        stock_quantity: narrow(r.i64(at + 4)?)?,
    })
}
