//! Domain values shared by the database layer, the planner and the GraphQL types.

use async_graphql::Enum;

/// An enum column's values, described once: its GraphQL types and each value's GraphQL name
/// with the text stored for it. The description drives reading, writing, filtering, cursors
/// and rendering of every column of this kind ([`crate::entities::Kind::Enum`]).
#[derive(Debug)]
pub struct EnumType {
    /// The GraphQL enum type (`OrderStatus`).
    pub name: &'static str,
    /// Its non-null form (`OrderStatus!`), the type of a field of this kind.
    pub non_null: &'static str,
    /// The input type of its conditions in `where` filters (`OrderStatusFilter`).
    pub filter: &'static str,
    /// `(GraphQL name, stored text)` of each value, in declaration order.
    pub values: &'static [(&'static str, &'static str)],
    /// Registers the GraphQL enum type (the Rust enum that mutations and arguments use too).
    pub register: fn(&mut async_graphql::registry::Registry),
}

impl EnumType {
    /// The value whose GraphQL name is `name` (ASCII case ignored, as look-ahead arguments
    /// and variables may spell it).
    pub fn by_name(&self, name: &str) -> Option<u8> {
        let i = self
            .values
            .iter()
            .position(|v| v.0.eq_ignore_ascii_case(name))?;
        u8::try_from(i).ok()
    }

    /// The value stored as `text`.
    pub fn by_stored(&self, text: &str) -> Option<u8> {
        let i = self.values.iter().position(|v| v.1 == text)?;
        u8::try_from(i).ok()
    }

    /// `an OrderStatus` or `a Role`, for messages: the article the name takes.
    pub fn article(&self) -> &'static str {
        article(self.name)
    }
}

/// The indefinite article a type name takes (`an Order`, `a Product`), by its first letter.
pub fn article(name: &str) -> &'static str {
    if name.starts_with(['A', 'E', 'I', 'O']) {
        "an"
    } else {
        "a"
    }
}

impl PartialEq for EnumType {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for EnumType {}

impl std::hash::Hash for EnumType {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name.hash(h);
    }
}

/// [`OrderStatus`] as a column kind.
pub static ORDER_STATUS: EnumType = EnumType {
    name: "OrderStatus",
    non_null: "OrderStatus!",
    filter: "OrderStatusFilter",
    values: &[
        ("PENDING", "pending"),
        ("COMPLETED", "completed"),
        ("SHIPPED", "shipped"),
        ("CANCELLED", "cancelled"),
    ],
    register: |r| drop(<OrderStatus as async_graphql::OutputType>::create_type_info(r)),
};

/// [`Role`] as a column kind.
pub static ROLE: EnumType = EnumType {
    name: "Role",
    non_null: "Role!",
    filter: "RoleFilter",
    values: &[("CUSTOMER", "customer"), ("ADMIN", "admin")],
    register: |r| drop(<Role as async_graphql::OutputType>::create_type_info(r)),
};

/// [`OrderEventKind`] as a column kind.
pub static ORDER_EVENT_KIND: EnumType = EnumType {
    name: "OrderEventKind",
    non_null: "OrderEventKind!",
    filter: "OrderEventKindFilter",
    values: &[
        ("CREATED", "created"),
        ("STATUS_CHANGED", "status_changed"),
        ("CANCELLED", "cancelled"),
    ],
    register: |r| drop(<OrderEventKind as async_graphql::OutputType>::create_type_info(r)),
};

/// What happened to an order. Stored in `order_events.kind` as `created`, `status_changed`
/// and `cancelled`.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum OrderEventKind {
    /// The order was placed.
    Created,
    /// Its status changed (to anything but cancelled).
    StatusChanged,
    /// It was cancelled.
    Cancelled,
}

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

    /// The value stored in `orders.status` (as [`ORDER_STATUS`] describes it).
    pub fn as_db(self) -> &'static str {
        ORDER_STATUS.values[self as usize].1
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
    fn the_enum_descriptions_name_the_graphql_values_and_stored_texts() {
        use async_graphql::{InputType, Name, Value};
        for s in OrderStatus::ALL {
            let (name, stored) = super::ORDER_STATUS.values[s as usize];
            assert_eq!(s.to_value(), Value::Enum(Name::new(name)));
            assert_eq!(OrderStatus::from_db(stored), Some(s));
        }
        for r in [super::Role::Customer, super::Role::Admin] {
            let (name, stored) = super::ROLE.values[r as usize];
            assert_eq!(r.to_value(), Value::Enum(Name::new(name)));
            assert_eq!(super::Role::from_db(stored), Some(r));
        }
        use super::OrderEventKind as K;
        for k in [K::Created, K::StatusChanged, K::Cancelled] {
            let (name, _) = super::ORDER_EVENT_KIND.values[k as usize];
            assert_eq!(k.to_value(), Value::Enum(Name::new(name)));
        }
        assert_eq!(super::ORDER_EVENT_KIND.values.len(), 3);
        assert_eq!(super::ORDER_STATUS.values.len(), OrderStatus::ALL.len());
        assert_eq!(super::ROLE.values.len(), 2);
    }

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
    /// The value stored in `users.role` (and carried in access tokens), as [`ROLE`]
    /// describes it.
    pub fn as_db(self) -> &'static str {
        ROLE.values[self as usize].1
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
