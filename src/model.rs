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

/// What an account may do. Stored in `users.role` as `customer` or `admin`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sees the catalogue and their own account and orders; places and cancels their own orders.
    Customer,
    /// Sees and changes everything.
    Admin,
}

impl Role {
    /// The value stored in `users.role` (and carried in access tokens).
    pub fn as_db(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored or claimed role.
    pub fn from_db(value: &str) -> Option<Self> {
        [Role::Customer, Role::Admin]
            .into_iter()
            .find(|r| r.as_db() == value)
    }
}

/// Who makes a request, as its access token says (never looked up: no statement runs to
/// find the viewer).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum Viewer {
    /// No token.
    #[default]
    Anonymous,
    /// A signed-in account.
    User {
        /// The account's id.
        id: i64,
        /// Its role, as of when the token was issued.
        role: Role,
    },
}

impl Viewer {
    /// The server itself (commands, seeding, tools): an administrator that is no account.
    pub const OPERATOR: Viewer = Viewer::User {
        id: 0,
        role: Role::Admin,
    };

    /// An administrator (every row visible).
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Viewer::User {
                role: Role::Admin,
                ..
            }
        )
    }

    /// The signed-in account's id, if any.
    pub fn user_id(self) -> Option<i64> {
        match self {
            Viewer::User { id, .. } => Some(id),
            Viewer::Anonymous => None,
        }
    }
}
