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

impl OrderStatus {
    /// Whether an order may move from `self` to `to`: `pending -> shipped -> completed`, and
    /// `pending | shipped -> cancelled`. Completed and cancelled are final.
    pub fn can_become(self, to: OrderStatus) -> bool {
        use OrderStatus::*;
        matches!(
            (self, to),
            (Pending, Shipped) | (Shipped, Completed) | (Pending, Cancelled) | (Shipped, Cancelled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::OrderStatus::{self, *};

    #[test]
    fn the_state_machine() {
        let allowed: Vec<(OrderStatus, OrderStatus)> = OrderStatus::ALL
            .into_iter()
            .flat_map(|a| OrderStatus::ALL.into_iter().map(move |b| (a, b)))
            .filter(|(a, b)| a.can_become(*b))
            .collect();
        assert_eq!(
            allowed,
            [
                (Pending, Shipped),
                (Pending, Cancelled),
                (Shipped, Completed),
                (Shipped, Cancelled)
            ]
        );
    }

    #[test]
    fn graphql_and_database_names() {
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::from_db(s.as_db()), Some(s));
            assert_eq!(
                OrderStatus::from_graphql(&s.as_db().to_uppercase()),
                Some(s)
            );
        }
    }
}
