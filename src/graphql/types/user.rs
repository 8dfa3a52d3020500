//! `User`: an account that places orders.

use std::sync::Arc;

use crate::graphql::scalars::DateTime;
use async_graphql::{Context, ID, Object, Result};

use super::{Edges, Order};
use crate::db::users::UserRow;
use crate::model::OrderStatus;
use crate::planner::{EdgeArgs, ToMany};

/// A user with the relations its plan preloaded.
#[derive(Debug)]
pub struct UserData {
    /// The row.
    pub row: UserRow,
    /// `orders`, per argument set.
    pub orders: Edges<Order>,
}

/// A customer account. Its password hash is never exposed.
#[derive(Clone, Debug)]
pub struct User(pub Arc<UserData>);

/// A customer account. Its password hash is never exposed.
#[Object]
impl User {
    /// Unique identifier.
    async fn id(&self) -> ID {
        ID(self.0.row.id.to_string())
    }

    /// Unique e-mail address.
    async fn email(&self) -> &str {
        &self.0.row.email
    }

    /// Unique user name.
    async fn username(&self) -> &str {
        &self.0.row.username
    }

    /// Whether the account is active; only active users can place orders.
    async fn is_active(&self) -> bool {
        self.0.row.is_active
    }

    /// When the account was created.
    async fn created_at(&self) -> DateTime {
        DateTime(self.0.row.created_at)
    }

    /// When the account last changed.
    async fn updated_at(&self) -> DateTime {
        DateTime(self.0.row.updated_at)
    }

    /// Free-text profile, if any.
    async fn bio(&self) -> Option<&str> {
        self.0.row.bio.as_deref()
    }

    /// The user's orders, ordered by id. Loaded for all users of a level in one statement.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "At most this many orders per user (the first by id).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Only orders with this status.")] status: Option<OrderStatus>,
    ) -> Result<Vec<Order>> {
        let args = EdgeArgs {
            first: first.map(i64::from),
            status,
        };
        match self.0.orders.get(&args) {
            Some(orders) => Ok(orders),
            None => super::unplanned(ctx, ToMany::UserOrders, args, self.0.row.id)
                .await
                .map(super::into_orders),
        }
    }
}
