//! `order_items`: the lines of an order, each one product at the price paid.

use rust_decimal::Decimal;

use super::load::Column;
use super::money::from_cents;
use super::session::DbRow;

/// A row of `order_items`.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderItemRow {
    /// Primary key.
    pub id: i64,
    /// The order it belongs to.
    pub order_id: i64,
    /// The product bought.
    pub product_id: i64,
    /// How many units (> 0).
    pub quantity: i32,
    /// The price of one unit when the order was placed.
    pub unit_price: Decimal,
}

/// The columns a load selects, in decoding order.
pub const COLUMNS: &[Column] = &[
    Column::plain("id"),
    Column::plain("order_id"),
    Column::plain("product_id"),
    Column::int4("quantity"),
    Column::money("unit_price"),
];

/// Decodes [`COLUMNS`] starting at column `at`.
pub fn decode(r: &dyn DbRow, at: usize) -> Result<OrderItemRow, sqlx::Error> {
    Ok(OrderItemRow {
        id: r.i64(at)?,
        order_id: r.i64(at + 1)?,
        product_id: r.i64(at + 2)?,
        quantity: narrow(r.i64(at + 3)?)?,
        unit_price: from_cents(r.i64(at + 4)?),
    })
}

/// Narrows an integer column to `i32`, failing loudly rather than wrapping.
pub fn narrow(v: i64) -> Result<i32, sqlx::Error> {
    i32::try_from(v).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
