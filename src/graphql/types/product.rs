//! `Product`: something that can be ordered.

use std::sync::Arc;

use crate::graphql::scalars::Decimal;
use async_graphql::{Context, ID, Object, Result};

use super::{Edges, Order, OrderItem};
use crate::db::products::ProductRow;
use crate::planner::{EdgeArgs, ToMany};

/// A product with the relations its plan preloaded.
#[derive(Debug)]
pub struct ProductData {
    /// The row.
    pub row: ProductRow,
    /// `orders`, per argument set.
    pub orders: Edges<Order>,
    /// `orderItems`.
    pub order_items: Edges<OrderItem>,
}

/// A product in the catalogue, with its current price and stock.
#[derive(Clone, Debug)]
pub struct Product(pub Arc<ProductData>);

/// A product in the catalogue, with its current price and stock.
#[Object]
impl Product {
    /// Unique identifier.
    async fn id(&self) -> ID {
        ID(self.0.row.id.to_string())
    }

    /// Display name.
    async fn name(&self) -> &str {
        &self.0.row.name
    }

    /// Unique stock-keeping unit.
    async fn sku(&self) -> &str {
        &self.0.row.sku
    }

    /// Current unit price.
    async fn price(&self) -> Decimal {
        Decimal(self.0.row.price)
    }

    /// Units in stock; never negative.
    async fn stock_quantity(&self) -> i32 {
        self.0.row.stock_quantity
    }

    /// Orders that contain this product (through `order_products`), ordered by id.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most this many orders per product (the first by id).")] first: Option<
            i32,
        >,
    ) -> Result<Vec<Order>> {
        let args = EdgeArgs {
            first: first.map(i64::from),
            status: None,
        };
        match self.0.orders.get(&args) {
            Some(orders) => Ok(orders),
            None => super::unplanned(ctx, ToMany::ProductOrders, args, self.0.row.id)
                .await
                .map(super::into_orders),
        }
    }

    /// Order lines that bought this product, ordered by id.
    async fn order_items(&self, ctx: &Context<'_>) -> Result<Vec<OrderItem>> {
        let args = EdgeArgs::default();
        match self.0.order_items.get(&args) {
            Some(items) => Ok(items),
            None => super::unplanned(ctx, ToMany::ProductOrderItems, args, self.0.row.id)
                .await
                .map(super::into_order_items),
        }
    }
}
