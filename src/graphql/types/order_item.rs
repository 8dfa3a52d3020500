//! `OrderItem`: one line of an order.

use std::sync::Arc;

use crate::graphql::scalars::Decimal;
use async_graphql::{Context, ID, Object, Result};

use super::{Order, Product};
use crate::db::order_items::OrderItemRow;
use crate::planner::Entity;

/// An order line with the relations its plan preloaded.
#[derive(Debug)]
pub struct OrderItemData {
    /// The row.
    pub row: OrderItemRow,
    /// `order`, when joined.
    pub order: Option<Order>,
    /// `product`, when joined.
    pub product: Option<Product>,
}

/// One line of an order: a product, a quantity and the unit price paid.
#[derive(Clone, Debug)]
pub struct OrderItem(pub Arc<OrderItemData>);

/// One line of an order: a product, a quantity and the unit price paid.
#[Object]
impl OrderItem {
    /// Unique identifier.
    async fn id(&self) -> ID {
        ID(self.0.row.id.to_string())
    }

    /// Units bought (at least 1).
    async fn quantity(&self) -> i32 {
        self.0.row.quantity
    }

    /// The price of one unit when the order was placed.
    async fn unit_price(&self) -> Decimal {
        Decimal(self.0.row.unit_price)
    }

    /// The order this line belongs to. Joined into the statement that loads the line.
    async fn order(&self, ctx: &Context<'_>) -> Result<Order> {
        match &self.0.order {
            Some(order) => Ok(order.clone()),
            None => {
                super::unplanned_one(ctx, Entity::Order, self.0.row.order_id, "OrderItem.order")
                    .await
                    .and_then(super::into_order)
            }
        }
    }

    /// The product bought. Joined into the statement that loads the line.
    async fn product(&self, ctx: &Context<'_>) -> Result<Product> {
        match &self.0.product {
            Some(product) => Ok(product.clone()),
            None => super::unplanned_one(
                ctx,
                Entity::Product,
                self.0.row.product_id,
                "OrderItem.product",
            )
            .await
            .and_then(super::into_product),
        }
    }
}
