//! `orders`: one purchase by one user.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::load::Column;
use super::money::from_cents;
use super::session::DbRow;
use crate::model::OrderStatus;

/// A row of `orders`.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderRow {
    /// Primary key.
    pub id: i64,
    /// The user who placed it.
    pub user_id: i64,
    /// Where it is in its life cycle.
    pub status: OrderStatus,
    /// Sum of its items' `quantity * unit_price`.
    pub total_amount: Decimal,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
}

/// The columns a load selects, in decoding order.
pub const COLUMNS: &[Column] = &[
    Column::plain("id"),
    Column::plain("user_id"),
    Column::plain("status"),
    Column::money("total_amount"),
    Column::plain("created_at"),
];

/// Decodes [`COLUMNS`] starting at column `at`.
pub fn decode(r: &dyn DbRow, at: usize) -> Result<OrderRow, sqlx::Error> {
    let status = r.text(at + 2)?;
    Ok(OrderRow {
        id: r.i64(at)?,
        user_id: r.i64(at + 1)?,
        status: OrderStatus::from_db(&status).ok_or_else(|| sqlx::Error::ColumnDecode {
            index: "status".into(),
            source: format!("unknown order status {status:?}").into(),
        })?,
        total_amount: from_cents(r.i64(at + 3)?),
        created_at: r.ts(at + 4)?,
    })
}
