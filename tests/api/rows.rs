//! The test suite's own reading of whole rows: typed rows of the four tables, decoded from
//! plain `select`s. Deliberately independent of the server's entity description, so the
//! reference and the oracle check it instead of sharing it.

use chrono::{DateTime, Utc};
use eagerql::db::columns::Cols;
use eagerql::db::money::from_cents;
use eagerql::model::OrderStatus;
use rust_decimal::Decimal;

pub mod users {
    use super::*;

    /// A row of `users`, without `password_hash`.
    #[derive(Clone, Debug, PartialEq)]
    pub struct UserRow {
        /// Primary key.
        pub id: i64,
        /// Unique e-mail address.
        pub email: String,
        /// Unique user name.
        pub username: String,
        /// Whether the account may place orders.
        pub is_active: bool,
        /// When the account was created.
        pub created_at: DateTime<Utc>,
        /// When the account last changed.
        pub updated_at: DateTime<Utc>,
        /// Optional free text.
        pub bio: Option<String>,
    }

    /// Decodes a full row, columns in table order.
    pub fn decode(c: &mut Cols<'_>) -> Result<UserRow, sqlx::Error> {
        Ok(UserRow {
            id: c.i64()?,
            email: c.text()?,
            username: c.text()?,
            is_active: c.bool()?,
            created_at: c.ts()?,
            updated_at: c.ts()?,
            bio: c.opt_text()?,
        })
    }
}

pub mod orders {
    use super::*;

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

    /// Decodes a full row, columns in table order.
    pub fn decode(c: &mut Cols<'_>) -> Result<OrderRow, sqlx::Error> {
        Ok(OrderRow {
            id: c.i64()?,
            user_id: c.i64()?,
            status: c.status()?,
            total_amount: from_cents(c.i64()?),
            created_at: c.ts()?,
        })
    }
}

pub mod order_items {
    use super::*;

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

    /// Decodes a full row, columns in table order.
    pub fn decode(c: &mut Cols<'_>) -> Result<OrderItemRow, sqlx::Error> {
        Ok(OrderItemRow {
            id: c.i64()?,
            order_id: c.i64()?,
            product_id: c.i64()?,
            quantity: c.i32()?,
            unit_price: from_cents(c.i64()?),
        })
    }
}

pub mod products {
    use super::*;

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

    /// Decodes a full row, columns in table order.
    pub fn decode(c: &mut Cols<'_>) -> Result<ProductRow, sqlx::Error> {
        Ok(ProductRow {
            id: c.i64()?,
            name: c.text()?,
            sku: c.text()?,
            price: from_cents(c.i64()?),
            stock_quantity: c.i32()?,
        })
    }
}
