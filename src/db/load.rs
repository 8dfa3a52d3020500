//! The statements of an eager-loading plan.
//!
//! A plan [`Node`] becomes one `select`: the node's own table (alias `t0`) plus every joined
//! to-one edge as flattened columns (aliases `t1`, `t2`, ... in depth-first order). A
//! [`Batch`] becomes one statement keyed by ONE array parameter holding all parent ids, so its
//! text is the same for any number of parents. Per-parent `first` is a window function inside
//! that statement, never a query per parent.

use std::fmt::Write as _;

use super::Backend;
use super::columns::{Cols, Column};
use super::order_items::{self, OrderItemRow};
use super::orders::{self, OrderRow};
use super::products::{self, ProductRow};
use super::session::{Arg, DbRow, Session};
use super::users::{self, UserRow};
use crate::error::AppResult;
use crate::model::OrderStatus;
use crate::planner::{Batch, Entity, Node, ToMany, ToOne};

/// Which columns of a table's load list a node reads: bit `i` is `COLUMNS[i]`.
fn column_mask(node: &Node) -> u32 {
    let mut mask = 0;
    for (i, col) in columns(node.entity).iter().enumerate() {
        let wanted = match col.field() {
            None => true,
            Some(field) => node
                .scalars
                .binary_search_by(|s| s.as_str().cmp(field))
                .is_ok(),
        };
        if wanted {
            mask |= 1 << i;
        }
    }
    mask
}

/// One loaded row of any entity.
#[derive(Clone, Debug, PartialEq)]
pub enum EntityRow {
    /// A `users` row.
    User(UserRow),
    /// An `orders` row.
    Order(OrderRow),
    /// An `order_items` row.
    OrderItem(OrderItemRow),
    /// A `products` row.
    Product(ProductRow),
}

impl EntityRow {
    /// The row's primary key.
    pub fn id(&self) -> i64 {
        match self {
            EntityRow::User(r) => r.id,
            EntityRow::Order(r) => r.id,
            EntityRow::OrderItem(r) => r.id,
            EntityRow::Product(r) => r.id,
        }
    }
}

/// A row with the rows of its joined to-one edges, in the order of the node's joins.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The row itself.
    pub row: EntityRow,
    /// One per [`Node::joins`].
    pub joins: Vec<Loaded>,
}

fn table(entity: Entity) -> &'static str {
    match entity {
        Entity::User => "users",
        Entity::Order => "orders",
        Entity::OrderItem => "order_items",
        Entity::Product => "products",
    }
}

fn columns(entity: Entity) -> &'static [Column] {
    match entity {
        Entity::User => users::COLUMNS,
        Entity::Order => orders::COLUMNS,
        Entity::OrderItem => order_items::COLUMNS,
        Entity::Product => products::COLUMNS,
    }
}

/// The foreign key on the parent side of a to-one edge.
fn join_key(edge: ToOne) -> &'static str {
    match edge {
        ToOne::OrderUser => "user_id",
        ToOne::OrderItemOrder => "order_id",
        ToOne::OrderItemProduct => "product_id",
    }
}

/// `col` is one of the ids in the array parameter `$n`.
fn in_ids(backend: Backend, col: &str, n: usize) -> String {
    match backend {
        Backend::Postgres => format!("{col} = any(${n})"),
        // One JSON array parameter: the text stays the same for any number of keys and
        // SQLite's cap on bound parameters is never reached.
        Backend::Sqlite => format!("{col} in (select value from json_each(${n}))"),
    }
}

/// The select list and joins of a node, built depth-first.
struct Select {
    backend: Backend,
    cols: Vec<String>,
    /// The column mask of every node, depth-first (the order `decode` reads them).
    masks: Vec<u32>,
    joins: String,
    next_alias: usize,
}

impl Select {
    fn new(backend: Backend, node: &Node) -> Self {
        let mut s = Select {
            backend,
            cols: Vec::new(),
            masks: Vec::new(),
            joins: String::new(),
            next_alias: 1,
        };
        s.add(node, "t0");
        s
    }

    fn add(&mut self, node: &Node, alias: &str) {
        let mask = column_mask(node);
        self.masks.push(mask);
        for (i, col) in columns(node.entity).iter().enumerate() {
            if mask & (1 << i) != 0 {
                let expr = col.expr(self.backend, alias);
                self.cols.push(expr);
            }
        }
        for join in &node.joins {
            let child = format!("t{}", self.next_alias);
            self.next_alias += 1;
            // Foreign keys are NOT NULL, so an inner join never drops a parent row.
            let _ = write!(
                self.joins,
                " join {} {child} on {child}.id = {alias}.{}",
                table(join.node.entity),
                join_key(join.edge)
            );
            self.add(&join.node, &child);
        }
    }

    fn list(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.cols.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{c} as c{i}");
        }
        out
    }
}

/// Decodes a node's row and its joins from position `at` on; `masks` is
/// [`Select::masks`], consumed in the same depth-first order.
fn decode(
    node: &Node,
    r: &dyn DbRow,
    at: &mut usize,
    masks: &mut std::slice::Iter<'_, u32>,
) -> Result<Loaded, sqlx::Error> {
    let mask = masks.next().copied().unwrap_or(u32::MAX);
    let mut c = Cols::masked(r, mask, *at);
    let row = match node.entity {
        Entity::User => EntityRow::User(users::decode(&mut c)?),
        Entity::Order => EntityRow::Order(orders::decode(&mut c)?),
        Entity::OrderItem => EntityRow::OrderItem(order_items::decode(&mut c)?),
        Entity::Product => EntityRow::Product(products::decode(&mut c)?),
    };
    *at = c.position();
    let joins = node
        .joins
        .iter()
        .map(|j| decode(&j.node, r, at, masks))
        .collect::<Result<_, _>>()?;
    Ok(Loaded { row, joins })
}

/// Which rows a root field loads.
#[derive(Clone, Debug, PartialEq)]
pub enum RootQuery {
    /// A page ordered by id.
    Page {
        /// Page size.
        first: i64,
        /// Rows skipped.
        offset: i64,
    },
    /// One row by id.
    ById(i64),
    /// Rows by id, in id order (callers restore their own order).
    ByIds(Vec<i64>),
    /// A filtered page of orders.
    Orders(OrderFilter),
}

/// Filters of `Query.orders`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OrderFilter {
    /// Page size.
    pub first: i64,
    /// Rows skipped.
    pub offset: i64,
    /// Only this status.
    pub status: Option<OrderStatus>,
    /// Only this user's orders.
    pub user_id: Option<i64>,
    /// Only orders whose total is at least this many cents.
    pub min_amount_cents: Option<i64>,
}

fn root_name(entity: Entity, q: &RootQuery) -> &'static str {
    match (entity, q) {
        (Entity::User, RootQuery::Page { .. }) => "users.page",
        (Entity::User, RootQuery::ById(_)) => "users.by_id",
        (Entity::User, _) => "users.by_ids",
        (Entity::Order, RootQuery::Page { .. }) => "orders.page",
        (Entity::Order, RootQuery::ById(_)) => "orders.by_id",
        (Entity::Order, RootQuery::Orders(_)) => "orders.filter",
        (Entity::Order, _) => "orders.by_ids",
        (Entity::OrderItem, RootQuery::ById(_)) => "order_items.by_id",
        (Entity::OrderItem, _) => "order_items.by_ids",
        (Entity::Product, RootQuery::Page { .. }) => "products.page",
        (Entity::Product, RootQuery::ById(_)) => "products.by_id",
        (Entity::Product, _) => "products.by_ids",
    }
}

/// Runs the root statement of a plan: the node's rows with every joined edge.
pub async fn fetch_root(s: &Session, node: &Node, q: RootQuery) -> AppResult<Vec<Loaded>> {
    let backend = s.backend();
    let select = Select::new(backend, node);
    let mut sql = format!(
        "select {} from {} t0{}",
        select.list(),
        table(node.entity),
        select.joins
    );
    let mut args = Vec::new();
    let name = root_name(node.entity, &q);
    match q {
        RootQuery::Page { first, offset } => {
            sql.push_str(" order by t0.id limit $1 offset $2");
            args.extend([Arg::I64(first), Arg::I64(offset)]);
        }
        RootQuery::ById(id) => {
            sql.push_str(" where t0.id = $1");
            args.push(Arg::I64(id));
        }
        RootQuery::ByIds(ids) => {
            let _ = write!(sql, " where {} order by t0.id", in_ids(backend, "t0.id", 1));
            args.push(Arg::Ids(ids));
        }
        RootQuery::Orders(f) => {
            let mut conds = Vec::new();
            if let Some(status) = f.status {
                args.push(Arg::Text(status.as_db().to_owned()));
                conds.push(format!("t0.status = ${}", args.len()));
            }
            if let Some(user_id) = f.user_id {
                args.push(Arg::I64(user_id));
                conds.push(format!("t0.user_id = ${}", args.len()));
            }
            if let Some(cents) = f.min_amount_cents {
                args.push(Arg::I64(cents));
                let n = args.len();
                conds.push(match backend {
                    // Compare in the column's own type so that an index on it stays usable.
                    Backend::Postgres => format!("t0.total_amount >= ${n}::int8::numeric / 100"),
                    Backend::Sqlite => format!("t0.total_amount >= ${n}"),
                });
            }
            if !conds.is_empty() {
                let _ = write!(sql, " where {}", conds.join(" and "));
            }
            args.extend([Arg::I64(f.first), Arg::I64(f.offset)]);
            let _ = write!(
                sql,
                " order by t0.id limit ${} offset ${}",
                args.len() - 1,
                args.len()
            );
        }
    }
    s.fetch(name, sql, args, |r| {
        let mut at = 0;
        decode(node, r, &mut at, &mut select.masks.iter())
    })
    .await
}

/// Where a to-many edge's rows come from: the `from` clause (child table aliased `t0`) and
/// the column holding the parent's id.
fn batch_source(edge: ToMany) -> (&'static str, &'static str, &'static str) {
    match edge {
        ToMany::UserOrders => ("orders t0", "t0.user_id", "orders.by_user_ids"),
        ToMany::OrderItems => ("order_items t0", "t0.order_id", "order_items.by_order_ids"),
        ToMany::ProductOrderItems => (
            "order_items t0",
            "t0.product_id",
            "order_items.by_product_ids",
        ),
        ToMany::OrderProducts => (
            "order_products l join products t0 on t0.id = l.product_id",
            "l.order_id",
            "products.by_order_ids",
        ),
        ToMany::ProductOrders => (
            "order_products l join orders t0 on t0.id = l.order_id",
            "l.product_id",
            "orders.by_product_ids",
        ),
    }
}

/// Runs one batch: the children of every parent in `parent_ids`, as `(parent id, child)` in
/// parent, then child id order (sorted here, not by the database). `parent_ids` must not be
/// empty.
pub async fn fetch_batch(
    s: &Session,
    batch: &Batch,
    parent_ids: Vec<i64>,
) -> AppResult<Vec<(i64, Loaded)>> {
    let backend = s.backend();
    let (from, parent, name) = batch_source(batch.edge);
    let select = Select::new(backend, &batch.node);
    let mut args = vec![Arg::Ids(parent_ids)];
    let mut filter = in_ids(backend, parent, 1);
    if let Some(status) = batch.args.status {
        args.push(Arg::Text(status.as_db().to_owned()));
        let _ = write!(filter, " and t0.status = ${}", args.len());
    }
    let sql = match batch.args.first {
        // No ORDER BY: the caller sorts each parent's children by id, which costs the server
        // far less than a sort costs the database (the scarcer resource under load).
        None => format!(
            "select {parent} as parent_id, {} from {from}{} where {filter}",
            select.list(),
            select.joins
        ),
        Some(first) => {
            args.push(Arg::I64(first));
            // Per-parent limit inside the one statement: number each parent's children by id
            // and keep the first N.
            format!(
                "select * from (select {parent} as parent_id, {}, row_number() over \
                 (partition by {parent} order by t0.id) as rn from {from}{} where {filter}) s \
                 where s.rn <= ${}",
                select.list(),
                select.joins,
                args.len()
            )
        }
    };
    let mut rows = s
        .fetch(name, sql, args, |r| {
            let mut at = 1;
            Ok((
                r.i64(0)?,
                decode(&batch.node, r, &mut at, &mut select.masks.iter())?,
            ))
        })
        .await?;
    rows.sort_unstable_by_key(|(parent, child)| (*parent, child.row.id()));
    Ok(rows)
}

/// Runs an aggregate statement and joins the rows it names into the same statement: `agg_sql`
/// (its values written in as literals: no parameters) yields a key column `key` (the id of
/// `node`'s rows) and the integer columns `extras`; each result is `(extras, the node's row with
/// its joins)`, ordered by `order_by` (over `agg.*`). A to-one edge from an aggregate row
/// (`CustomerRevenue.user`) so costs no statement.
pub async fn fetch_aggregate(
    s: &Session,
    name: &'static str,
    agg_sql: &str,
    key: &str,
    extras: &[&str],
    order_by: &str,
    node: &Node,
) -> AppResult<Vec<(Vec<i64>, Loaded)>> {
    let select = Select::new(s.backend(), node);
    let extra_cols: Vec<String> = extras.iter().map(|c| format!("agg.{c}")).collect();
    let sql = format!(
        "with agg as ({agg_sql}) select {}, {} from agg join {} t0 on t0.id = agg.{key}{} order by {order_by}",
        extra_cols.join(", "),
        select.list(),
        table(node.entity),
        select.joins
    );
    let n = extras.len();
    s.fetch_unprepared(name, sql, |r| {
        let values = (0..n).map(|i| r.i64(i)).collect::<Result<Vec<_>, _>>()?;
        let mut at = n;
        Ok((values, decode(node, r, &mut at, &mut select.masks.iter())?))
    })
    .await
}
