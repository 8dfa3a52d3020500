//! The `Query` root. Every field plans its whole sub-selection before sending any SQL.

use std::sync::Arc;

use super::scalars::Decimal;
use async_graphql::{Context, ID, Object, Result};

use super::analytics::Analytics;
use super::args::page_args;
use super::preload;
use super::render::{Rendered, RootAggregate};
use super::types::{Connection, Where, first, typed};
use super::types::{Order, OrderBy, OrderType, Product, ProductType, Typed, User, UserType};
use super::{RequestContext, parse_id};
use crate::db::Reserved;
use crate::db::load::{self, AggRow, RootQuery};
use crate::db::money::to_cents;
use crate::entities::Entity;
use crate::error::AppError;
use crate::model::OrderStatus;
use crate::planner::filter::Lit;
use crate::planner::{EdgeArgs, Filter, Page, SortKeys, check_page};

/// Read access to users, orders and products.
pub struct Query;

/// A root list's `orderBy`, read as the planner reads an edge's.
fn sort_keys<T: Typed>(
    entity: Entity,
    order_by: Option<Vec<OrderBy<T>>>,
    what: &str,
) -> Result<SortKeys, AppError> {
    let values = order_by.unwrap_or_default();
    SortKeys::parse(entity, values.iter().map(|v| v.0.as_str()), what).map_err(AppError::from)
}

/// A root field's `where`, read by the planner's one reader (an empty filter: none).
fn filter_of<T: Typed>(w: Option<Where<T>>, what: &str) -> Result<Option<Arc<Filter>>, AppError> {
    let Some(w) = w else { return Ok(None) };
    let f = Filter::parse(T::ENTITY, &w.0, &format!("{what}.where"))?;
    Ok((!f.is_true()).then(|| Arc::new(f)))
}

/// A root connection's page arguments, checked as an edge connection's are.
struct PageArgs<T> {
    first: Option<i32>,
    after: Option<String>,
    last: Option<i32>,
    before: Option<String>,
    order_by: Option<Vec<OrderBy<T>>>,
}

impl<T: Typed> PageArgs<T> {
    fn read(self, ctx: &Context<'_>, what: &str) -> Result<EdgeArgs, AppError> {
        let entity = T::ENTITY;
        let order = sort_keys(entity, self.order_by, what)?;
        let page = Page::read(
            entity,
            order,
            self.first.map(i64::from),
            self.last.map(i64::from),
            self.after.as_deref(),
            self.before.as_deref(),
            what,
        )?;
        let args = EdgeArgs {
            order,
            page: Some(page),
            ..EdgeArgs::default()
        };
        check_page(&args, what, RequestContext::of(ctx)?.limits)?;
        Ok(args)
    }
}

/// Loads a root connection.
async fn connection<T: Typed>(
    ctx: &Context<'_>,
    args: EdgeArgs,
    filter: Option<Arc<Filter>>,
) -> Result<Connection<T>, AppError> {
    let (objs, total, view) =
        preload::load_connection(ctx, T::ENTITY, args.clone(), filter).await?;
    Ok(Connection {
        objs,
        args,
        total,
        view: Some(view),
        marker: std::marker::PhantomData,
    })
}

/// A root aggregate: what the selection asks for, in one statement of the request's session.
async fn root_aggregate<T: Typed>(
    ctx: &Context<'_>,
    entity: Entity,
    filter: Option<Arc<Filter>>,
) -> Result<RootAggregate<T>, AppError> {
    let rc = RequestContext::of(ctx)?;
    let (view, what) = RootAggregate::<T>::view(ctx)?;
    let reserved = rc.session.log().reserve_plan(
        preload::key(ctx),
        1,
        || serde_json::json!({ "aggregate": entity.desc().name }),
    )?;
    let row = match reserved {
        Reserved::Run => load::fetch_total(&rc.session, entity, filter.as_deref(), &what).await?,
        Reserved::PlanOnly => AggRow::empty(what.len()),
    };
    Ok(RootAggregate {
        view,
        what,
        row,
        marker: std::marker::PhantomData,
    })
}

/// The orders' root filters (`status`, `userId`, `minAmount`) AND-ed with their `where`.
fn order_filters(
    status: Option<OrderStatus>,
    user_id: Option<ID>,
    min_amount: Option<Decimal>,
    filter: Option<Where<OrderType>>,
    what: &str,
) -> Result<Option<Arc<Filter>>, AppError> {
    let mut given = Vec::new();
    if let Some(status) = status {
        given.push(("status", Lit::Status(status)));
    }
    if let Some(id) = user_id {
        given.push((
            "userId",
            Lit::Int(parse_id(&id, &format!("{what}.userId"))?),
        ));
    }
    if let Some(amount) = min_amount {
        given.push((
            "minAmount",
            Lit::Cents(cents(amount, &format!("{what}.minAmount"))?),
        ));
    }
    Ok(Filter::with_root_filters(
        Entity::Order,
        given,
        filter_of(filter, what)?,
    )?)
}

/// A money argument as cents (at most 2 decimals).
fn cents(d: Decimal, what: &str) -> Result<i64, AppError> {
    to_cents(d.0).ok_or_else(|| {
        AppError::bad_input(format!(
            "{what} must be {}, got {}",
            crate::money::cents_requirement(d.0),
            d.0
        ))
    })
}

/// Read access to users, orders and products. Every root field plans its whole
/// sub-selection before any SQL runs: one statement for the root rows (to-one relations
/// joined in) plus one per selected to-many relation. Every load shows only the rows the
/// viewer may see: customers their own account and orders, anonymous viewers the catalogue.
#[Object]
impl Query {
    /// The signed-in account, or null when the request is anonymous.
    async fn me(&self, ctx: &Context<'_>) -> Result<Rendered<Option<User>>> {
        let Some(id) = RequestContext::of(ctx)?.viewer.user_id() else {
            return Ok(Rendered(None, None));
        };
        let (objs, view) = preload::load_root(ctx, Entity::User, RootQuery::ById(id)).await?;
        Ok(Rendered::planned(first(objs), &view))
    }

    /// Users ordered by id (administrators only).
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = 20,
            desc = "Page size (at most the configured maximum, 1000 by default)."
        )]
        first: i32,
        #[graphql(default = 0, desc = "Users skipped before the page starts.")] offset: i32,
        #[graphql(
            desc = "The order of the list: up to 3 keys, the id always breaking the \
                          remaining ties (default: by id). Text sorts by code point."
        )]
        order_by: Option<Vec<OrderBy<UserType>>>,
        #[graphql(name = "where", desc = "Only the users this filter keeps.")] filter: Option<
            Where<UserType>,
        >,
    ) -> Result<Rendered<Vec<User>>> {
        RequestContext::of(ctx)?.require_admin("users")?;
        let (first, offset) = page_args(ctx, "users", first, offset)?;
        let order = sort_keys(Entity::User, order_by, "users")?;
        let q = RootQuery::Page {
            first,
            offset,
            order,
            filter: filter_of(filter, "users")?,
        };
        let (objs, view) = preload::load_root(ctx, Entity::User, q).await?;
        Ok(Rendered::planned(typed(objs), &view))
    }

    /// One user by id, or null if there is none (or the viewer may not see it: a customer
    /// sees only their own account).
    async fn user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] id: ID,
    ) -> Result<Rendered<Option<User>>> {
        RequestContext::of(ctx)?.require_user()?;
        let id = parse_id(&id, "user")?;
        let (objs, view) = preload::load_root(ctx, Entity::User, RootQuery::ById(id)).await?;
        Ok(Rendered::planned(first(objs), &view))
    }

    /// Orders ordered by id, optionally filtered (a customer's own only).
    #[expect(
        clippy::too_many_arguments,
        reason = "one parameter per GraphQL argument"
    )]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = 20,
            desc = "Page size (at most the configured maximum, 1000 by default)."
        )]
        first: i32,
        #[graphql(default = 0, desc = "Orders skipped before the page starts.")] offset: i32,
        #[graphql(desc = "Only orders with this status.")] status: Option<OrderStatus>,
        #[graphql(desc = "Only this user's orders.")] user_id: Option<ID>,
        #[graphql(desc = "Only orders whose total is at least this amount.")] min_amount: Option<
            Decimal,
        >,
        #[graphql(
            desc = "The order of the list: up to 3 keys, the id always breaking the \
                          remaining ties (default: by id). Text sorts by code point."
        )]
        order_by: Option<Vec<OrderBy<OrderType>>>,
        #[graphql(name = "where", desc = "Only the orders this filter keeps.")] filter: Option<
            Where<OrderType>,
        >,
    ) -> Result<Rendered<Vec<Order>>> {
        RequestContext::of(ctx)?.require_user()?;
        let (first, offset) = page_args(ctx, "orders", first, offset)?;
        let filter = order_filters(status, user_id, min_amount, filter, "orders")?;
        let q = RootQuery::Page {
            first,
            offset,
            order: sort_keys(Entity::Order, order_by, "orders")?,
            filter,
        };
        let (objs, view) = preload::load_root(ctx, Entity::Order, q).await?;
        Ok(Rendered::planned(typed(objs), &view))
    }

    /// One order by id, or null if there is none (or it is another customer's).
    async fn order(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The order's id.")] id: ID,
    ) -> Result<Rendered<Option<Order>>> {
        RequestContext::of(ctx)?.require_user()?;
        let id = parse_id(&id, "order")?;
        let (objs, view) = preload::load_root(ctx, Entity::Order, RootQuery::ById(id)).await?;
        Ok(Rendered::planned(first(objs), &view))
    }

    /// Products ordered by id.
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = 20,
            desc = "Page size (at most the configured maximum, 1000 by default)."
        )]
        first: i32,
        #[graphql(default = 0, desc = "Products skipped before the page starts.")] offset: i32,
        #[graphql(
            desc = "The order of the list: up to 3 keys, the id always breaking the \
                          remaining ties (default: by id). Text sorts by code point."
        )]
        order_by: Option<Vec<OrderBy<ProductType>>>,
        #[graphql(name = "where", desc = "Only the products this filter keeps.")] filter: Option<
            Where<ProductType>,
        >,
    ) -> Result<Rendered<Vec<Product>>> {
        let (first, offset) = page_args(ctx, "products", first, offset)?;
        let order = sort_keys(Entity::Product, order_by, "products")?;
        let q = RootQuery::Page {
            first,
            offset,
            order,
            filter: filter_of(filter, "products")?,
        };
        let (objs, view) = preload::load_root(ctx, Entity::Product, q).await?;
        Ok(Rendered::planned(typed(objs), &view))
    }

    /// Users as a cursor connection (administrators only): keyset pages in `orderBy` order.
    #[expect(
        clippy::too_many_arguments,
        reason = "one parameter per GraphQL argument"
    )]
    async fn users_connection(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The first this many users (default 20 when `last` is not given).")]
        first: Option<i32>,
        #[graphql(desc = "Only users after this cursor.")] after: Option<String>,
        #[graphql(desc = "The last this many users; not together with `first`.")] last: Option<i32>,
        #[graphql(desc = "Only users before this cursor.")] before: Option<String>,
        #[graphql(
            desc = "The order of the list: up to 3 keys, the id always breaking the \
                          remaining ties (default: by id). Text sorts by code point."
        )]
        order_by: Option<Vec<OrderBy<UserType>>>,
        #[graphql(name = "where", desc = "Only the users this filter keeps.")] filter: Option<
            Where<UserType>,
        >,
    ) -> Result<Connection<UserType>> {
        RequestContext::of(ctx)?.require_admin("usersConnection")?;
        let page = PageArgs {
            first,
            after,
            last,
            before,
            order_by,
        };
        let args = page.read(ctx, "usersConnection")?;
        let filter = filter_of(filter, "usersConnection")?;
        Ok(connection(ctx, args, filter).await?)
    }

    /// Orders as a cursor connection, with the filters of `orders` (a customer's own only).
    #[expect(
        clippy::too_many_arguments,
        reason = "one parameter per GraphQL argument"
    )]
    async fn orders_connection(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The first this many orders (default 20 when `last` is not given).")]
        first: Option<i32>,
        #[graphql(desc = "Only orders after this cursor.")] after: Option<String>,
        #[graphql(desc = "The last this many orders; not together with `first`.")] last: Option<
            i32,
        >,
        #[graphql(desc = "Only orders before this cursor.")] before: Option<String>,
        #[graphql(
            desc = "The order of the list: up to 3 keys, the id always breaking the \
                          remaining ties (default: by id). Text sorts by code point."
        )]
        order_by: Option<Vec<OrderBy<OrderType>>>,
        #[graphql(desc = "Only orders with this status.")] status: Option<OrderStatus>,
        #[graphql(desc = "Only this user's orders.")] user_id: Option<ID>,
        #[graphql(desc = "Only orders whose total is at least this amount.")] min_amount: Option<
            Decimal,
        >,
        #[graphql(name = "where", desc = "Only the orders this filter keeps.")] filter: Option<
            Where<OrderType>,
        >,
    ) -> Result<Connection<OrderType>> {
        RequestContext::of(ctx)?.require_user()?;
        let page = PageArgs {
            first,
            after,
            last,
            before,
            order_by,
        };
        let args = page.read(ctx, "ordersConnection")?;
        let filter = order_filters(status, user_id, min_amount, filter, "ordersConnection")?;
        Ok(connection(ctx, args, filter).await?)
    }

    /// Products as a cursor connection: keyset pages in `orderBy` order.
    #[expect(
        clippy::too_many_arguments,
        reason = "one parameter per GraphQL argument"
    )]
    async fn products_connection(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The first this many products (default 20 when `last` is not given).")]
        first: Option<i32>,
        #[graphql(desc = "Only products after this cursor.")] after: Option<String>,
        #[graphql(desc = "The last this many products; not together with `first`.")] last: Option<
            i32,
        >,
        #[graphql(desc = "Only products before this cursor.")] before: Option<String>,
        #[graphql(
            desc = "The order of the list: up to 3 keys, the id always breaking the \
                          remaining ties (default: by id). Text sorts by code point."
        )]
        order_by: Option<Vec<OrderBy<ProductType>>>,
        #[graphql(name = "where", desc = "Only the products this filter keeps.")] filter: Option<
            Where<ProductType>,
        >,
    ) -> Result<Connection<ProductType>> {
        let page = PageArgs {
            first,
            after,
            last,
            before,
            order_by,
        };
        let args = page.read(ctx, "productsConnection")?;
        let filter = filter_of(filter, "productsConnection")?;
        Ok(connection(ctx, args, filter).await?)
    }

    /// Aggregates over all users (administrators only), in one statement.
    async fn users_aggregate(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "where", desc = "Only the users this filter keeps.")] filter: Option<
            Where<UserType>,
        >,
    ) -> Result<RootAggregate<UserType>> {
        RequestContext::of(ctx)?.require_admin("usersAggregate")?;
        let filter = filter_of(filter, "usersAggregate")?;
        Ok(root_aggregate(ctx, Entity::User, filter).await?)
    }

    /// Aggregates over the orders the viewer may see (a customer's own), with the filters of
    /// `orders`, in one statement.
    async fn orders_aggregate(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only orders with this status.")] status: Option<OrderStatus>,
        #[graphql(desc = "Only this user's orders.")] user_id: Option<ID>,
        #[graphql(desc = "Only orders whose total is at least this amount.")] min_amount: Option<
            Decimal,
        >,
        #[graphql(name = "where", desc = "Only the orders this filter keeps.")] filter: Option<
            Where<OrderType>,
        >,
    ) -> Result<RootAggregate<OrderType>> {
        RequestContext::of(ctx)?.require_user()?;
        let filter = order_filters(status, user_id, min_amount, filter, "ordersAggregate")?;
        Ok(root_aggregate(ctx, Entity::Order, filter).await?)
    }

    /// Aggregates over all products, in one statement.
    async fn products_aggregate(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "where", desc = "Only the products this filter keeps.")] filter: Option<
            Where<ProductType>,
        >,
    ) -> Result<RootAggregate<ProductType>> {
        let filter = filter_of(filter, "productsAggregate")?;
        Ok(root_aggregate(ctx, Entity::Product, filter).await?)
    }

    /// Revenue reports computed by aggregate SQL in the database (administrators only).
    async fn analytics(&self, ctx: &Context<'_>) -> Result<Analytics> {
        RequestContext::of(ctx)?.require_admin("analytics")?;
        Ok(Analytics)
    }

    /// One product by id, or null if there is none.
    async fn product(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The product's id.")] id: ID,
    ) -> Result<Rendered<Option<Product>>> {
        let id = parse_id(&id, "product")?;
        let (objs, view) = preload::load_root(ctx, Entity::Product, RootQuery::ById(id)).await?;
        Ok(Rendered::planned(first(objs), &view))
    }
}
