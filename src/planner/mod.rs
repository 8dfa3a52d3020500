//! Pure planning: a GraphQL selection -> a typed load plan.
//!
//! The resolver at the top of a tree converts async-graphql's look-ahead into a [`Field`] tree
//! (so this module never touches a request and is unit-tested with hand-built selections), and
//! [`plan`] decides how every relationship is loaded:
//! - a to-one edge (`Order.user`, `OrderItem.order`, `OrderItem.product`) is a [`Join`] into
//!   the statement that loads its parent (the lesson's `joinedload`);
//! - a to-many edge (`User.orders`, `Order.items`, `Order.products`, `Product.orders`,
//!   `Product.orderItems`) is a [`Batch`]: one statement per distinct argument set, keyed by
//!   the parents' ids (the lesson's `selectinload`);
//! - an edge that is not selected is not in the plan and costs nothing.
//!
//! The statement count of a plan is therefore `1 + batches`, known before any SQL runs.

use async_graphql::Value;

use crate::model::OrderStatus;

/// A selected field, as the planner sees it: its name (not its alias), its arguments with
/// variables already substituted, and its sub-selection with fragments flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The schema field name.
    pub name: String,
    /// Arguments given in the query (defaults are applied by the planner).
    pub args: Vec<(String, Value)>,
    /// The sub-selection.
    pub children: Vec<Field>,
}

impl Field {
    /// A field without arguments.
    pub fn new(name: &str, children: Vec<Field>) -> Self {
        Field {
            name: name.to_owned(),
            args: Vec::new(),
            children,
        }
    }

    /// A leaf (scalar) field.
    pub fn leaf(name: &str) -> Self {
        Field::new(name, Vec::new())
    }

    /// Adds an argument.
    pub fn arg(mut self, name: &str, value: Value) -> Self {
        self.args.push((name.to_owned(), value));
        self
    }
}

/// The four object types backed by tables.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Entity {
    /// `users`
    User,
    /// `orders`
    Order,
    /// `order_items`
    OrderItem,
    /// `products`
    Product,
}

/// A to-one relationship, loaded by a JOIN.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ToOne {
    /// `Order.user`
    OrderUser,
    /// `OrderItem.order`
    OrderItemOrder,
    /// `OrderItem.product`
    OrderItemProduct,
}

/// A to-many relationship, loaded by one batch statement per distinct argument set.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ToMany {
    /// `User.orders`
    UserOrders,
    /// `Order.items`
    OrderItems,
    /// `Order.products` (through `order_products`)
    OrderProducts,
    /// `Product.orders` (through `order_products`)
    ProductOrders,
    /// `Product.orderItems`
    ProductOrderItems,
}

impl ToOne {
    /// The entity at the far end.
    pub fn target(self) -> Entity {
        match self {
            ToOne::OrderUser => Entity::User,
            ToOne::OrderItemOrder => Entity::Order,
            ToOne::OrderItemProduct => Entity::Product,
        }
    }
}

impl ToMany {
    /// The entity at the far end.
    pub fn target(self) -> Entity {
        match self {
            ToMany::UserOrders | ToMany::ProductOrders => Entity::Order,
            ToMany::OrderItems | ToMany::ProductOrderItems => Entity::OrderItem,
            ToMany::OrderProducts => Entity::Product,
        }
    }

    /// The GraphQL path of the edge, for messages.
    pub fn path(self) -> &'static str {
        match self {
            ToMany::UserOrders => "User.orders",
            ToMany::OrderItems => "Order.items",
            ToMany::OrderProducts => "Order.products",
            ToMany::ProductOrders => "Product.orders",
            ToMany::ProductOrderItems => "Product.orderItems",
        }
    }
}

/// How a relationship field of `entity` named `name` is loaded, if it is one.
enum Edge {
    One(ToOne),
    Many(ToMany),
}

fn edge_of(entity: Entity, name: &str) -> Option<Edge> {
    Some(match (entity, name) {
        (Entity::User, "orders") => Edge::Many(ToMany::UserOrders),
        (Entity::Order, "user") => Edge::One(ToOne::OrderUser),
        (Entity::Order, "items") => Edge::Many(ToMany::OrderItems),
        (Entity::Order, "products") => Edge::Many(ToMany::OrderProducts),
        (Entity::OrderItem, "order") => Edge::One(ToOne::OrderItemOrder),
        (Entity::OrderItem, "product") => Edge::One(ToOne::OrderItemProduct),
        (Entity::Product, "orders") => Edge::Many(ToMany::ProductOrders),
        (Entity::Product, "orderItems") => Edge::Many(ToMany::ProductOrderItems),
        _ => return None,
    })
}

/// The per-parent arguments of a to-many edge. Two selections with equal arguments share one
/// batch; different arguments are different batches. The field resolver rebuilds the same key
/// from its own arguments to find its preloaded rows.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EdgeArgs {
    /// At most this many children per parent, by id.
    pub first: Option<i64>,
    /// Only orders with this status.
    pub status: Option<OrderStatus>,
}

/// A set of rows of one entity, loaded by one statement, with what is loaded along with them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// The entity of the rows.
    pub entity: Entity,
    /// To-one edges joined into the same statement.
    pub joins: Vec<Join>,
    /// To-many edges, each one more statement keyed by this node's ids.
    pub batches: Vec<Batch>,
    /// The scalar fields selected on these rows, sorted and without repeats. Only their
    /// columns (and the keys) are read from the database.
    pub scalars: Vec<String>,
}

/// A to-one edge loaded by a JOIN into its parent's statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Join {
    /// Which edge.
    pub edge: ToOne,
    /// The joined rows and what they load in turn.
    pub node: Node,
}

/// A to-many edge loaded by one batch statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    /// Which edge.
    pub edge: ToMany,
    /// Its per-parent arguments.
    pub args: EdgeArgs,
    /// The child rows and what they load in turn.
    pub node: Node,
}

impl Node {
    /// Statements this node costs: its own plus one per batch below it (joins are free).
    pub fn statements(&self) -> usize {
        1 + self.batch_statements()
    }

    /// Statements of the batches below this node.
    pub fn batch_statements(&self) -> usize {
        self.batches
            .iter()
            .map(|b| b.node.statements())
            .sum::<usize>()
            + self
                .joins
                .iter()
                .map(|j| j.node.batch_statements())
                .sum::<usize>()
    }
}

/// Limits the planner enforces.
#[derive(Copy, Clone, Debug)]
pub struct Limits {
    /// Largest `first` accepted on any list.
    pub max_page_size: i64,
}

/// A selection the planner refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// Plans the loads for a set of `entity` rows whose selection is `selection`.
pub fn plan(entity: Entity, selection: &[Field], limits: Limits) -> Result<Node, PlanError> {
    let fields: Vec<&Field> = selection.iter().collect();
    plan_node(entity, &fields, limits)
}

fn plan_node(entity: Entity, fields: &[&Field], limits: Limits) -> Result<Node, PlanError> {
    let mut joins: Vec<(ToOne, Vec<&Field>)> = Vec::new();
    let mut batches: Vec<(ToMany, EdgeArgs, Vec<&Field>)> = Vec::new();
    let mut scalars: Vec<String> = Vec::new();
    for field in fields {
        match edge_of(entity, &field.name) {
            None => {
                if let Err(at) = scalars.binary_search(&field.name) {
                    scalars.insert(at, field.name.clone());
                }
            }
            Some(Edge::One(edge)) => match joins.iter_mut().find(|(e, _)| *e == edge) {
                Some((_, children)) => children.extend(field.children.iter()),
                None => joins.push((edge, field.children.iter().collect())),
            },
            Some(Edge::Many(edge)) => {
                let args = edge_args(edge, field, limits)?;
                match batches
                    .iter_mut()
                    .find(|(e, a, _)| *e == edge && *a == args)
                {
                    Some((_, _, children)) => children.extend(field.children.iter()),
                    None => batches.push((edge, args, field.children.iter().collect())),
                }
            }
        }
    }
    Ok(Node {
        entity,
        joins: joins
            .into_iter()
            .map(|(edge, children)| {
                Ok(Join {
                    edge,
                    node: plan_node(edge.target(), &children, limits)?,
                })
            })
            .collect::<Result<_, PlanError>>()?,
        batches: batches
            .into_iter()
            .map(|(edge, args, children)| {
                Ok(Batch {
                    edge,
                    args,
                    node: plan_node(edge.target(), &children, limits)?,
                })
            })
            .collect::<Result<_, PlanError>>()?,
        scalars,
    })
}

/// A plan that loads only the rows' own columns and no relationship: what a lazy loader
/// plans (each relationship is then loaded when it is resolved).
pub fn plan_scalars(entity: Entity, selection: &[Field]) -> Node {
    let mut scalars: Vec<String> = selection
        .iter()
        .filter(|f| edge_of(entity, &f.name).is_none())
        .map(|f| f.name.clone())
        .collect();
    scalars.sort();
    scalars.dedup();
    Node {
        entity,
        joins: Vec::new(),
        batches: Vec::new(),
        scalars,
    }
}

/// Validates a page size: not negative, not above the configured cap.
pub fn check_first(first: i64, what: &str, limits: Limits) -> Result<i64, PlanError> {
    if first < 0 {
        return Err(PlanError(format!(
            "{what}: `first` must not be negative, got {first}"
        )));
    }
    if first > limits.max_page_size {
        return Err(PlanError(format!(
            "{what}: `first` must be at most {}, got {first}",
            limits.max_page_size
        )));
    }
    Ok(first)
}

fn edge_args(edge: ToMany, field: &Field, limits: Limits) -> Result<EdgeArgs, PlanError> {
    let args = EdgeArgs::read(edge.path(), field.args.iter().map(|(n, v)| (n.as_str(), v)))?;
    if let Some(first) = args.first {
        check_first(first, edge.path(), limits)?;
    }
    Ok(args)
}

impl EdgeArgs {
    /// Reads a to-many edge's arguments (variables already substituted; `null` means absent).
    /// The planner and every renderer read them through this one function, so the key a
    /// batch is stored under is the key it is looked up by.
    pub fn read<'v>(
        path: &str,
        args: impl IntoIterator<Item = (&'v str, &'v Value)>,
    ) -> Result<EdgeArgs, PlanError> {
        let mut out = EdgeArgs::default();
        for (name, value) in args {
            match (name, value) {
                (_, Value::Null) => {}
                ("first", Value::Number(n)) => {
                    out.first =
                        Some(n.as_i64().ok_or_else(|| {
                            PlanError(format!("{path}: `first` must be an integer"))
                        })?);
                }
                ("first", other) => {
                    return Err(PlanError(format!(
                        "{path}: `first` must be an integer, got {other}"
                    )));
                }
                ("status", Value::Enum(name)) => out.status = Some(parse_status(name, path)?),
                ("status", Value::String(name)) => out.status = Some(parse_status(name, path)?),
                ("status", other) => {
                    return Err(PlanError(format!(
                        "{path}: `status` must be an OrderStatus, got {other}"
                    )));
                }
                (other, _) => {
                    return Err(PlanError(format!("{path}: unknown argument `{other}`")));
                }
            }
        }
        Ok(out)
    }
}

fn parse_status(name: &str, path: &str) -> Result<OrderStatus, PlanError> {
    OrderStatus::from_graphql(name)
        .ok_or_else(|| PlanError(format!("{path}: unknown status {name}")))
}

#[cfg(test)]
mod tests;
