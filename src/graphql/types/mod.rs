//! The GraphQL object types. Each wraps its row and the relations its plan preloaded, behind
//! an `Arc`, so a value shared by many parents (a product on many items) is cheap to hand out.
//! Field resolvers only read: relation fields return what was preloaded, or, where nothing
//! was, ask the request's [`Lazy`] loader (or fail in strict mode). The loader is handed in
//! through the request, so these types never call up into the plan executor.

pub mod order;
pub mod order_item;
pub mod product;
pub mod user;

pub use order::Order;
pub use order_item::OrderItem;
pub use product::Product;
pub use user::User;

use std::sync::Arc;

use async_graphql::Context;
use futures_util::future::BoxFuture;

use super::RequestContext;
use super::lookahead::selection;
use crate::error::{AppError, AppResult};
use crate::planner::{EdgeArgs, Entity, Field, ToMany};

/// The preloaded children of one to-many edge, one list per distinct argument set.
#[derive(Debug)]
pub struct Edges<T>(Vec<(EdgeArgs, Vec<T>)>);

impl<T> Default for Edges<T> {
    fn default() -> Self {
        Edges(Vec::new())
    }
}

impl<T: Clone> Edges<T> {
    /// The children loaded for `args`, if the plan loaded them.
    pub fn get(&self, args: &EdgeArgs) -> Option<Vec<T>> {
        self.0
            .iter()
            .find(|(a, _)| a == args)
            .map(|(_, v)| v.clone())
    }

    /// The children loaded for `args`, borrowed.
    pub fn get_ref(&self, args: &EdgeArgs) -> Option<&[T]> {
        self.0
            .iter()
            .find(|(a, _)| a == args)
            .map(|(_, v)| v.as_slice())
    }

    /// Records the children loaded for `args`.
    pub fn insert(&mut self, args: EdgeArgs, children: Vec<T>) {
        self.0.push((args, children));
    }
}

/// An assembled object of any type.
#[derive(Clone, Debug)]
pub enum Obj {
    /// A user.
    User(User),
    /// An order.
    Order(Order),
    /// An order line.
    OrderItem(OrderItem),
    /// A product.
    Product(Product),
}

/// Keeps the users of a list of objects.
pub fn into_users(objs: Vec<Obj>) -> Vec<User> {
    objs.into_iter()
        .filter_map(|o| match o {
            Obj::User(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// Keeps the orders of a list of objects.
pub fn into_orders(objs: Vec<Obj>) -> Vec<Order> {
    objs.into_iter()
        .filter_map(|o| match o {
            Obj::Order(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// Keeps the order lines of a list of objects.
pub fn into_order_items(objs: Vec<Obj>) -> Vec<OrderItem> {
    objs.into_iter()
        .filter_map(|o| match o {
            Obj::OrderItem(v) => Some(v),
            _ => None,
        })
        .collect()
}

/// Keeps the products of a list of objects.
pub fn into_products(objs: Vec<Obj>) -> Vec<Product> {
    objs.into_iter()
        .filter_map(|o| match o {
            Obj::Product(v) => Some(v),
            _ => None,
        })
        .collect()
}

fn first_of<T>(objs: Vec<T>) -> async_graphql::Result<T> {
    objs.into_iter()
        .next()
        .ok_or_else(|| AppError::NotFound("the related object does not exist".into()).into())
}

/// The single user of a to-one load.
pub fn into_user(objs: Vec<Obj>) -> async_graphql::Result<User> {
    first_of(into_users(objs))
}
/// The single order of a to-one load.
pub fn into_order(objs: Vec<Obj>) -> async_graphql::Result<Order> {
    first_of(into_orders(objs))
}
/// The single product of a to-one load.
pub fn into_product(objs: Vec<Obj>) -> async_graphql::Result<Product> {
    first_of(into_products(objs))
}

/// Loads relationships that no plan loaded, in non-strict mode (the plan executor implements
/// it, with a per-request DataLoader, so an unplanned edge costs one statement per batch of
/// parents, not one per parent).
pub trait Lazy: Send + Sync {
    /// The children of `parent` over a to-many edge, with the children's own selection.
    fn many(
        &self,
        edge: ToMany,
        args: EdgeArgs,
        parent: i64,
        selection: Vec<Field>,
    ) -> BoxFuture<'_, AppResult<Vec<Obj>>>;

    /// The target of a to-one edge, with its selection.
    fn one(
        &self,
        entity: Entity,
        id: i64,
        selection: Vec<Field>,
    ) -> BoxFuture<'_, AppResult<Vec<Obj>>>;
}

/// The request's lazy loader, as request data.
pub type LazyLoader = Arc<dyn Lazy>;

fn lazy<'a>(ctx: &Context<'a>, path: &str) -> async_graphql::Result<&'a LazyLoader> {
    let rc = ctx.data::<RequestContext>()?;
    if rc.strict {
        return Err(AppError::Unplanned(format!(
            "{path} was not loaded by the plan (strict mode)"
        ))
        .into());
    }
    ctx.data::<LazyLoader>()
}

/// A to-many edge that no plan preloaded: an error in strict mode (the lesson's
/// `lazy="raise"`), otherwise loaded through the request's [`Lazy`] loader.
pub async fn unplanned(
    ctx: &Context<'_>,
    edge: ToMany,
    args: EdgeArgs,
    parent_id: i64,
) -> async_graphql::Result<Vec<Obj>> {
    let loader = lazy(ctx, edge.path())?;
    let fields = selection(&ctx.field())?;
    Ok(loader.many(edge, args, parent_id, fields).await?)
}

/// A to-one edge that no plan joined; see [`unplanned`].
pub async fn unplanned_one(
    ctx: &Context<'_>,
    entity: Entity,
    id: i64,
    path: &str,
) -> async_graphql::Result<Vec<Obj>> {
    let loader = lazy(ctx, path)?;
    let fields = selection(&ctx.field())?;
    Ok(loader.one(entity, id, fields).await?)
}
