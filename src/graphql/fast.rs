//! Fast output for preloaded object graphs.
//!
//! Once a plan has loaded everything a selection needs, executing it field by field through
//! async-graphql (a future, a context and a lookup per field) costs far more than the SQL.
//! [`Fast`] wraps a root value: it compiles the (canonical) selection once (response keys,
//! edge arguments) into a small tree, then renders every object with a plain
//! loop over that tree. It has the schema type of the value it wraps, so the schema is
//! unchanged; if anything is not preloaded it falls back to the normal executor. The
//! statement-count suite compares its answers with a naive reference for every shape.

use std::borrow::Cow;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    ContextSelectionSet, OutputType, Positioned, SelectionField, ServerError, ServerResult, Value,
};

use super::RequestContext;
use super::operation::EMPTY_SELECTION_KEY;
use super::types::{Order, OrderItem, Product, User};
use crate::json;
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
    /// `"key":`, ready to copy.
    key: Box<[u8]>,
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

/// The edge arguments of a field, read by the planner's own reading.
fn edge_args(field: &SelectionField<'_>) -> Option<EdgeArgs> {
    let args = field.arguments().ok()?;
    EdgeArgs::read("", args.iter().map(|(n, v)| (n.as_str(), v))).ok()
}

/// Compiles the sub-selection of `field` for objects of type `ty`. The executor runs
/// canonical documents (see [`super::operation`]), where each response key occurs once, so
/// this is a plain walk. `None`: something this path does not handle.
fn compile(ty: Ty, field: &SelectionField<'_>) -> Option<Vec<Compiled>> {
    let mut out = Vec::new();
    for child in field.selection_set() {
        let key = child.alias().unwrap_or(child.name());
        if key == EMPTY_SELECTION_KEY {
            // The placeholder of an emptied selection set: the object renders as `{}`.
            continue;
        }
        let what = match (ty, child.name()) {
            (_, "__typename") => What::Typename(ty.name()),
            (Ty::User, "id") => What::UserId,
            (Ty::User, "email") => What::UserEmail,
            (Ty::User, "username") => What::UserUsername,
            (Ty::User, "isActive") => What::UserIsActive,
            (Ty::User, "createdAt") => What::UserCreatedAt,
            (Ty::User, "updatedAt") => What::UserUpdatedAt,
            (Ty::User, "bio") => What::UserBio,
            (Ty::User, "orders") => {
                What::UserOrders(edge_args(&child)?, compile(Ty::Order, &child)?)
            }
            (Ty::Order, "id") => What::OrderId,
            (Ty::Order, "status") => What::OrderStatus,
            (Ty::Order, "totalAmount") => What::OrderTotalAmount,
            (Ty::Order, "createdAt") => What::OrderCreatedAt,
            (Ty::Order, "user") => What::OrderUser(compile(Ty::User, &child)?),
            (Ty::Order, "items") => What::OrderItems(compile(Ty::OrderItem, &child)?),
            (Ty::Order, "products") => What::OrderProducts(compile(Ty::Product, &child)?),
            (Ty::OrderItem, "id") => What::ItemId,
            (Ty::OrderItem, "quantity") => What::ItemQuantity,
            (Ty::OrderItem, "unitPrice") => What::ItemUnitPrice,
            (Ty::OrderItem, "order") => What::ItemOrder(compile(Ty::Order, &child)?),
            (Ty::OrderItem, "product") => What::ItemProduct(compile(Ty::Product, &child)?),
            (Ty::Product, "id") => What::ProductId,
            (Ty::Product, "name") => What::ProductName,
            (Ty::Product, "sku") => What::ProductSku,
            (Ty::Product, "price") => What::ProductPrice,
            (Ty::Product, "stockQuantity") => What::ProductStockQuantity,
            (Ty::Product, "orders") => {
                What::ProductOrders(edge_args(&child)?, compile(Ty::Order, &child)?)
            }
            (Ty::Product, "orderItems") => What::ProductOrderItems(compile(Ty::OrderItem, &child)?),
            _ => return None,
        };
        let mut k = Vec::with_capacity(key.len() + 3);
        json::push_str(&mut k, key);
        k.push(b':');
        out.push(Compiled {
            key: k.into_boxed_slice(),
            what,
        });
    }
    Some(out)
}

/// Output buffer of a render, with the most it may hold: a render that would pass it stops
/// (at the next list item), so a fan-out never builds a giant body.
pub struct Out {
    buf: Vec<u8>,
    cap: usize,
}

impl Out {
    fn over(&self) -> bool {
        self.buf.len() > self.cap
    }
}

impl std::ops::Deref for Out {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl std::ops::DerefMut for Out {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

fn list<T>(out: &mut Out, items: &[T], render: impl Fn(&T, &mut Out) -> Option<()>) -> Option<()> {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if out.over() {
            return None;
        }
        if i > 0 {
            out.push(b',');
        }
        render(item, out)?;
    }
    out.push(b']');
    Some(())
}

fn status_name(s: OrderStatus) -> &'static [u8] {
    match s {
        OrderStatus::Pending => b"\"PENDING\"",
        OrderStatus::Completed => b"\"COMPLETED\"",
        OrderStatus::Shipped => b"\"SHIPPED\"",
        OrderStatus::Cancelled => b"\"CANCELLED\"",
    }
}

fn object(
    out: &mut Out,
    sel: &[Compiled],
    mut field: impl FnMut(&What, &mut Out) -> Option<()>,
) -> Option<()> {
    out.push(b'{');
    for (i, c) in sel.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&c.key);
        field(&c.what, out)?;
    }
    out.push(b'}');
    Some(())
}

fn datetime(out: &mut Out, t: &chrono::DateTime<chrono::Utc>) {
    // The same text as the `DateTime` scalar.
    json::push_str(out, &t.to_rfc3339());
}

fn opt_str(out: &mut Out, s: Option<&str>) {
    match s {
        Some(s) => json::push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn bool_(out: &mut Out, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

fn user(u: &User, sel: &[Compiled], out: &mut Out) -> Option<()> {
    let d = &u.0;
    object(out, sel, |what, out| {
        match what {
            What::Typename(n) => json::push_str(out, n),
            What::UserId => json::push_id(out, d.row.id),
            What::UserEmail => json::push_str(out, &d.row.email),
            What::UserUsername => json::push_str(out, &d.row.username),
            What::UserIsActive => bool_(out, d.row.is_active),
            What::UserCreatedAt => datetime(out, &d.row.created_at),
            What::UserUpdatedAt => datetime(out, &d.row.updated_at),
            What::UserBio => opt_str(out, d.row.bio.as_deref()),
            What::UserOrders(args, s) => {
                list(out, d.orders.get_ref(args)?, |o, out| order(o, s, out))?
            }
            _ => return None,
        }
        Some(())
    })
}

fn order(o: &Order, sel: &[Compiled], out: &mut Out) -> Option<()> {
    let d = &o.0;
    object(out, sel, |what, out| {
        match what {
            What::Typename(n) => json::push_str(out, n),
            What::OrderId => json::push_id(out, d.row.id),
            What::OrderStatus => out.extend_from_slice(status_name(d.row.status)),
            What::OrderTotalAmount => json::push_decimal(out, &d.row.total_amount),
            What::OrderCreatedAt => datetime(out, &d.row.created_at),
            What::OrderUser(s) => user(d.user.as_ref()?, s, out)?,
            What::OrderItems(s) => list(out, d.items.get_ref(&EdgeArgs::default())?, |i, out| {
                item(i, s, out)
            })?,
            What::OrderProducts(s) => {
                list(out, d.products.get_ref(&EdgeArgs::default())?, |p, out| {
                    product(p, s, out)
                })?
            }
            _ => return None,
        }
        Some(())
    })
}

fn item(i: &OrderItem, sel: &[Compiled], out: &mut Out) -> Option<()> {
    let d = &i.0;
    object(out, sel, |what, out| {
        match what {
            What::Typename(n) => json::push_str(out, n),
            What::ItemId => json::push_id(out, d.row.id),
            What::ItemQuantity => json::push_i64(out, i64::from(d.row.quantity)),
            What::ItemUnitPrice => json::push_decimal(out, &d.row.unit_price),
            What::ItemOrder(s) => order(d.order.as_ref()?, s, out)?,
            What::ItemProduct(s) => product(d.product.as_ref()?, s, out)?,
            _ => return None,
        }
        Some(())
    })
}

fn product(p: &Product, sel: &[Compiled], out: &mut Out) -> Option<()> {
    let d = &p.0;
    object(out, sel, |what, out| {
        match what {
            What::Typename(n) => json::push_str(out, n),
            What::ProductId => json::push_id(out, d.row.id),
            What::ProductName => json::push_str(out, &d.row.name),
            What::ProductSku => json::push_str(out, &d.row.sku),
            What::ProductPrice => json::push_decimal(out, &d.row.price),
            What::ProductStockQuantity => json::push_i64(out, i64::from(d.row.stock_quantity)),
            What::ProductOrders(args, s) => {
                list(out, d.orders.get_ref(args)?, |o, out| order(o, s, out))?
            }
            What::ProductOrderItems(s) => list(
                out,
                d.order_items.get_ref(&EdgeArgs::default())?,
                |i, out| item(i, s, out),
            )?,
            _ => return None,
        }
        Some(())
    })
}

/// An object type the fast path renders.
pub trait Render: OutputType {
    /// Its schema type.
    #[doc(hidden)]
    fn ty() -> TyTag;
    /// Renders it with a compiled selection.
    #[doc(hidden)]
    fn render(&self, sel: &[Compiled], out: &mut Out) -> Option<()>;
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
            fn render(&self, sel: &[Compiled], out: &mut Out) -> Option<()> {
                $f(self, sel, out)
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
    fn render_shape(&self, sel: &[Compiled], out: &mut Out) -> Option<()>;
}

impl<T: Render> Shape for T {
    fn ty() -> TyTag {
        <T as Render>::ty()
    }
    fn render_shape(&self, sel: &[Compiled], out: &mut Out) -> Option<()> {
        self.render(sel, out)
    }
}

impl<T: Render> Shape for Vec<T> {
    fn ty() -> TyTag {
        T::ty()
    }
    fn render_shape(&self, sel: &[Compiled], out: &mut Out) -> Option<()> {
        list(out, self, |v, out| v.render(sel, out))
    }
}

impl<T: Render> Shape for Option<T> {
    fn ty() -> TyTag {
        T::ty()
    }
    fn render_shape(&self, sel: &[Compiled], out: &mut Out) -> Option<()> {
        match self {
            Some(v) => v.render(sel, out),
            None => {
                out.extend_from_slice(b"null");
                Some(())
            }
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
        let budget = ctx
            .data::<RequestContext>()
            .ok()
            .map(|rc| rc.output.clone());
        let cap = budget.as_ref().map_or(usize::MAX, |b| b.left());
        let mut out = Out {
            buf: Vec::with_capacity(4096),
            cap,
        };
        let rendered = {
            let fctx = ctx.with_field(field);
            let this = fctx.field();
            compile(T::ty().0, &this).and_then(|sel| self.0.render_shape(&sel, &mut out))
        };
        if out.over() {
            let mut err = ServerError::new(
                format!(
                    "the response would be larger than {cap} bytes (EAGERQL_MAX_RESPONSE_BYTES); \
                     select less, or page with `first`"
                ),
                Some(field.pos),
            );
            err.extensions
                .get_or_insert_with(Default::default)
                .set("code", "LIMIT_EXCEEDED");
            return Err(ctx.set_error_path(err));
        }
        match rendered {
            // JSON text, spliced into the response by `json::write_value`.
            Some(()) => {
                if let Some(b) = &budget {
                    b.spend(out.buf.len());
                }
                Ok(Value::Binary(out.buf.into()))
            }
            None => {
                FALLBACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(field = %field.node.name.node, "fast output fell back");
                self.0.resolve(ctx, field).await
            }
        }
    }
}
