//! `Order`: one purchase by one user.

use std::sync::Arc;

use crate::graphql::scalars::DateTime;
use crate::graphql::scalars::Decimal;
use async_graphql::{Context, ID, Object, Result};

use super::{Edges, OrderItem, Product, User};
use crate::db::orders::OrderRow;
use crate::model::OrderStatus;
use crate::planner::{EdgeArgs, Entity, ToMany};

/// An order with the relations its plan preloaded.
#[derive(Debug)]
pub struct OrderData {
    /// The row.
    pub row: OrderRow,
    /// `user`, when joined.
    pub user: Option<User>,
    /// `items`.
    pub items: Edges<OrderItem>,
    /// `products`.
    pub products: Edges<Product>,
}

/// A purchase: who placed it, what it contains and what it cost.
#[derive(Clone, Debug)]
pub struct Order(pub Arc<OrderData>);

/// A purchase: who placed it, what it contains and what it cost.
#[Object]
impl Order {
    /// Unique identifier.
    async fn id(&self) -> ID {
        ID(self.0.row.id.to_string())
    }

    /// Where the order is in its life cycle.
    async fn status(&self) -> OrderStatus {
        self.0.row.status
    }

    /// The exact total of the order's items.
    async fn total_amount(&self) -> Decimal {
        Decimal(self.0.row.total_amount)
    }

    /// When the order was placed.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.row.created_at)
    }

    /// The user who placed the order. Joined into the statement that loads the order.
    async fn user(&self, ctx: &Context<'_>) -> Result<User> {
        match &self.0.user {
            Some(user) => Ok(user.clone()),
            None => super::unplanned_one(ctx, Entity::User, self.0.row.user_id, "Order.user")
                .await
                .and_then(super::into_user),
        }
    }

    /// The order's lines, ordered by id.
    async fn items(&self, ctx: &Context<'_>) -> Result<Vec<OrderItem>> {
        let args = EdgeArgs::default();
        match self.0.items.get(&args) {
            Some(items) => Ok(items),
            None => super::unplanned(ctx, ToMany::OrderItems, args, self.0.row.id)
                .await
                .map(super::into_order_items),
        }
    }

    /// The products of the order (through `order_products`), ordered by id.
    async fn products(&self, ctx: &Context<'_>) -> Result<Vec<Product>> {
        let args = EdgeArgs::default();
        match self.0.products.get(&args) {
            Some(products) => Ok(products),
            None => super::unplanned(ctx, ToMany::OrderProducts, args, self.0.row.id)
                .await
                .map(super::into_products),
        }
    }
}
