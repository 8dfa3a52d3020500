//! Fast output for preloaded object graphs.
//!
//! Once a plan has loaded everything a selection needs, executing it field by field through
//! async-graphql (a future, a context and a lookup per field) costs far more than the SQL.
//! [`Fast`] wraps a root value: it compiles the selection once (aliases, fragments, merged
//! repeated fields, edge arguments) into a small tree, then renders every object with a plain
//! loop over that tree. It has the schema type of the value it wraps, so the schema is
//! unchanged; if anything is not preloaded it falls back to the normal executor. The
//! statement-count suite compares its answers with a naive reference for every shape.

use std::borrow::Cow;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    ContextSelectionSet, Name, OutputType, Positioned, ScalarType, SelectionField, ServerResult,
    Value,
};

use super::scalars::{DateTime, Decimal};
use super::types::{Order, OrderItem, Product, User};
use crate::model::OrderStatus;
use crate::planner::EdgeArgs;

/// A root value rendered by the fast path (falling back to the normal executor).
pub struct Fast<T>(pub T);

/// Renders that fell back to the normal executor, since start (the suite expects none).
static FALLBACKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many renders fell back to the normal executor since the process started.
pub fn fallbacks() -> u64 {
    FALLBACKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// One compiled field: its response key and what it reads (opaque outside this module).
pub struct Compiled {
    key: Name,
    what: What,
}

/// What a compiled field reads. Edges carry their own compiled sub-selection.
enum What {
    Typename(&'static str),
    UserId,
    UserEmail,
    UserUsername,
    UserIsActive,
    UserCreatedAt,
    UserUpdatedAt,
    UserBio,
    UserOrders(EdgeArgs, Vec<Compiled>),
    OrderId,
    OrderStatus,
    OrderTotalAmount,
    OrderCreatedAt,
    OrderUser(Vec<Compiled>),
    OrderItems(Vec<Compiled>),
    OrderProducts(Vec<Compiled>),
    ItemId,
    ItemQuantity,
    ItemUnitPrice,
    ItemOrder(Vec<Compiled>),
    ItemProduct(Vec<Compiled>),
    ProductId,
    ProductName,
    ProductSku,
    ProductPrice,
    ProductStockQuantity,
    ProductOrders(EdgeArgs, Vec<Compiled>),
    ProductOrderItems(Vec<Compiled>),
}

#[derive(Copy, Clone, PartialEq, Eq)]
enum Ty {
    User,
    Order,
    OrderItem,
    Product,
}

impl Ty {
    fn name(self) -> &'static str {
        match self {
            Ty::User => "User",
            Ty::Order => "Order",
            Ty::OrderItem => "OrderItem",
            Ty::Product => "Product",
        }
    }
}

/// The edge arguments of a field, read exactly as the planner reads them.
fn edge_args(field: &SelectionField<'_>) -> Option<EdgeArgs> {
    let mut args = EdgeArgs::default();
    for (name, value) in field.arguments().ok()? {
        match (name.as_str(), value) {
            (_, Value::Null) => {}
            ("first", Value::Number(n)) => args.first = Some(n.as_i64()?),
            ("status", Value::Enum(s)) => {
                args.status = Some(OrderStatus::from_graphql(s.as_str())?)
            }
            _ => return None,
        }
    }
    Some(args)
}

/// Compiles the union of the sub-selections of `fields` (one response key, possibly repeated)
/// for objects of type `ty`. `None`: something this path does not handle.
fn compile(ty: Ty, fields: &[SelectionField<'_>]) -> Option<Vec<Compiled>> {
    // Group by response key, keeping first-seen order: repeated keys merge their selections.
    let mut groups: Vec<(&str, Vec<SelectionField<'_>>)> = Vec::new();
    for parent in fields {
        for child in parent.selection_set() {
            let key = child.alias().unwrap_or(child.name());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, same)) => same.push(child),
                None => groups.push((key, vec![child])),
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (key, same) in groups {
        let first = &same[0];
        let what = match (ty, first.name()) {
            (_, "__typename") => What::Typename(ty.name()),
            (Ty::User, "id") => What::UserId,
            (Ty::User, "email") => What::UserEmail,
            (Ty::User, "username") => What::UserUsername,
            (Ty::User, "isActive") => What::UserIsActive,
            (Ty::User, "createdAt") => What::UserCreatedAt,
            (Ty::User, "updatedAt") => What::UserUpdatedAt,
            (Ty::User, "bio") => What::UserBio,
            (Ty::User, "orders") => What::UserOrders(edge_args(first)?, compile(Ty::Order, &same)?),
            (Ty::Order, "id") => What::OrderId,
            (Ty::Order, "status") => What::OrderStatus,
            (Ty::Order, "totalAmount") => What::OrderTotalAmount,
            (Ty::Order, "createdAt") => What::OrderCreatedAt,
            (Ty::Order, "user") => What::OrderUser(compile(Ty::User, &same)?),
            (Ty::Order, "items") => What::OrderItems(compile(Ty::OrderItem, &same)?),
            (Ty::Order, "products") => What::OrderProducts(compile(Ty::Product, &same)?),
            (Ty::OrderItem, "id") => What::ItemId,
            (Ty::OrderItem, "quantity") => What::ItemQuantity,
            (Ty::OrderItem, "unitPrice") => What::ItemUnitPrice,
            (Ty::OrderItem, "order") => What::ItemOrder(compile(Ty::Order, &same)?),
            (Ty::OrderItem, "product") => What::ItemProduct(compile(Ty::Product, &same)?),
            (Ty::Product, "id") => What::ProductId,
            (Ty::Product, "name") => What::ProductName,
            (Ty::Product, "sku") => What::ProductSku,
            (Ty::Product, "price") => What::ProductPrice,
            (Ty::Product, "stockQuantity") => What::ProductStockQuantity,
            (Ty::Product, "orders") => {
                What::ProductOrders(edge_args(first)?, compile(Ty::Order, &same)?)
            }
            (Ty::Product, "orderItems") => What::ProductOrderItems(compile(Ty::OrderItem, &same)?),
            _ => return None,
        };
        out.push(Compiled {
            key: Name::new(key),
            what,
        });
    }
    Some(out)
}

fn id(v: i64) -> Value {
    Value::String(v.to_string())
}

fn list<T>(items: &[T], render: impl Fn(&T) -> Option<Value>) -> Option<Value> {
    items
        .iter()
        .map(render)
        .collect::<Option<Vec<_>>>()
        .map(Value::List)
}

fn status_name(s: OrderStatus) -> Name {
    Name::new(match s {
        OrderStatus::Pending => "PENDING",
        OrderStatus::Completed => "COMPLETED",
        OrderStatus::Shipped => "SHIPPED",
        OrderStatus::Cancelled => "CANCELLED",
    })
}

fn object(sel: &[Compiled], mut field: impl FnMut(&What) -> Option<Value>) -> Option<Value> {
    let mut map = IndexMap::with_capacity(sel.len());
    for c in sel {
        map.insert(c.key.clone(), field(&c.what)?);
    }
    Some(Value::Object(map))
}

fn user(u: &User, sel: &[Compiled]) -> Option<Value> {
    let d = &u.0;
    object(sel, |what| {
        Some(match what {
            What::Typename(n) => Value::String((*n).to_owned()),
            What::UserId => id(d.row.id),
            What::UserEmail => Value::String(d.row.email.clone()),
            What::UserUsername => Value::String(d.row.username.clone()),
            What::UserIsActive => Value::Boolean(d.row.is_active),
            What::UserCreatedAt => DateTime(d.row.created_at).to_value(),
            What::UserUpdatedAt => DateTime(d.row.updated_at).to_value(),
            What::UserBio => d.row.bio.clone().map(Value::String).unwrap_or(Value::Null),
            What::UserOrders(args, s) => list(d.orders.get_ref(args)?, |o| order(o, s))?,
            _ => return None,
        })
    })
}

fn order(o: &Order, sel: &[Compiled]) -> Option<Value> {
    let d = &o.0;
    object(sel, |what| {
        Some(match what {
            What::Typename(n) => Value::String((*n).to_owned()),
            What::OrderId => id(d.row.id),
            What::OrderStatus => Value::Enum(status_name(d.row.status)),
            What::OrderTotalAmount => Decimal(d.row.total_amount).to_value(),
            What::OrderCreatedAt => DateTime(d.row.created_at).to_value(),
            What::OrderUser(s) => user(d.user.as_ref()?, s)?,
            What::OrderItems(s) => list(d.items.get_ref(&EdgeArgs::default())?, |i| item(i, s))?,
            What::OrderProducts(s) => {
                list(d.products.get_ref(&EdgeArgs::default())?, |p| product(p, s))?
            }
            _ => return None,
        })
    })
}

fn item(i: &OrderItem, sel: &[Compiled]) -> Option<Value> {
    let d = &i.0;
    object(sel, |what| {
        Some(match what {
            What::Typename(n) => Value::String((*n).to_owned()),
            What::ItemId => id(d.row.id),
            What::ItemQuantity => Value::from(d.row.quantity),
            What::ItemUnitPrice => Decimal(d.row.unit_price).to_value(),
            What::ItemOrder(s) => order(d.order.as_ref()?, s)?,
            What::ItemProduct(s) => product(d.product.as_ref()?, s)?,
            _ => return None,
        })
    })
}

fn product(p: &Product, sel: &[Compiled]) -> Option<Value> {
    let d = &p.0;
    object(sel, |what| {
        Some(match what {
            What::Typename(n) => Value::String((*n).to_owned()),
            What::ProductId => id(d.row.id),
            What::ProductName => Value::String(d.row.name.clone()),
            What::ProductSku => Value::String(d.row.sku.clone()),
            What::ProductPrice => Decimal(d.row.price).to_value(),
            What::ProductStockQuantity => Value::from(d.row.stock_quantity),
            What::ProductOrders(args, s) => list(d.orders.get_ref(args)?, |o| order(o, s))?,
            What::ProductOrderItems(s) => {
                list(d.order_items.get_ref(&EdgeArgs::default())?, |i| item(i, s))?
            }
            _ => return None,
        })
    })
}

/// An object type the fast path renders.
pub trait Render: OutputType {
    /// Its schema type.
    #[doc(hidden)]
    fn ty() -> TyTag;
    /// Renders it with a compiled selection.
    #[doc(hidden)]
    fn render(&self, sel: &[Compiled]) -> Option<Value>;
}

/// The object type of a [`Render`] implementation (opaque).
#[doc(hidden)]
pub struct TyTag(Ty);

macro_rules! render {
    ($t:ty, $ty:expr, $f:ident) => {
        impl Render for $t {
            fn ty() -> TyTag {
                TyTag($ty)
            }
            fn render(&self, sel: &[Compiled]) -> Option<Value> {
                $f(self, sel)
            }
        }
    };
}
render!(User, Ty::User, user);
render!(Order, Ty::Order, order);
render!(OrderItem, Ty::OrderItem, item);
render!(Product, Ty::Product, product);

/// How a wrapped value is rendered: a list, an optional, or one object.
pub trait Shape: OutputType {
    /// The object type inside.
    #[doc(hidden)]
    fn ty() -> TyTag;
    /// Renders the value.
    #[doc(hidden)]
    fn render_shape(&self, sel: &[Compiled]) -> Option<Value>;
}

impl<T: Render> Shape for T {
    fn ty() -> TyTag {
        <T as Render>::ty()
    }
    fn render_shape(&self, sel: &[Compiled]) -> Option<Value> {
        self.render(sel)
    }
}

impl<T: Render> Shape for Vec<T> {
    fn ty() -> TyTag {
        T::ty()
    }
    fn render_shape(&self, sel: &[Compiled]) -> Option<Value> {
        list(self, |v| v.render(sel))
    }
}

impl<T: Render> Shape for Option<T> {
    fn ty() -> TyTag {
        T::ty()
    }
    fn render_shape(&self, sel: &[Compiled]) -> Option<Value> {
        match self {
            Some(v) => v.render(sel),
            None => Some(Value::Null),
        }
    }
}

impl<T: Shape> OutputType for Fast<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn qualified_type_name() -> String {
        T::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let rendered = {
            let fctx = ctx.with_field(field);
            let this = fctx.field();
            compile(T::ty().0, std::slice::from_ref(&this))
                .and_then(|sel| self.0.render_shape(&sel))
        };
        match rendered {
            Some(value) => Ok(value),
            None => {
                FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(field = %field.node.name.node, "fast output fell back");
                self.0.resolve(ctx, field).await
            }
        }
    }
}
