//! Domain values shared by the database layer, the planner and the GraphQL types.

use async_graphql::Enum;

/// The life cycle of an order. Stored as the lowercase strings `pending`, `completed`,
/// `shipped` and `cancelled`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrderStatus {
    /// Placed, not yet shipped.
    Pending,
    /// Delivered and paid: counts as revenue.
    Completed,
    /// On its way to the customer.
    Shipped,
    /// Cancelled before completion; its items' stock was returned.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in declaration order.
    pub const ALL: [OrderStatus; 4] = [
        OrderStatus::Pending,
        OrderStatus::Completed,
        OrderStatus::Shipped,
        OrderStatus::Cancelled,
    ];

    /// The value stored in `orders.status`.
    pub fn as_db(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Completed => "completed",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored `orders.status` value.
    pub fn from_db(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_db() == value)
    }

    /// Parses the GraphQL enum name (`PENDING`, ...), as found in look-ahead arguments.
    pub fn from_graphql(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_db().eq_ignore_ascii_case(value))
    }
}
