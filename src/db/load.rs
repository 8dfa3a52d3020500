//! The statements of an eager-loading plan.
//!
//! A plan [`Node`] becomes one `select`: the node's own table (alias `t0`) plus every joined
//! to-one edge as flattened columns (aliases `t1`, `t2`, ... in depth-first order). A
//! [`Batch`] becomes one statement keyed by ONE array parameter holding all parent ids, so its
//! text is the same for any number of parents. Per-parent `first` is a window function inside
//! that statement, never a query per parent.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use chrono::{DateTime, Utc};

use super::Backend;
use super::columns::{decode_row, expr};
use super::money::from_cents;
use super::session::{Arg, DbRow, Session};
use crate::documents::cache::Bounded;
use crate::entities::{AggFunc, Column, Entity, Kind, Link, Rel, Row, Val, Visibility};
use crate::error::AppResult;
use crate::model::Viewer;
use crate::planner::filter::{Filter, Lit, Op};
use crate::planner::{AggBatch, Batch, Cursor, EdgeArgs, Node, Page, SortKeys};

/// Which columns of the entity's description a node reads: bit `i` is column `i`. Keys are
/// always read; every other column only when its field is selected.
fn column_mask(node: &Node) -> u32 {
    let mut mask = 0;
    for (i, col) in node.entity.desc().columns.iter().enumerate() {
        let wanted = col.always_read()
            || col.field.is_some_and(|field| {
                node.scalars
                    .binary_search_by(|s| s.as_str().cmp(field))
                    .is_ok()
            });
        if wanted {
            mask |= 1 << i;
        }
    }
    mask
}

/// A row with the rows of its joined to-one edges, in the order of the node's joins.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    /// The row itself.
    pub row: Row,
    /// One per [`Node::joins`].
    pub joins: Vec<Loaded>,
}

fn table(entity: Entity) -> &'static str {
    entity.desc().table
}

/// The foreign key on the parent side of a to-one edge.
fn join_key(edge: Rel) -> &'static str {
    match edge.desc().link {
        Link::ForeignKey(key) => key,
        // The planner joins only to-one edges.
        _ => "id",
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

/// A statement's parameters, and the viewer whose rows it may read: every table a load reads
/// is restricted by [`Params::visible`], so no path (root, join, batch, report row) can skip
/// the rule. The viewer's id is one parameter, bound once.
struct Params {
    args: Vec<Arg>,
    viewer: Viewer,
    viewer_at: Option<usize>,
    /// Table aliases taken by filter subqueries (`f1`, `f2`, ...).
    aliases: usize,
    /// Values are written into the text (unprepared statements) instead of bound.
    literal: bool,
}

impl Params {
    fn new(viewer: Viewer) -> Self {
        Params {
            args: Vec::new(),
            viewer,
            viewer_at: None,
            aliases: 0,
            literal: false,
        }
    }

    /// Binds `arg`; gives its `$n`.
    fn push(&mut self, arg: Arg) -> usize {
        self.args.push(arg);
        self.args.len()
    }

    /// The viewer's user id as SQL: a parameter, or a literal in an unprepared statement.
    fn viewer_id(&mut self, id: i64) -> String {
        if self.literal {
            return id.to_string();
        }
        let n = match self.viewer_at {
            Some(n) => n,
            None => {
                let n = self.push(Arg::I64(id));
                self.viewer_at = Some(n);
                n
            }
        };
        format!("${n}")
    }

    /// The predicate restricting `entity`'s rows aliased `alias` to those the viewer may see
    /// (the entity's [`Visibility`]); `None`: every row.
    fn visible(&mut self, entity: Entity, alias: &str) -> Option<String> {
        if self.viewer.is_admin() {
            return None;
        }
        match entity.desc().visibility {
            Visibility::Public => None,
            Visibility::Owner(col) => Some(match self.viewer.user_id() {
                Some(id) => format!("{alias}.{col} = {}", self.viewer_id(id)),
                None => "1 = 0".to_owned(),
            }),
            Visibility::Through { key, parent } => {
                let via = format!("v{alias}");
                let inner = self.visible(parent, &via)?;
                if inner == "1 = 0" {
                    return Some(inner);
                }
                Some(format!(
                    "exists (select 1 from {} {via} where {via}.id = {alias}.{key} and {inner}{EXISTS_END})",
                    table(parent)
                ))
            }
        }
    }
}

/// The end of every `exists` subquery. `limit 1` changes nothing of its meaning, and
/// PostgreSQL plans it as before (a semi-join), but it keeps SQLite 3.51 from turning the
/// subquery into a join with an early exit, whose `OFFSET` skips count the subquery's matching
/// rows instead of the outer rows (`users(offset: 1, where: { orders: { some: {} } })` gave
/// the first page again): the bundled SQLite's `OffsetLimit` jumps to the inner loop's `Next`.
const EXISTS_END: &str = " limit 1";

/// The select list and joins of a node, built depth-first.
struct Select {
    backend: Backend,
    /// The select list: `expr as c0, expr as c1, ...`.
    list: String,
    /// Columns in `list`.
    cols: usize,
    /// The column mask of every node, depth-first (the order `decode` reads them).
    masks: Vec<u32>,
    joins: String,
    next_alias: usize,
    /// How the to-one joins are written.
    form: Joins,
}

/// How a statement's to-one edges are joined.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Joins {
    /// Plain joins: the planner chooses how.
    Planned,
    /// PostgreSQL: each joined row looked up by its key, through a LATERAL subquery the
    /// planner may not flatten (`offset 0`), so a nested loop over the target's primary key.
    /// For the children of one parent: under the generic plan of a prepared statement the
    /// planner cannot know the batch is that small, and a plain join there hashes the whole
    /// target table (every product) on each run to join a handful of rows.
    Lookup,
}

/// How many parents a batch statement is for, as the operation's shape fixes it, never the
/// rows it meets: the same operation writes the same texts whatever the data, so the
/// subscribers of a live query still share one statement per level.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Parents {
    /// At most one: the children of a row read by its id (or of a row joined to it).
    One,
    /// Any number.
    Many,
}

/// Texts already written, by the shape that fixes them (a key of small numbers, compared on
/// a hit: the bounded map's key is its hash).
struct ByShape<T> {
    cache: Bounded<(Arc<[u32]>, Arc<T>), u64>,
    hasher: foldhash::quality::RandomState,
}

impl<T> ByShape<T> {
    /// At most `entries` texts of at most `bytes` in all.
    fn new(entries: usize, bytes: usize) -> Self {
        ByShape {
            cache: Bounded::new(entries, bytes),
            hasher: Default::default(),
        }
    }

    fn hash(&self, key: &[u32]) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    /// The text kept for `key`.
    fn get(&self, key: &[u32]) -> Option<Arc<T>> {
        let (kept, value) = self.cache.get(&self.hash(key))?;
        (*kept == *key).then_some(value)
    }

    /// Keeps `value` for `key`; `bytes`: its text's length.
    fn keep(&self, key: Vec<u32>, value: Arc<T>, bytes: usize) {
        let hash = self.hash(&key);
        let weight = bytes + 4 * key.len();
        self.cache.insert(hash, (key.into(), value), weight);
    }
}

/// A node's select list and joins, kept by shape (see [`select`]).
struct Shaped {
    select: Select,
    /// Whether the text names the viewer's id (always `$1`: the select is written first).
    viewer: bool,
}

/// Select lists and joins already written: at most 4,096 of at most 4 MiB in all.
static SHAPED: LazyLock<ByShape<Shaped>> = LazyLock::new(|| ByShape::new(4096, 4 << 20));

/// The shape of `node`'s select, depth-first: entity, column mask, and each join's edge and
/// shape. With the backend and what the viewer is, it fixes the text [`Select`] writes.
fn shape(node: &Node, out: &mut Vec<u32>) {
    out.push(node.entity as u32);
    out.push(column_mask(node));
    out.push(node.joins.len() as u32);
    for join in &node.joins {
        out.push(join.edge.from as u32);
        out.push(u32::from(join.edge.index));
        shape(&join.node, out);
    }
}

/// What fixes the text of `node`'s select for `viewer`: the backend, what the viewer is
/// (an administrator, a user, nobody) and the node's [`shape`].
fn select_key(backend: Backend, viewer: Viewer, node: &Node) -> Vec<u32> {
    let who = match viewer {
        _ if viewer.is_admin() => 0,
        Viewer::User { .. } => 1,
        Viewer::Anonymous => 2,
    };
    let mut key = Vec::with_capacity(12 + 5 * node.joins.len());
    key.extend([backend as u32, who]);
    shape(node, &mut key);
    key
}

/// A whole statement's text, kept by what fixes it (see [`Statement`]).
struct Kept {
    text: String,
    shaped: Arc<Shaped>,
    /// The viewer's id's parameter number, if the text names it.
    viewer_at: Option<usize>,
    /// The kinds of the statement's own values (every parameter but the viewer's), in order.
    own: Vec<std::mem::Discriminant<Arg>>,
}

/// Statements already written: at most 4,096 of at most 8 MiB in all.
static KEPT: LazyLock<ByShape<Kept>> = LazyLock::new(|| ByShape::new(4096, 8 << 20));

/// A statement ready to run: its text, its parameters and the select its rows decode by.
struct Statement {
    text: String,
    args: Vec<Arg>,
    shaped: Arc<Shaped>,
    /// The viewer's id's parameter number, if the text names it.
    viewer_at: Option<usize>,
}

/// The first entry of a [`Statement`]'s key: which statement it is.
#[derive(Copy, Clone)]
enum Which {
    RootById = 1,
    Batch = 2,
}

impl Statement {
    /// The statement whose text `key` fixes, with its own values `own` (every parameter but
    /// the viewer's id, in the order the statement binds them), if one was written before:
    /// its text is reused and only the values are bound. `None`: write it (then [`Self::keep`]).
    fn kept(key: &[u32], viewer: Viewer, own: &mut Vec<Arg>) -> Option<Statement> {
        let kept = KEPT.get(key)?;
        let viewer_id = match kept.viewer_at {
            Some(_) => Some(viewer.user_id()?),
            None => None,
        };
        // A kept text binds values of the same kinds in the same order; anything else is
        // written afresh rather than bound wrongly.
        let same = kept.own.len() == own.len()
            && kept
                .own
                .iter()
                .zip(own.iter())
                .all(|(k, v)| *k == std::mem::discriminant(v));
        if !same {
            debug_assert!(same, "a kept statement's values differ in kind");
            return None;
        }
        let mut args = std::mem::take(own);
        if let (Some(n), Some(id)) = (kept.viewer_at, viewer_id) {
            args.insert(n - 1, Arg::I64(id));
        }
        Some(Statement {
            text: kept.text.clone(),
            args,
            shaped: kept.shaped.clone(),
            viewer_at: kept.viewer_at,
        })
    }

    /// Keeps the text of a statement just written, under `key`.
    fn keep(&self, key: Vec<u32>) {
        let own = self
            .args
            .iter()
            .enumerate()
            .filter(|(i, _)| self.viewer_at != Some(i + 1))
            .map(|(_, a)| std::mem::discriminant(a))
            .collect();
        let kept = Kept {
            text: self.text.clone(),
            shaped: self.shaped.clone(),
            viewer_at: self.viewer_at,
            own,
        };
        KEPT.keep(key, Arc::new(kept), self.text.len());
    }
}

/// The select list and joins of `node`, the first text of a statement with parameters `p`
/// (none bound yet): written once per shape and kept, since a request's statements have the
/// same shapes as the last one's far more often than not. A statement whose values are
/// written into its text (`p.literal`) is written each time.
fn select(backend: Backend, node: &Node, p: &mut Params) -> Arc<Shaped> {
    select_joined(backend, node, p, Joins::Planned)
}

/// [`select`], its to-one edges joined as `form` says.
fn select_joined(backend: Backend, node: &Node, p: &mut Params, form: Joins) -> Arc<Shaped> {
    debug_assert!(p.args.is_empty(), "the select is a statement's first text");
    if p.literal {
        return Arc::new(Shaped {
            select: Select::new(backend, node, p, form),
            viewer: false,
        });
    }
    let mut key = select_key(backend, p.viewer, node);
    key.push(form as u32);
    if let Some(kept) = SHAPED.get(&key) {
        if kept.viewer
            && let Some(id) = p.viewer.user_id()
        {
            p.viewer_id(id);
        }
        return kept;
    }
    let select = Select::new(backend, node, p, form);
    let shaped = Arc::new(Shaped {
        viewer: p.viewer_at.is_some(),
        select,
    });
    let bytes = shaped.select.list.len() + shaped.select.joins.len();
    SHAPED.keep(key, shaped.clone(), bytes);
    shaped
}

impl Select {
    fn new(backend: Backend, node: &Node, params: &mut Params, form: Joins) -> Self {
        let mut s = Select {
            backend,
            list: String::with_capacity(256),
            cols: 0,
            masks: Vec::new(),
            joins: String::new(),
            next_alias: 1,
            form,
        };
        s.add(node, "t0", params);
        s
    }

    fn add(&mut self, node: &Node, alias: &str, params: &mut Params) {
        let mask = column_mask(node);
        self.masks.push(mask);
        for (i, col) in node.entity.desc().columns.iter().enumerate() {
            if mask & (1 << i) != 0 {
                if self.cols > 0 {
                    self.list.push_str(", ");
                }
                expr(&mut self.list, col, self.backend, alias);
                self.list.push_str(" as c");
                self.list.push_str(itoa::Buffer::new().format(self.cols));
                self.cols += 1;
            }
        }
        for join in &node.joins {
            let child = format!("t{}", self.next_alias);
            self.next_alias += 1;
            // Foreign keys are NOT NULL, and what a row the viewer may see names is visible to
            // them too (the description shows it for every to-one edge,
            // `Rel::target_visibility`), so an inner join never drops a visible parent row.
            let (target, key) = (table(join.node.entity), join_key(join.edge));
            let visible = params.visible(join.node.entity, &child);
            let visible = visible
                .map(|pred| format!(" and {pred}"))
                .unwrap_or_default();
            let _ = match self.form {
                Joins::Planned => write!(
                    self.joins,
                    " join {target} {child} on {child}.id = {alias}.{key}{visible}"
                ),
                Joins::Lookup => write!(
                    self.joins,
                    " cross join lateral (select * from {target} {child} where {child}.id = \
                     {alias}.{key}{visible} offset 0) {child}"
                ),
            };
            self.add(&join.node, &child, params);
        }
    }

    fn list(&self) -> &str {
        &self.list
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
    let row = decode_row(node.entity, mask, r, at)?;
    let mut joins = Vec::with_capacity(node.joins.len());
    for j in &node.joins {
        joins.push(decode(&j.node, r, at, masks)?);
    }
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
        /// The order (empty: by id).
        order: SortKeys,
        /// The `where` filter.
        filter: Option<Arc<Filter>>,
    },
    /// One row by id.
    ById(i64),
    /// Rows by id, in id order (callers restore their own order).
    ByIds(Vec<i64>),
    /// A connection's page (`usersConnection`): the page's rows plus one more when there is a
    /// next one, in the page's direction.
    Connection {
        /// The order (empty: by id).
        order: SortKeys,
        /// Which slice.
        page: Page,
        /// The filter (`where` with the root filters), `None`: every row.
        filter: Option<Arc<Filter>>,
    },
}

/// The `order by` keys of `entity`'s rows aliased `alias`: the sort keys, then the id. Text
/// compares by code point on both backends (`collate "C"` on PostgreSQL, SQLite's binary).
/// Every direction is flipped when `reverse` (a page read from its end).
fn order_by(
    backend: Backend,
    entity: Entity,
    alias: &str,
    order: SortKeys,
    reverse: bool,
) -> String {
    let cols = entity.desc().columns;
    let mut out = String::new();
    for (col, desc) in order.keys() {
        let _ = write!(
            out,
            "{}{}, ",
            sort_expr(backend, &cols[col], alias),
            if desc != reverse { " desc" } else { "" }
        );
    }
    let _ = write!(out, "{alias}.id{}", if reverse { " desc" } else { "" });
    out
}

/// A sort key as SQL: text compares by code point on both backends.
fn sort_expr(backend: Backend, col: &Column, alias: &str) -> String {
    match (backend, col.kind) {
        (Backend::Postgres, Kind::Text) => format!("{alias}.{} collate \"C\"", col.name),
        _ => format!("{alias}.{}", col.name),
    }
}

/// A cursor's value as a bound parameter, written as SQL comparable with its column.
fn cursor_value(backend: Backend, kind: Kind, v: &Val, p: &mut Params) -> String {
    let arg = match v {
        Val::Int(n) => Arg::I64(*n),
        Val::Text(t) => Arg::Text(t.to_string()),
        Val::Time(t) => Arg::Ts(*t),
        // Cursors hold amounts of at most 2 decimals (checked when decoded).
        Val::Money(d) => Arg::I64(super::money::to_cents(*d).unwrap_or_default()),
        Val::Enum(e, i) => Arg::Text(e.values[usize::from(*i)].1.to_owned()),
        Val::Bool(b) => Arg::Bool(*b),
        _ => Arg::OptI64(None),
    };
    let n = p.push(arg);
    match (backend, kind) {
        (Backend::Postgres, Kind::Money) => format!("${n}::int8::numeric / 100"),
        _ => format!("${n}"),
    }
}

/// The keyset condition of a cursor: the rows of `entity` aliased `alias` that come after
/// (`after`) or before the cursor's row in `order` (the id breaking ties). Mixed directions
/// are written out key by key; the first key's bound comes first so that an index on it
/// serves the range.
fn keyset(
    backend: Backend,
    entity: Entity,
    alias: &str,
    order: SortKeys,
    cursor: &Cursor,
    after: bool,
    p: &mut Params,
) -> String {
    let cols = entity.desc().columns;
    let keys: Vec<(usize, bool)> = order.keys().chain([(0, false)]).collect();
    let mut sides = Vec::with_capacity(keys.len());
    for ((col, desc), v) in keys.iter().zip(cursor.values.iter()) {
        let c = &cols[*col];
        sides.push((
            sort_expr(backend, c, alias),
            cursor_value(backend, c.kind, v, p),
            after != *desc,
        ));
    }
    let mut alternatives = Vec::with_capacity(sides.len());
    for i in 0..sides.len() {
        let mut conj: Vec<String> = sides[..i]
            .iter()
            .map(|(col, val, _)| format!("{col} = {val}"))
            .collect();
        let (col, val, greater) = &sides[i];
        conj.push(format!("{col} {} {val}", if *greater { ">" } else { "<" }));
        alternatives.push(conj.join(" and "));
    }
    let (col, val, greater) = &sides[0];
    format!(
        "{col} {} {val} and {}",
        if *greater { ">=" } else { "<=" },
        any_of(backend, &alternatives)
    )
}

/// A disjunction of conditions. On SQLite it is compared with true rather than left a bare
/// `or`: SQLite 3.51's planner fails with "internal query planner error" on some `or` terms
/// whose branches it would read through different indexes (the rowid and a partial index)
/// beside an `in` condition, so its OR-by-union optimisation is kept off these terms. The
/// value is the same (a null disjunction is not true either way).
fn any_of(backend: Backend, parts: &[String]) -> String {
    match backend {
        Backend::Postgres => format!("({})", parts.join(" or ")),
        Backend::Sqlite => format!("(({}) = 1)", parts.join(" or ")),
    }
}

/// The conditions of a page's cursors.
fn page_conditions(
    backend: Backend,
    entity: Entity,
    alias: &str,
    order: SortKeys,
    page: &Page,
    p: &mut Params,
    conds: &mut Vec<String>,
) {
    if let Some(c) = &page.after {
        conds.push(keyset(backend, entity, alias, order, c, true, p));
    }
    if let Some(c) = &page.before {
        conds.push(keyset(backend, entity, alias, order, c, false, p));
    }
}

/// Statement names, derived from the description once: `users.page`, `orders.by_id`, ...
static ROOT_NAMES: LazyLock<Vec<[&'static str; 4]>> = LazyLock::new(|| {
    Entity::ALL
        .iter()
        .map(|e| {
            let t = e.desc().table;
            ["page", "by_id", "by_ids", "connection"]
                .map(|what| &*Box::leak(format!("{t}.{what}").into_boxed_str()))
        })
        .collect()
});

fn root_name(entity: Entity, q: &RootQuery) -> &'static str {
    let names = &ROOT_NAMES[entity as usize];
    match q {
        RootQuery::Page { .. } => names[0],
        RootQuery::ById(_) => names[1],
        RootQuery::ByIds(_) => names[2],
        RootQuery::Connection { .. } => names[3],
    }
}

/// A filter value as a bound parameter, written as SQL comparable with its column.
fn lit_sql(backend: Backend, lit: &Lit, p: &mut Params) -> String {
    let (arg, money) = match lit {
        Lit::Int(n) => (Arg::I64(*n), false),
        Lit::Text(t) => (Arg::Text(t.clone()), false),
        Lit::Bool(b) => (Arg::Bool(*b), false),
        Lit::Time(t) => (Arg::Ts(*t), false),
        Lit::Cents(c) => (Arg::I64(*c), true),
        Lit::Enum(e, i) => (Arg::Text(e.values[usize::from(*i)].1.to_owned()), false),
    };
    let n = p.push(arg);
    match (backend, money) {
        (Backend::Postgres, true) => format!("${n}::int8::numeric / 100"),
        _ => format!("${n}"),
    }
}

const ASCII_UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const ASCII_LOWER: &str = "abcdefghijklmnopqrstuvwxyz";

/// A timestamp's stored precision in nanoseconds: SQLite keeps milliseconds (RFC 3339 text),
/// PostgreSQL microseconds.
fn stored_precision_ns(backend: Backend) -> i64 {
    match backend {
        Backend::Sqlite => 1_000_000,
        Backend::Postgres => 1_000,
    }
}

/// `t` cut to the stored precision, and whether that lost nothing.
fn stored_time(backend: Backend, t: DateTime<Utc>) -> (DateTime<Utc>, bool) {
    let unit = stored_precision_ns(backend);
    let sub = i64::from(t.timestamp_subsec_nanos()) % unit;
    (t - chrono::Duration::nanoseconds(sub), sub == 0)
}

/// `lhs op t` exactly, although the database stores (and binds) timestamps at a coarser
/// precision than a bound may have: every stored value is a multiple of the precision, so
/// with `c` the bound cut to it, `x > t` is `x > c`, `x >= t` is `x > c` when `t` lost a
/// part (else `x >= c`), `x < t` is `x <= c` when it lost a part, `x <= t` is `x <= c`, and
/// `x = t` holds for no stored value when it lost a part.
fn time_cmp(backend: Backend, lhs: &str, op: Op, t: DateTime<Utc>, p: &mut Params) -> String {
    let (cut, exact) = stored_time(backend, t);
    let sql = match (op, exact) {
        (_, true) | (Op::Gt | Op::Lte, _) => op.sql(),
        (Op::Gte, false) => ">",
        (Op::Lt, false) => "<=",
        (Op::Eq | Op::Contains | Op::StartsWith, false) => return "1 = 0".to_owned(),
    };
    format!("{lhs} {sql} {}", lit_sql(backend, &Lit::Time(cut), p))
}

/// `%`, `_` and `\` of a LIKE pattern's literal text, escaped with `\`.
fn like_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `f` over the rows of `entity` aliased `alias`, as ONE SQL predicate: every value bound
/// (the text depends only on the filter's shape), relation filters as `exists` subqueries
/// under the viewer's visibility, comparisons with a null value false (so `not` is the
/// complement).
fn filter_sql(backend: Backend, entity: Entity, alias: &str, f: &Filter, p: &mut Params) -> String {
    let cols = entity.desc().columns;
    match f {
        Filter::All(parts) if parts.is_empty() => "1 = 1".to_owned(),
        Filter::Any(parts) if parts.is_empty() => "1 = 0".to_owned(),
        Filter::All(parts) | Filter::Any(parts) if parts.len() == 1 => {
            filter_sql(backend, entity, alias, &parts[0], p)
        }
        Filter::All(parts) | Filter::Any(parts) => {
            let join = if matches!(f, Filter::All(_)) {
                " and "
            } else {
                " or "
            };
            let parts: Vec<String> = parts
                .iter()
                .map(|part| filter_sql(backend, entity, alias, part, p))
                .collect();
            if join == " or " {
                any_of(backend, &parts)
            } else {
                format!("({})", parts.join(join))
            }
        }
        Filter::Not(inner) => format!(
            "not {}",
            paren(filter_sql(backend, entity, alias, inner, p))
        ),
        Filter::Cmp { col, op, value } => {
            cmp_sql(backend, alias, &cols[usize::from(*col)], *op, value, p)
        }
        Filter::In { values, .. } if values.is_empty() => "1 = 0".to_owned(),
        Filter::In { col, values }
            if values
                .iter()
                .any(|v| matches!(v, Lit::Time(t) if !stored_time(backend, *t).1)) =>
        {
            // A time finer than the stored precision equals no stored value.
            let kept: Vec<Lit> = values
                .iter()
                .filter(|v| !matches!(v, Lit::Time(t) if !stored_time(backend, *t).1))
                .cloned()
                .collect();
            let f = Filter::In {
                col: *col,
                values: kept,
            };
            filter_sql(backend, entity, alias, &f, p)
        }
        Filter::In { col, values } => in_sql(backend, alias, &cols[usize::from(*col)], values, p),
        Filter::IsNull { col, null } => format!(
            "{alias}.{} is {}null",
            cols[usize::from(*col)].name,
            if *null { "" } else { "not " }
        ),
        Filter::Related { rel, none, filter } => {
            let rel = Rel {
                from: entity,
                index: *rel,
            };
            related_sql(backend, alias, rel, *none, filter, p)
        }
    }
}

/// A null-able column's predicate holds only on a value: comparisons with null are false, so
/// `not` is the complement.
fn guard(alias: &str, col: &Column, pred: String) -> String {
    match col.kind {
        Kind::OptText | Kind::OptDateTime | Kind::OptEnum(_) => {
            format!("({alias}.{} is not null and {pred})", col.name)
        }
        _ => pred,
    }
}

/// `alias.col op value`, the value bound.
fn cmp_sql(
    backend: Backend,
    alias: &str,
    c: &Column,
    op: Op,
    value: &Lit,
    p: &mut Params,
) -> String {
    let lhs = format!("{alias}.{}", c.name);
    let pred = match (op, value) {
        (Op::Contains | Op::StartsWith, Lit::Text(t)) => {
            let pattern = match op {
                Op::Contains => format!("%{}%", like_literal(t)),
                _ => format!("{}%", like_literal(t)),
            };
            // ASCII case is ignored on both backends, and only ASCII case: SQLite's
            // `like` does exactly that; PostgreSQL's `ilike` would also fold `É` to
            // `é`, so the column's ASCII letters are lowered and matched with `like`.
            let n = p.push(Arg::Text(pattern.to_ascii_lowercase()));
            match backend {
                Backend::Postgres => format!(
                    "translate({lhs}, '{ASCII_UPPER}', '{ASCII_LOWER}') like ${n} escape '\\'"
                ),
                Backend::Sqlite => format!("{lhs} like ${n} escape '\\'"),
            }
        }
        (_, Lit::Time(t)) => time_cmp(backend, &lhs, op, *t, p),
        _ => format!("{lhs} {} {}", op.sql(), lit_sql(backend, value, p)),
    };
    guard(alias, c, pred)
}

/// `alias.col in (values)`, the values bound as ONE list parameter.
fn in_sql(backend: Backend, alias: &str, c: &Column, values: &[Lit], p: &mut Params) -> String {
    let lhs = format!("{alias}.{}", c.name);
    let ints = |v: &Lit| match v {
        Lit::Int(n) | Lit::Cents(n) => *n,
        _ => 0,
    };
    let texts = |v: &Lit| match v {
        Lit::Text(t) => t.clone(),
        Lit::Enum(e, i) => e.values[usize::from(*i)].1.to_owned(),
        Lit::Time(t) => match backend {
            Backend::Postgres => t.to_rfc3339(),
            Backend::Sqlite => super::session::sqlite_ts(*t),
        },
        Lit::Bool(b) => b.to_string(),
        Lit::Int(n) | Lit::Cents(n) => n.to_string(),
    };
    let pred = match c.kind {
        Kind::Id | Kind::Int | Kind::Money => {
            let n = p.push(Arg::Ids(values.iter().map(ints).collect()));
            match (backend, c.kind) {
                (Backend::Postgres, Kind::Money) => {
                    format!("({lhs} * 100)::int8 = any(${n})")
                }
                (Backend::Postgres, Kind::Int) => format!("{lhs}::int8 = any(${n})"),
                _ => in_ids(backend, &lhs, n),
            }
        }
        _ => {
            let n = p.push(Arg::Texts(values.iter().map(texts).collect()));
            match (backend, c.kind) {
                (Backend::Postgres, Kind::DateTime | Kind::OptDateTime) => {
                    format!("{lhs} = any(${n}::timestamptz[])")
                }
                (Backend::Postgres, _) => format!("{lhs} = any(${n})"),
                (Backend::Sqlite, _) => {
                    format!("{lhs} in (select value from json_each(${n}))")
                }
            }
        }
    };
    guard(alias, c, pred)
}

/// `[not] exists` a row of `rel` from the row `alias` that `filter` keeps and the viewer may
/// see.
fn related_sql(
    backend: Backend,
    alias: &str,
    rel: Rel,
    none: bool,
    filter: &Filter,
    p: &mut Params,
) -> String {
    let target = rel.target();
    p.aliases += 1;
    let a = format!("f{}", p.aliases);
    let (from, link) = match rel.desc().link {
        Link::ForeignKey(key) => (
            format!("{} {a}", table(target)),
            format!("{a}.id = {alias}.{key}"),
        ),
        Link::Children(col) => (
            format!("{} {a}", table(target)),
            format!("{a}.{col} = {alias}.id"),
        ),
        Link::Through {
            table: link,
            parent,
            child,
        } => (
            format!(
                "{link} l{a} join {} {a} on {a}.id = l{a}.{child}",
                table(target)
            ),
            format!("l{a}.{parent} = {alias}.id"),
        ),
    };
    let mut conds = vec![link];
    if !filter.is_true() {
        conds.push(filter_sql(backend, target, &a, filter, p));
    }
    if let Some(pred) = p.visible(target, &a) {
        conds.push(pred);
    }
    format!(
        "{}exists (select 1 from {from} where {}{EXISTS_END})",
        if none { "not " } else { "" },
        conds.join(" and ")
    )
}

fn paren(sql: String) -> String {
    if sql.starts_with('(') && sql.ends_with(')') {
        sql
    } else {
        format!("({sql})")
    }
}

/// Runs the root statement of a plan: the node's rows with every joined edge.
pub async fn fetch_root(s: &Session, node: &Node, q: RootQuery) -> AppResult<Vec<Loaded>> {
    let (backend, viewer) = (s.backend(), s.viewer());
    let name = root_name(node.entity, &q);
    let by_id = match q {
        RootQuery::ById(id) => Some(id),
        _ => None,
    };
    let statement = match q {
        RootQuery::ById(id) => by_id_statement(backend, viewer, node, id),
        q => root_statement(backend, viewer, node, q),
    };
    let masks = &statement.shaped.select.masks;
    let decoder = |r: &dyn DbRow| {
        let mut at = 0;
        decode(node, r, &mut at, &mut masks.iter())
    };
    match by_id {
        // One row by its id: what reads it depends on that row (and what it joins).
        Some(id) => {
            let key = (table(node.entity), Some(id));
            s.fetch_keyed(name, statement.text, statement.args, key, decoder)
                .await
        }
        None => s.fetch(name, statement.text, statement.args, decoder).await,
    }
}

/// The root statement of a plan loading one row by id: the select's shape fixes its text
/// (the commonest small request), so it is written once per shape.
fn by_id_statement(backend: Backend, viewer: Viewer, node: &Node, id: i64) -> Statement {
    let mut key = vec![Which::RootById as u32];
    key.extend(select_key(backend, viewer, node));
    Statement::kept(&key, viewer, &mut vec![Arg::I64(id)]).unwrap_or_else(|| {
        let statement = root_statement(backend, viewer, node, RootQuery::ById(id));
        statement.keep(key);
        statement
    })
}

/// The root statement of a plan, written for `q`.
fn root_statement(backend: Backend, viewer: Viewer, node: &Node, q: RootQuery) -> Statement {
    let mut p = Params::new(viewer);
    let shaped = select(backend, node, &mut p);
    let select = &shaped.select;
    let mut sql = format!(
        "select {} from {} t0{}",
        select.list(),
        table(node.entity),
        select.joins
    );
    let mut conds = Vec::new();
    if let Some(pred) = p.visible(node.entity, "t0") {
        conds.push(pred);
    }
    let mut page = None;
    let mut order = SortKeys::default();
    let mut reverse = false;
    let by_id = matches!(q, RootQuery::ById(_));
    match q {
        RootQuery::Connection {
            order: o,
            page: pg,
            filter,
        } => {
            if let Some(filter) = &filter {
                conds.push(filter_sql(backend, node.entity, "t0", filter, &mut p));
            }
            page_conditions(backend, node.entity, "t0", o, &pg, &mut p, &mut conds);
            page = Some((pg.rows_read(), None));
            order = o;
            reverse = pg.backward;
        }
        RootQuery::Page {
            first,
            offset,
            order: o,
            filter,
        } => {
            if let Some(filter) = &filter {
                conds.push(filter_sql(backend, node.entity, "t0", filter, &mut p));
            }
            page = Some((first, Some(offset)));
            order = o;
        }
        RootQuery::ById(id) => {
            let n = p.push(Arg::I64(id));
            conds.push(format!("t0.id = ${n}"));
        }
        RootQuery::ByIds(ids) => {
            let n = p.push(Arg::Ids(ids));
            conds.push(in_ids(backend, "t0.id", n));
        }
    }
    if !conds.is_empty() {
        let _ = write!(sql, " where {}", conds.join(" and "));
    }
    let by = order_by(backend, node.entity, "t0", order, reverse);
    match page {
        Some((first, None)) => {
            let first = p.push(Arg::I64(first));
            let _ = write!(sql, " order by {by} limit ${first}");
        }
        Some((first, Some(offset))) => {
            let first = p.push(Arg::I64(first));
            let offset = p.push(Arg::I64(offset));
            let _ = write!(sql, " order by {by} limit ${first} offset ${offset}");
        }
        None if by_id => {}
        None => {
            let _ = write!(sql, " order by {by}");
        }
    }
    Statement {
        text: sql,
        args: p.args,
        viewer_at: p.viewer_at,
        shaped,
    }
}

/// Where a to-many edge's rows come from: the `from` clause (child table aliased `t0`), the
/// column holding the parent's id, and the statement's name (`orders.by_user_ids`).
struct Source {
    from: String,
    parent: String,
    name: &'static str,
}

/// Every to-many edge's source, derived from the description once.
static SOURCES: LazyLock<Vec<Vec<Option<Source>>>> = LazyLock::new(|| {
    Entity::ALL
        .iter()
        .map(|e| {
            e.desc()
                .relations
                .iter()
                .map(|r| {
                    let target = r.target.desc().table;
                    let (from, parent, key) = match r.link {
                        Link::ForeignKey(_) => return None,
                        Link::Children(col) => (format!("{target} t0"), format!("t0.{col}"), col),
                        Link::Through {
                            table,
                            parent,
                            child,
                        } => (
                            format!("{table} l join {target} t0 on t0.id = l.{child}"),
                            format!("l.{parent}"),
                            parent,
                        ),
                    };
                    let name = Box::leak(format!("{target}.by_{key}s").into_boxed_str());
                    Some(Source { from, parent, name })
                })
                .collect()
        })
        .collect()
});

fn batch_source(edge: Rel) -> (&'static str, &'static str, &'static str) {
    match &SOURCES[edge.from as usize][usize::from(edge.index)] {
        Some(s) => (&s.from, &s.parent, s.name),
        None => ("", "", "invalid"),
    }
}

/// Runs one batch: the children of every parent in `parent_ids`, as `(parent id, child)` in
/// parent, then child id order (sorted here, not by the database). `parent_ids` must not be
/// empty; `parents` says how many there can be by the operation's shape.
pub async fn fetch_batch(
    s: &Session,
    batch: &Batch,
    parent_ids: Vec<i64>,
    parents: Parents,
) -> AppResult<Vec<(i64, Loaded)>> {
    let (backend, viewer) = (s.backend(), s.viewer());
    let name = batch_source(batch.edge).2;
    let ordered = ordered(&batch.args);
    debug_assert!(parents == Parents::Many || parent_ids.len() == 1);
    let statement = kept_batch_statement(backend, viewer, batch, parent_ids, parents);
    let masks = &statement.shaped.select.masks;
    let in_row = parent_in_row(batch);
    let decoder = |r: &dyn DbRow| match in_row {
        Some(key) => {
            let child = decode(&batch.node, r, &mut 0, &mut masks.iter())?;
            Ok((child.row.int(key), child))
        }
        None => {
            let parent = r.i64(0)?;
            Ok((parent, decode(&batch.node, r, &mut 1, &mut masks.iter())?))
        }
    };
    let mut rows = match parents_only(batch) {
        Some(parents) => {
            s.fetch_keyed(
                name,
                statement.text,
                statement.args,
                (parents, None),
                decoder,
            )
            .await?
        }
        None => {
            s.fetch(name, statement.text, statement.args, decoder)
                .await?
        }
    };
    if !ordered {
        rows.sort_unstable_by_key(|(parent, child)| (*parent, child.row.id()));
    }
    Ok(rows)
}

/// The parents' table, when a batch's statement reads of it only the parents themselves:
/// children whose visibility goes through their parent by the batch's own key (an order's
/// items), with no filter and no join back to it. What depends on the batch then depends on
/// those parents through the statement that read them, not on every row of their table.
fn parents_only(batch: &Batch) -> Option<&'static str> {
    let parent = batch.edge.from;
    let Link::Children(col) = batch.edge.desc().link else {
        return None;
    };
    let through = matches!(batch.node.entity.desc().visibility,
        Visibility::Through { key, parent: p } if key == col && p == parent);
    let joins_back = batch.node.joins.iter().any(|j| j.edge.target() == parent);
    (through && batch.args.filter.is_none() && !joins_back).then(|| table(parent))
}

/// Where the parent's id is in a child's row, when the batch's statement reads it only there:
/// the child's own key column naming its parent (an order's `user_id`), which every load
/// reads. Otherwise (through an association table, or numbered per parent for a limit) the
/// statement reads it first, as `parent_id`.
fn parent_in_row(batch: &Batch) -> Option<usize> {
    let Link::Children(col) = batch.edge.desc().link else {
        return None;
    };
    if batch.args.first.is_some() || batch.args.page.is_some() {
        return None;
    }
    let entity = batch.node.entity;
    entity
        .column_named(col)
        .filter(|&at| entity.desc().columns[at].always_read())
}

/// Whether a batch's statement orders its rows (by `orderBy`, or for a page); otherwise the
/// caller sorts them by parent and id.
fn ordered(args: &EdgeArgs) -> bool {
    !args.order.is_empty() || args.page.is_some()
}

/// The statement of `batch` for these parents. Without a filter or a page (whose values
/// shape the text), the select's shape, the edge and which arguments are given fix the text,
/// so it is written once per shape.
fn kept_batch_statement(
    backend: Backend,
    viewer: Viewer,
    batch: &Batch,
    parent_ids: Vec<i64>,
    parents: Parents,
) -> Statement {
    let args = &batch.args;
    if args.filter.is_none() && args.page.is_none() {
        let mut key = vec![Which::Batch as u32];
        key.extend(select_key(backend, viewer, &batch.node));
        key.extend([
            batch.edge.from as u32,
            u32::from(batch.edge.index),
            u32::from(args.first.is_some()),
            batch_joins(backend, parents) as u32,
        ]);
        key.extend(
            args.order
                .keys()
                .map(|(col, desc)| (col as u32) << 1 | u32::from(desc)),
        );
        let mut own = vec![Arg::Ids(parent_ids)];
        own.extend(args.first.map(Arg::I64));
        if let Some(statement) = Statement::kept(&key, viewer, &mut own) {
            return statement;
        }
        let Some(Arg::Ids(parent_ids)) = own.into_iter().next() else {
            unreachable!("the first value is the parents' ids")
        };
        let statement = batch_statement(backend, viewer, batch, parent_ids, parents);
        statement.keep(key);
        return statement;
    }
    batch_statement(backend, viewer, batch, parent_ids, parents)
}

/// How a batch statement for `parents` joins its to-one edges: one parent's children (a few
/// rows) look each joined row up; any other batch lets the planner choose.
fn batch_joins(backend: Backend, parents: Parents) -> Joins {
    match (backend, parents) {
        (Backend::Postgres, Parents::One) => Joins::Lookup,
        _ => Joins::Planned,
    }
}

/// The statement of `batch`, written for these parents.
fn batch_statement(
    backend: Backend,
    viewer: Viewer,
    batch: &Batch,
    parent_ids: Vec<i64>,
    parents: Parents,
) -> Statement {
    let (from, parent, _) = batch_source(batch.edge);
    let mut p = Params::new(viewer);
    let shaped = select_joined(backend, &batch.node, &mut p, batch_joins(backend, parents));
    let select = &shaped.select;
    let ids = p.push(Arg::Ids(parent_ids));
    // The conditions beside the parent's: ` and ...`.
    let mut rest = String::new();
    if let Some(filter) = &batch.args.filter {
        let pred = filter_sql(backend, batch.node.entity, "t0", filter, &mut p);
        let _ = write!(rest, " and {pred}");
    }
    if let Some(pred) = p.visible(batch.node.entity, "t0") {
        let _ = write!(rest, " and {pred}");
    }
    let order = batch.args.order;
    let mut first = batch.args.first;
    let mut reverse = false;
    if let Some(page) = &batch.args.page {
        let mut conds = Vec::new();
        page_conditions(
            backend,
            batch.node.entity,
            "t0",
            order,
            page,
            &mut p,
            &mut conds,
        );
        for c in conds {
            let _ = write!(rest, " and {c}");
        }
        first = Some(page.rows_read());
        reverse = page.backward;
    }
    let ordered = ordered(&batch.args);
    let by = order_by(backend, batch.node.entity, "t0", order, reverse);
    let filter = format!("{}{rest}", in_ids(backend, parent, ids));
    let lead = match parent_in_row(batch) {
        Some(_) => String::new(),
        None => format!("{parent} as parent_id, "),
    };
    let sql = match first {
        // A connection's pages on PostgreSQL: per parent, the first rows in order through a
        // LATERAL subquery, so an index on (parent, sort keys) reads just the page's rows of
        // each parent (the lesson's `orders (user_id, status, created_at desc)`), never all of
        // a parent's rows. Still one statement for all parents.
        Some(first) if backend == Backend::Postgres && batch.args.page.is_some() => {
            let n = p.push(Arg::I64(first));
            format!(
                "select p.id as parent_id, s.* from unnest(${ids}::int8[]) as p(id) cross join \
                 lateral (select {}, row_number() over (order by {by}) as rn from {from}{} \
                 where {parent} = p.id{rest} order by {by} limit ${n}) s order by p.id, s.rn",
                select.list(),
                select.joins,
            )
        }
        // By id: no ORDER BY, the caller sorts each parent's children by id, which costs the
        // server far less than a sort costs the database (the scarcer resource under load).
        None if !ordered => format!(
            "select {lead}{} from {from}{} where {filter}",
            select.list(),
            select.joins
        ),
        None => format!(
            "select {lead}{} from {from}{} where {filter} order by {parent}, {by}",
            select.list(),
            select.joins
        ),
        Some(first) => {
            let n = p.push(Arg::I64(first));
            // Per-parent limit inside the one statement: number each parent's children by id
            // and keep the first N.
            let tail = if ordered {
                " order by s.parent_id, s.rn"
            } else {
                ""
            };
            format!(
                "select * from (select {parent} as parent_id, {}, row_number() over \
                 (partition by {parent} order by {by}) as rn from {from}{} where {filter}) s \
                 where s.rn <= ${n}{tail}",
                select.list(),
                select.joins,
            )
        }
    };
    Statement {
        text: sql,
        args: p.args,
        viewer_at: p.viewer_at,
        shaped,
    }
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
    let mut p = Params::new(s.viewer());
    p.literal = true;
    let shaped = select(s.backend(), node, &mut p);
    let select = &shaped.select;
    let extra_cols: Vec<String> = extras.iter().map(|c| format!("agg.{c}")).collect();
    let visible = p
        .visible(node.entity, "t0")
        .map(|pred| format!(" and {pred}"))
        .unwrap_or_default();
    let sql = format!(
        "with agg as ({agg_sql}) select {}, {} from agg join {} t0 on t0.id = agg.{key}{visible}{} order by {order_by}",
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

/// The aggregates of one parent over one edge: the count, and the values an [`AggBatch`]
/// asked for, in its order ([`Val::Null`] where no row had one).
#[derive(Clone, Debug, PartialEq)]
pub struct AggRow {
    /// Matching children.
    pub count: i64,
    /// One per [`AggBatch::values`].
    pub values: Vec<Val>,
}

impl AggRow {
    /// The aggregates of a parent with no matching child.
    pub fn empty(values: usize) -> AggRow {
        AggRow {
            count: 0,
            values: vec![Val::Null; values],
        }
    }
}

/// The select-list expression of `func` over column `col` of `t0`, read as the same Rust
/// type on both backends (money as cents, averages as doubles in the column's unit).
fn agg_expr(backend: Backend, func: AggFunc, col: &Column) -> String {
    let c = format!("t0.{}", col.name);
    let f = func.name();
    match (backend, func, col.kind) {
        (Backend::Postgres, AggFunc::Avg, Kind::Money) => format!("avg({c})::float8"),
        (Backend::Postgres, AggFunc::Avg, _) => format!("avg({c})::float8"),
        (Backend::Postgres, _, Kind::Money) => format!("({f}({c}) * 100)::int8"),
        (Backend::Postgres, _, Kind::Int) => format!("{f}({c})::int8"),
        (Backend::Sqlite, AggFunc::Avg, Kind::Money) => format!("avg({c}) / 100.0"),
        (Backend::Sqlite, AggFunc::Avg, _) => format!("avg({c}) * 1.0"),
        _ => format!("{f}({c})"),
    }
}

/// Runs one aggregate batch: per parent in `parent_ids` with at least one matching child,
/// its count and values, in ONE grouped statement (the children themselves are never read).
pub async fn fetch_aggregates(
    s: &Session,
    agg: &AggBatch,
    parent_ids: Vec<i64>,
) -> AppResult<Vec<(i64, AggRow)>> {
    let backend = s.backend();
    let (from, parent, name) = batch_source(agg.edge);
    let target = agg.edge.target();
    let cols = target.desc().columns;
    let mut p = Params::new(s.viewer());
    let ids = p.push(Arg::Ids(parent_ids));
    let mut filter = in_ids(backend, parent, ids);
    if let Some(f) = &agg.args.filter {
        let pred = filter_sql(backend, target, "t0", f, &mut p);
        let _ = write!(filter, " and {pred}");
    }
    if let Some(pred) = p.visible(target, "t0") {
        let _ = write!(filter, " and {pred}");
    }
    let mut list = String::new();
    for (func, col) in &agg.values {
        let _ = write!(
            list,
            ", {}",
            agg_expr(backend, *func, &cols[usize::from(*col)])
        );
    }
    let sql = format!(
        "select {parent} as parent_id, count(*){list} from {from} where {filter} group by {parent}"
    );
    let name = AGG_NAMES.get(name).copied().unwrap_or("aggregate");
    s.fetch(name, sql, p.args, |r| {
        let mut values = Vec::with_capacity(agg.values.len());
        for (i, (func, col)) in agg.values.iter().enumerate() {
            values.push(agg_val(r, i + 2, *func, cols[usize::from(*col)].kind)?);
        }
        Ok((
            r.i64(0)?,
            AggRow {
                count: r.i64(1)?,
                values,
            },
        ))
    })
    .await
}

/// Aggregate statement names: `orders.by_user_ids` -> `orders.aggregate_by_user_ids`.
static AGG_NAMES: LazyLock<std::collections::HashMap<&'static str, &'static str>> =
    LazyLock::new(|| {
        SOURCES
            .iter()
            .flatten()
            .flatten()
            .map(|src| {
                let agg = src.name.replacen(".by_", ".aggregate_by_", 1);
                (src.name, &*Box::leak(agg.into_boxed_str()))
            })
            .collect()
    });

/// Runs a root aggregate: over every `entity` row the viewer may see (and, for orders, that
/// `filter` keeps), the count and `values`, in ONE ungrouped statement.
pub async fn fetch_total(
    s: &Session,
    entity: Entity,
    filter: Option<&Filter>,
    values: &[(AggFunc, u8)],
) -> AppResult<AggRow> {
    let backend = s.backend();
    let cols = entity.desc().columns;
    let mut p = Params::new(s.viewer());
    let mut conds = Vec::new();
    if let Some(pred) = p.visible(entity, "t0") {
        conds.push(pred);
    }
    if let Some(f) = filter {
        conds.push(filter_sql(backend, entity, "t0", f, &mut p));
    }
    let mut list = String::new();
    for (func, col) in values {
        let _ = write!(
            list,
            ", {}",
            agg_expr(backend, *func, &cols[usize::from(*col)])
        );
    }
    let mut sql = format!("select count(*){list} from {} t0", table(entity));
    if !conds.is_empty() {
        let _ = write!(sql, " where {}", conds.join(" and "));
    }
    let name = TOTAL_NAMES[entity as usize];
    let rows = s
        .fetch(name, sql, p.args, |r| {
            let mut out = Vec::with_capacity(values.len());
            for (i, (func, col)) in values.iter().enumerate() {
                out.push(agg_val(r, i + 1, *func, cols[usize::from(*col)].kind)?);
            }
            Ok(AggRow {
                count: r.i64(0)?,
                values: out,
            })
        })
        .await?;
    Ok(rows
        .into_iter()
        .next()
        .unwrap_or_else(|| AggRow::empty(values.len())))
}

/// Root aggregate statement names: `orders.aggregate`.
static TOTAL_NAMES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    Entity::ALL
        .iter()
        .map(|e| &*Box::leak(format!("{}.aggregate", e.desc().table).into_boxed_str()))
        .collect()
});

/// Reads one aggregated value at position `at`.
fn agg_val(r: &dyn DbRow, at: usize, func: AggFunc, kind: Kind) -> Result<Val, sqlx::Error> {
    Ok(match (func, kind) {
        (AggFunc::Avg, _) => r.opt_f64(at)?.map_or(Val::Null, Val::Float),
        (_, Kind::Money) => r
            .opt_i64(at)?
            .map_or(Val::Null, |c| Val::Money(from_cents(c))),
        (_, Kind::DateTime) => r.opt_ts(at)?.map_or(Val::Null, Val::Time),
        _ => r.opt_i64(at)?.map_or(Val::Null, Val::Int),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;
    use crate::planner::Join;

    fn leaf(entity: Entity, scalars: &[&str]) -> Node {
        Node {
            entity,
            joins: Vec::new(),
            batches: Vec::new(),
            scalars: scalars.iter().map(|s| (*s).to_owned()).collect(),
            aggregates: Vec::new(),
        }
    }

    /// `order { status user { email } }`: the joined user is visible to its owner only.
    fn order_with_user() -> Node {
        let mut node = leaf(Entity::Order, &["status"]);
        node.joins.push(Join {
            edge: Entity::Order.relation("user").unwrap(),
            node: leaf(Entity::User, &["email"]),
        });
        node
    }

    fn customer(id: i64) -> Viewer {
        Viewer::User {
            id,
            role: Role::Customer,
        }
    }

    #[test]
    fn a_kept_select_binds_each_viewer_its_own_id() {
        let node = order_with_user();
        let mut first = Params::new(customer(7_001));
        let written = select(Backend::Postgres, &node, &mut first);
        let mut second = Params::new(customer(7_002));
        let kept = select(Backend::Postgres, &node, &mut second);
        assert!(
            Arc::ptr_eq(&written, &kept),
            "the same shape is written once"
        );
        assert!(
            kept.select.joins.contains("t1.id = $1"),
            "{}",
            kept.select.joins
        );
        assert!(matches!(first.args.as_slice(), [Arg::I64(7_001)]));
        assert!(matches!(second.args.as_slice(), [Arg::I64(7_002)]));
        assert_eq!(second.viewer_at, Some(1));
    }

    /// A statement's text and parameters, to compare.
    fn written(st: &Statement) -> String {
        format!("{} {:?}", st.text, st.args)
    }

    #[test]
    fn one_parents_children_look_their_joined_rows_up_on_postgres_only() {
        let batch = Batch {
            edge: Entity::User.relation("orders").unwrap(),
            node: order_with_user(),
            args: EdgeArgs::default(),
        };
        let customer = customer(7_201);
        let one = kept_batch_statement(Backend::Postgres, customer, &batch, vec![9], Parents::One);
        assert!(
            one.text.contains(
                " cross join lateral (select * from users t1 where t1.id = t0.user_id and t1.id = $1 \
                 offset 0) t1 "
            ),
            "{}",
            one.text
        );
        assert!(!one.text.contains(" join users t1 on"), "{}", one.text);
        // The viewer's rule stays inside the lookup: an anonymous viewer's join finds nothing.
        let anonymous = kept_batch_statement(
            Backend::Postgres,
            Viewer::Anonymous,
            &batch,
            vec![9],
            Parents::One,
        );
        assert!(
            anonymous
                .text
                .contains("t0.user_id and 1 = 0 offset 0) t1 "),
            "{}",
            anonymous.text
        );
        // Any number of parents, or SQLite: a plain join, the planner's choice.
        let many = kept_batch_statement(
            Backend::Postgres,
            customer,
            &batch,
            vec![9, 10],
            Parents::Many,
        );
        assert!(
            many.text.contains(" join users t1 on t1.id = t0.user_id"),
            "{}",
            many.text
        );
        assert!(!many.text.contains("lateral"), "{}", many.text);
        let sqlite = kept_batch_statement(Backend::Sqlite, customer, &batch, vec![9], Parents::One);
        assert!(!sqlite.text.contains("lateral"), "{}", sqlite.text);
        // Both forms decode the same columns in the same order.
        let list = |st: &Statement| st.text.split(" from ").next().unwrap().to_owned();
        assert_eq!(list(&one), list(&many));
    }

    #[test]
    fn a_kept_statement_binds_what_a_written_one_binds() {
        let items = {
            let mut item = leaf(Entity::OrderItem, &["quantity"]);
            item.joins.push(Join {
                edge: Entity::OrderItem.relation("product").unwrap(),
                node: leaf(Entity::Product, &["name"]),
            });
            item
        };
        let orders = Entity::User.relation("orders").unwrap();
        let variants = [
            EdgeArgs::default(),
            EdgeArgs {
                first: Some(2),
                ..EdgeArgs::default()
            },
        ];
        for backend in [Backend::Postgres, Backend::Sqlite] {
            for (n, viewer) in [customer(7_101), customer(7_102), Viewer::Anonymous]
                .into_iter()
                .enumerate()
            {
                let id = 40 + n as i64;
                let root = order_with_user();
                assert_eq!(
                    written(&by_id_statement(backend, viewer, &root, id)),
                    written(&root_statement(backend, viewer, &root, RootQuery::ById(id))),
                );
                let item_batch = Batch {
                    edge: Entity::Order.relation("items").unwrap(),
                    node: items.clone(),
                    args: EdgeArgs::default(),
                };
                for args in &variants {
                    let batch = Batch {
                        edge: orders,
                        node: leaf(Entity::Order, &["status"]),
                        args: args.clone(),
                    };
                    for batch in [&batch, &item_batch] {
                        for (ids, parents) in
                            [(vec![id, id + 7], Parents::Many), (vec![id], Parents::One)]
                        {
                            assert_eq!(
                                written(&kept_batch_statement(
                                    backend,
                                    viewer,
                                    batch,
                                    ids.clone(),
                                    parents
                                )),
                                written(&batch_statement(backend, viewer, batch, ids, parents)),
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_kept_select_differs_by_what_the_viewer_is_and_by_shape() {
        let node = order_with_user();
        let as_customer = select(Backend::Postgres, &node, &mut Params::new(customer(7_003)));
        let mut p = Params::new(Viewer::Anonymous);
        let anonymous = select(Backend::Postgres, &node, &mut p);
        assert!(anonymous.select.joins.contains("1 = 0"));
        assert!(p.args.is_empty());
        let admin = Viewer::User {
            id: 1,
            role: Role::Admin,
        };
        let mut p = Params::new(admin);
        let as_admin = select(Backend::Postgres, &node, &mut p);
        assert!(!as_admin.select.joins.contains(" and "));
        assert!(p.args.is_empty());
        let on_sqlite = select(Backend::Sqlite, &node, &mut Params::new(customer(7_003)));
        assert!(!Arc::ptr_eq(&as_customer, &on_sqlite));
        let mut wider = order_with_user();
        wider.scalars.push("totalAmount".to_owned());
        wider.scalars.sort();
        let wider = select(Backend::Postgres, &wider, &mut Params::new(customer(7_003)));
        assert_ne!(wider.select.list, as_customer.select.list);
        assert_eq!(wider.select.masks.len(), 2);
    }
}
