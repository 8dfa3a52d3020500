//! The one renderer: every entity object in a response (query roots, mutation results,
//! analytics rows) is written as JSON here, field by field, by the kinds of the entity's
//! description. A field-level rule (a guard, a mask) has this one place to live.
//!
//! Executing a preloaded object graph field by field through async-graphql (a future, a
//! context and a lookup per field) costs far more than the SQL, so the (canonical) selection
//! is compiled once (response keys, column positions, edge arguments) into a small tree, and
//! every object is written with a plain loop over it. The selection is the canonical one of
//! [`super::operation`]: each response key occurs once, fragments are inlined.
//!
//! Relationships the plan did not load (only in lazy mode, `EAGERQL_PLAN=lazy`) are loaded
//! before writing, level by level, through the request's DataLoader ([`super::lazy`]); in
//! strict mode they are an `UNPLANNED_LOAD` error instead.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, OutputType, Positioned, SelectionField, ServerError,
    ServerResult, Value,
};
use futures_util::future::BoxFuture;

use super::RequestContext;
use super::lazy::{LazyLoader, RequestLoader};
use super::operation::EMPTY_SELECTION_KEY;
use super::types::{
    Connection, Obj, Object, Typed, connection_type, edge_type, register_aggregate,
    register_connection, register_object,
};
use crate::db::Session;
use crate::db::load::AggRow;
use crate::entities::{AGGREGATE_SUFFIX, AggFunc, Entity, Kind, Rel, Val};
use crate::error::{AppError, AppResult};
use crate::json;
use crate::model::{OrderStatus, Role};
use crate::planner::{AggBatch, EdgeArgs, Node, cursor};

/// A root value (an object, a list or an optional object) written by the renderer in one
/// go, with its selection compiled once for all its objects.
pub struct Rendered<T>(pub T);

/// One compiled field: its response key and what it writes (opaque outside this module).
#[doc(hidden)]
pub struct Compiled {
    /// `"key":`, ready to copy.
    key: Box<[u8]>,
    what: What,
}

/// What a compiled field writes. Relationships carry their compiled sub-selection.
enum What {
    Typename(&'static str),
    /// Column `.0` of the row, a key (written as an `ID` string).
    Id(usize),
    /// Column `.0` of the row, any other kind (its value says how it is written).
    Column(usize),
    /// To-one relationship number `.0`.
    One(u8, Vec<Compiled>),
    /// To-many relationship number `.0` with its arguments.
    Many(u8, EdgeArgs, Vec<Compiled>),
    /// The aggregate field of to-many relationship number `.0` with its arguments.
    Agg(u8, EdgeArgs, Vec<AggPart>),
    /// The connection field of to-many relationship number `.0` with its arguments.
    Conn(u8, EdgeArgs, Vec<ConnPart>),
}

/// One field of a connection object.
#[doc(hidden)]
pub struct ConnPart {
    key: Box<[u8]>,
    what: ConnWhat,
}

enum ConnWhat {
    Typename(&'static str),
    TotalCount,
    /// `pageInfo { ... }`.
    PageInfo(Vec<(Box<[u8]>, PageWhat)>),
    /// `edges { cursor node { ... } }`.
    Edges(Vec<(Box<[u8]>, EdgeWhat)>),
    /// `nodes { ... }`.
    Nodes(Vec<Compiled>),
}

#[derive(Copy, Clone)]
enum PageWhat {
    Typename,
    HasNext,
    HasPrevious,
    Start,
    End,
}

enum EdgeWhat {
    Typename(&'static str),
    Cursor,
    Node(Vec<Compiled>),
}

/// The type names of connection objects: `[entity] -> [XConnection, XEdge]`.
static CONN_TYPES: std::sync::LazyLock<Vec<[&'static str; 2]>> = std::sync::LazyLock::new(|| {
    Entity::ALL
        .iter()
        .map(|e| {
            let leak = |s: String| &*Box::leak(s.into_boxed_str());
            [leak(connection_type(*e)), leak(edge_type(*e))]
        })
        .collect()
});

/// Compiles the selection of a connection field over `target` rows.
fn compile_conn(target: Entity, field: &SelectionField<'_>) -> Result<Vec<ConnPart>, String> {
    let [conn_name, edge_name] = CONN_TYPES[target as usize];
    let mut out = Vec::new();
    for part in field.selection_set() {
        let key = part.alias().unwrap_or(part.name());
        if key == EMPTY_SELECTION_KEY {
            continue;
        }
        let what = match part.name() {
            "__typename" => ConnWhat::Typename(conn_name),
            "totalCount" => ConnWhat::TotalCount,
            "nodes" => ConnWhat::Nodes(compile(target, &part)?),
            "pageInfo" => {
                let mut fields = Vec::new();
                for f in part.selection_set() {
                    let k = f.alias().unwrap_or(f.name());
                    if k == EMPTY_SELECTION_KEY {
                        continue;
                    }
                    let what = match f.name() {
                        "__typename" => PageWhat::Typename,
                        "hasNextPage" => PageWhat::HasNext,
                        "hasPreviousPage" => PageWhat::HasPrevious,
                        "startCursor" => PageWhat::Start,
                        "endCursor" => PageWhat::End,
                        other => return Err(format!("PageInfo has no field {other}")),
                    };
                    fields.push((key_of(k), what));
                }
                ConnWhat::PageInfo(fields)
            }
            "edges" => {
                let mut fields = Vec::new();
                for f in part.selection_set() {
                    let k = f.alias().unwrap_or(f.name());
                    if k == EMPTY_SELECTION_KEY {
                        continue;
                    }
                    let what = match f.name() {
                        "__typename" => EdgeWhat::Typename(edge_name),
                        "cursor" => EdgeWhat::Cursor,
                        "node" => EdgeWhat::Node(compile(target, &f)?),
                        other => return Err(format!("{edge_name} has no field {other}")),
                    };
                    fields.push((key_of(k), what));
                }
                ConnWhat::Edges(fields)
            }
            other => return Err(format!("{conn_name} has no field {other}")),
        };
        out.push(ConnPart {
            key: key_of(key),
            what,
        });
    }
    Ok(out)
}

/// The row selections of a compiled connection (`edges { node }` and `nodes`).
fn conn_nodes(parts: &[ConnPart]) -> Vec<&[Compiled]> {
    let mut out = Vec::new();
    for p in parts {
        match &p.what {
            ConnWhat::Nodes(sel) => out.push(sel.as_slice()),
            ConnWhat::Edges(fields) => {
                for (_, f) in fields {
                    if let EdgeWhat::Node(sel) = f {
                        out.push(sel.as_slice());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn conn_counts(parts: &[ConnPart]) -> bool {
    parts.iter().any(|p| matches!(p.what, ConnWhat::TotalCount))
}

/// One field of an aggregate object (`count`, `sum { ... }`, `__typename`).
struct AggPart {
    key: Box<[u8]>,
    what: AggWhat,
}

enum AggWhat {
    Typename(&'static str),
    Count,
    /// `sum { totalAmount }`: its fields, `(key, column)` or a `__typename`.
    Func(AggFunc, Vec<(Box<[u8]>, Option<u8>)>),
}

/// The type names of aggregate objects: `[entity] -> [XAggregate, XSumFields, ...]`.
static AGG_TYPES: std::sync::LazyLock<Vec<[&'static str; 5]>> = std::sync::LazyLock::new(|| {
    Entity::ALL
        .iter()
        .map(|e| {
            let n = e.desc().name;
            let leak = |s: String| &*Box::leak(s.into_boxed_str());
            [
                leak(format!("{n}{AGGREGATE_SUFFIX}")),
                leak(format!("{n}{}", AggFunc::Sum.type_suffix())),
                leak(format!("{n}{}", AggFunc::Avg.type_suffix())),
                leak(format!("{n}{}", AggFunc::Min.type_suffix())),
                leak(format!("{n}{}", AggFunc::Max.type_suffix())),
            ]
        })
        .collect()
});

fn key_of(key: &str) -> Box<[u8]> {
    let mut k = Vec::with_capacity(key.len() + 3);
    json::push_str(&mut k, key);
    k.push(b':');
    k.into_boxed_slice()
}

/// Compiles the selection of an aggregate field over `target` rows.
fn compile_agg(target: Entity, field: &SelectionField<'_>) -> Result<Vec<AggPart>, String> {
    let names = &AGG_TYPES[target as usize];
    let mut out = Vec::new();
    for part in field.selection_set() {
        let key = part.alias().unwrap_or(part.name());
        if key == EMPTY_SELECTION_KEY {
            continue;
        }
        let what = match part.name() {
            "__typename" => AggWhat::Typename(names[0]),
            "count" => AggWhat::Count,
            name => {
                let (i, func) = AggFunc::ALL
                    .iter()
                    .enumerate()
                    .find(|(_, f)| f.name() == name)
                    .ok_or_else(|| format!("{} has no field {name}", names[0]))?;
                let mut cols = Vec::new();
                for c in part.selection_set() {
                    let k = c.alias().unwrap_or(c.name());
                    if k == EMPTY_SELECTION_KEY {
                        continue;
                    }
                    if c.name() == "__typename" {
                        cols.push((key_of(k), None));
                        continue;
                    }
                    let at = target
                        .column(c.name())
                        .ok_or_else(|| format!("{} has no field {}", names[i + 1], c.name()))?;
                    cols.push((key_of(k), Some(at as u8)));
                }
                AggWhat::Func(*func, cols)
            }
        };
        out.push(AggPart {
            key: key_of(key),
            what,
        });
    }
    Ok(out)
}

/// Compiles the sub-selection of `field` for objects of `entity`, by the description.
fn compile(entity: Entity, field: &SelectionField<'_>) -> Result<Vec<Compiled>, String> {
    let desc = entity.desc();
    let mut out = Vec::new();
    for child in field.selection_set() {
        let key = child.alias().unwrap_or(child.name());
        if key == EMPTY_SELECTION_KEY {
            // The placeholder of an emptied selection set: the object renders as `{}`.
            continue;
        }
        let name = child.name();
        let what = if name == "__typename" {
            What::Typename(desc.name)
        } else if let Some(at) = entity.column(name) {
            match desc.columns[at].kind {
                Kind::Id => What::Id(at),
                _ => What::Column(at),
            }
        } else if let Some(rel) = entity.connection(name) {
            let args = child.arguments().map_err(|e| e.message)?;
            let args = EdgeArgs::read_connection(rel, args.iter().map(|(n, v)| (n.as_str(), v)))
                .map_err(|e| e.0)?;
            What::Conn(rel.index, args, compile_conn(rel.target(), &child)?)
        } else if let Some(rel) = entity.aggregate(name) {
            let args = child.arguments().map_err(|e| e.message)?;
            let args =
                EdgeArgs::read(rel, args.iter().map(|(n, v)| (n.as_str(), v))).map_err(|e| e.0)?;
            What::Agg(rel.index, args, compile_agg(rel.target(), &child)?)
        } else if let Some(rel) = entity.relation(name) {
            let sub = compile(rel.target(), &child)?;
            if rel.desc().is_many() {
                let args = child.arguments().map_err(|e| e.message)?;
                let args = EdgeArgs::read(rel, args.iter().map(|(n, v)| (n.as_str(), v)))
                    .map_err(|e| e.0)?;
                What::Many(rel.index, args, sub)
            } else {
                What::One(rel.index, sub)
            }
        } else {
            return Err(format!("{}.{name} is not a field", desc.name));
        };
        let mut k = Vec::with_capacity(key.len() + 3);
        json::push_str(&mut k, key);
        k.push(b':');
        out.push(Compiled {
            key: k.into_boxed_slice(),
            what,
        });
    }
    Ok(out)
}

/// Why a render stopped.
#[doc(hidden)]
pub enum Stop {
    /// The output passed its byte budget.
    Over,
    /// A relationship (or column) the loads did not provide: fill it, then render again.
    Missing,
}

#[doc(hidden)]
pub type Step = Result<(), Stop>;

/// Output buffer of a render, with the most it may hold: a render that would pass it stops
/// (at the next list item), so a fan-out never builds a giant body.
#[doc(hidden)]
pub struct Out {
    buf: Vec<u8>,
    cap: usize,
}

/// Relationships loaded after the plan (lazy mode), keyed by parent.
#[doc(hidden)]
pub type Filled = HashMap<(Entity, i64, u8, EdgeArgs), Vec<Obj>>;

/// Writes objects; `filled` holds what the lazy pass loaded.
#[doc(hidden)]
pub struct Writer<'a> {
    filled: &'a Filled,
}

fn status_name(s: OrderStatus) -> &'static [u8] {
    match s {
        OrderStatus::Pending => b"\"PENDING\"",
        OrderStatus::Completed => b"\"COMPLETED\"",
        OrderStatus::Shipped => b"\"SHIPPED\"",
        OrderStatus::Cancelled => b"\"CANCELLED\"",
    }
}

/// Writes one column value, as its GraphQL type is serialised (keys are [`What::Id`]).
#[inline]
fn value(out: &mut Vec<u8>, v: &Val) -> Step {
    match v {
        Val::Int(n) => json::push_i64(out, *n),
        Val::Text(s) => json::push_str(out, s),
        Val::Null => out.extend_from_slice(b"null"),
        Val::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        // The same text as the `DateTime` scalar.
        Val::Time(t) => json::push_str(out, &t.to_rfc3339()),
        Val::Money(d) => json::push_decimal(out, d),
        Val::Status(s) => out.extend_from_slice(status_name(*s)),
        Val::Role(Role::Customer) => out.extend_from_slice(b"\"CUSTOMER\""),
        Val::Role(Role::Admin) => out.extend_from_slice(b"\"ADMIN\""),
        Val::Float(f) if f.is_finite() => {
            use std::io::Write as _;
            let _ = write!(out, "{f}");
        }
        Val::Float(_) => out.extend_from_slice(b"null"),
        Val::Absent => return Err(Stop::Missing),
    }
    Ok(())
}

/// Writes an aggregate object.
fn aggregate(
    out: &mut Vec<u8>,
    entity: Entity,
    parts: &[AggPart],
    what: &[(AggFunc, u8)],
    row: &AggRow,
) -> Step {
    let names = &AGG_TYPES[entity as usize];
    out.push(b'{');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&part.key);
        match &part.what {
            AggWhat::Typename(n) => json::push_str(out, n),
            AggWhat::Count => json::push_i64(out, row.count),
            AggWhat::Func(func, cols) => {
                let type_name = AggFunc::ALL
                    .iter()
                    .position(|f| f == func)
                    .map_or("", |p| names[p + 1]);
                out.push(b'{');
                for (j, (key, col)) in cols.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key);
                    match col {
                        None => json::push_str(out, type_name),
                        Some(col) => {
                            let slot = what
                                .iter()
                                .position(|w| *w == (*func, *col))
                                .ok_or(Stop::Missing)?;
                            value(out, row.values.get(slot).ok_or(Stop::Missing)?)?;
                        }
                    }
                }
                out.push(b'}');
            }
        }
    }
    out.push(b'}');
    Ok(())
}

impl Writer<'_> {
    fn one<'o>(&'o self, o: &'o Obj, rel: u8) -> Option<&'o Obj> {
        o.one(rel).or_else(|| {
            self.filled
                .get(&(o.entity(), o.id(), rel, EdgeArgs::default()))
                .and_then(|v| v.first())
        })
    }

    fn many<'o>(&'o self, o: &'o Obj, rel: u8, args: &EdgeArgs) -> Option<&'o [Obj]> {
        o.many(rel, args).or_else(|| {
            self.filled
                .get(&(o.entity(), o.id(), rel, args.clone()))
                .map(Vec::as_slice)
        })
    }

    fn object(&self, o: &Obj, sel: &[Compiled], out: &mut Out) -> Step {
        let row = &o.0.row;
        out.buf.push(b'{');
        for (i, c) in sel.iter().enumerate() {
            if i > 0 {
                out.buf.push(b',');
            }
            out.buf.extend_from_slice(&c.key);
            match &c.what {
                What::Typename(n) => json::push_str(&mut out.buf, n),
                What::Id(at) => match row.get(*at) {
                    Val::Int(id) => json::push_id(&mut out.buf, *id),
                    _ => return Err(Stop::Missing),
                },
                What::Column(at) => value(&mut out.buf, row.get(*at))?,
                What::One(rel, s) => {
                    self.object(self.one(o, *rel).ok_or(Stop::Missing)?, s, out)?
                }
                What::Many(rel, args, s) => {
                    self.list(self.many(o, *rel, args).ok_or(Stop::Missing)?, s, out)?
                }
                What::Conn(rel, args, parts) => {
                    let rows = self.many(o, *rel, args).ok_or(Stop::Missing)?;
                    let total = conn_counts(parts)
                        .then(|| o.aggregate(*rel, &args.matching()).map(|(_, a)| a.count))
                        .flatten();
                    self.connection(rows, args, total, parts, out)?
                }
                What::Agg(rel, args, parts) => {
                    let (what, agg) = o.aggregate(*rel, args).ok_or(Stop::Missing)?;
                    let target = Rel {
                        from: o.entity(),
                        index: *rel,
                    }
                    .target();
                    aggregate(&mut out.buf, target, parts, what, agg)?
                }
            }
        }
        out.buf.push(b'}');
        Ok(())
    }

    /// Writes a connection object over `rows`, as loaded for `args`' page (its rows plus one
    /// when more follow in the page's direction; reversed for `last`).
    fn connection(
        &self,
        rows: &[Obj],
        args: &EdgeArgs,
        total: Option<i64>,
        parts: &[ConnPart],
        out: &mut Out,
    ) -> Step {
        let page = args.page.as_ref().ok_or(Stop::Missing)?;
        let size = usize::try_from(page.size).unwrap_or(0);
        let more = rows.len() > size;
        let mut shown: Vec<&Obj> = rows.iter().take(size).collect();
        if page.backward {
            shown.reverse();
        }
        let target = shown.first().map(|o| o.entity());
        let order_text = target.map(|e| cursor::order_text(e, args.order));
        let cursor_of =
            |o: &Obj| cursor::encode(args.order, order_text.as_deref().unwrap_or(""), &o.0.row);
        out.buf.push(b'{');
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.buf.push(b',');
            }
            out.buf.extend_from_slice(&part.key);
            match &part.what {
                ConnWhat::Typename(n) => json::push_str(&mut out.buf, n),
                ConnWhat::TotalCount => json::push_i64(&mut out.buf, total.ok_or(Stop::Missing)?),
                ConnWhat::Nodes(sel) => {
                    out.buf.push(b'[');
                    for (j, o) in shown.iter().enumerate() {
                        if out.buf.len() > out.cap {
                            return Err(Stop::Over);
                        }
                        if j > 0 {
                            out.buf.push(b',');
                        }
                        self.object(o, sel, out)?;
                    }
                    out.buf.push(b']');
                }
                ConnWhat::Edges(fields) => {
                    out.buf.push(b'[');
                    for (j, o) in shown.iter().enumerate() {
                        if out.buf.len() > out.cap {
                            return Err(Stop::Over);
                        }
                        if j > 0 {
                            out.buf.push(b',');
                        }
                        out.buf.push(b'{');
                        for (k, (key, what)) in fields.iter().enumerate() {
                            if k > 0 {
                                out.buf.push(b',');
                            }
                            out.buf.extend_from_slice(key);
                            match what {
                                EdgeWhat::Typename(n) => json::push_str(&mut out.buf, n),
                                EdgeWhat::Cursor => json::push_str(&mut out.buf, &cursor_of(o)),
                                EdgeWhat::Node(sel) => self.object(o, sel, out)?,
                            }
                        }
                        out.buf.push(b'}');
                    }
                    out.buf.push(b']');
                }
                ConnWhat::PageInfo(fields) => {
                    out.buf.push(b'{');
                    for (k, (key, what)) in fields.iter().enumerate() {
                        if k > 0 {
                            out.buf.push(b',');
                        }
                        out.buf.extend_from_slice(key);
                        let b = &mut out.buf;
                        match what {
                            PageWhat::Typename => json::push_str(b, "PageInfo"),
                            PageWhat::HasNext => push_bool(b, more && !page.backward),
                            PageWhat::HasPrevious => push_bool(b, more && page.backward),
                            PageWhat::Start | PageWhat::End => {
                                let at = if matches!(what, PageWhat::Start) {
                                    shown.first()
                                } else {
                                    shown.last()
                                };
                                match at {
                                    Some(o) => json::push_str(b, &cursor_of(o)),
                                    None => b.extend_from_slice(b"null"),
                                }
                            }
                        }
                    }
                    out.buf.push(b'}');
                }
            }
        }
        out.buf.push(b'}');
        Ok(())
    }

    fn list(&self, items: &[Obj], sel: &[Compiled], out: &mut Out) -> Step {
        out.buf.push(b'[');
        for (i, item) in items.iter().enumerate() {
            if out.buf.len() > out.cap {
                return Err(Stop::Over);
            }
            if i > 0 {
                out.buf.push(b',');
            }
            self.object(item, sel, out)?;
        }
        out.buf.push(b']');
        Ok(())
    }
}

fn push_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
}

/// The plan of a lazily loaded level: the rows' own columns that any of `sels` reads.
fn scalars_of(entity: Entity, sels: &[&[Compiled]]) -> Node {
    let cols = entity.desc().columns;
    let mut scalars: Vec<String> = sels
        .iter()
        .flat_map(|sel| sel.iter())
        .filter_map(|c| match c.what {
            What::Id(at) | What::Column(at) => cols[at].field.map(str::to_owned),
            _ => None,
        })
        .collect();
    scalars.sort();
    scalars.dedup();
    // The aggregates of the level are planned with it (they are no relationship to fill).
    let mut aggregates: Vec<AggBatch> = Vec::new();
    for c in sels.iter().flat_map(|sel| sel.iter()) {
        if let What::Conn(index, args, parts) = &c.what
            && conn_counts(parts)
        {
            let edge = Rel {
                from: entity,
                index: *index,
            };
            let args = args.matching();
            if !aggregates.iter().any(|a| a.edge == edge && a.args == args) {
                aggregates.push(AggBatch {
                    edge,
                    args,
                    values: Vec::new(),
                });
            }
            continue;
        }
        let What::Agg(index, args, parts) = &c.what else {
            continue;
        };
        let edge = Rel {
            from: entity,
            index: *index,
        };
        let values = parts.iter().flat_map(|p| match &p.what {
            AggWhat::Func(func, cols) => cols
                .iter()
                .filter_map(|(_, col)| col.map(|c| (*func, c)))
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        });
        match aggregates
            .iter_mut()
            .find(|a| a.edge == edge && a.args == *args)
        {
            Some(a) => a.values.extend(values),
            None => aggregates.push(AggBatch {
                edge,
                args: args.clone(),
                values: values.collect(),
            }),
        }
    }
    for a in &mut aggregates {
        a.values.sort_unstable();
        a.values.dedup();
    }
    Node {
        entity,
        joins: Vec::new(),
        batches: Vec::new(),
        scalars,
        aggregates,
    }
}

/// The relationships selected by `sels` (selections of the same objects), each once with
/// every sub-selection that reads it (`a: orders { id } b: orders { status }`).
type Edges<'a> = Vec<(u8, Option<EdgeArgs>, Vec<&'a [Compiled]>)>;

fn edges<'a>(sels: &[&'a [Compiled]]) -> Edges<'a> {
    let mut out: Edges<'a> = Vec::new();
    for c in sels.iter().flat_map(|sel| sel.iter()) {
        let (index, args, subs) = match &c.what {
            What::One(index, sub) => (*index, None, vec![sub.as_slice()]),
            What::Many(index, args, sub) => (*index, Some(args.clone()), vec![sub.as_slice()]),
            What::Conn(index, args, parts) => (*index, Some(args.clone()), conn_nodes(parts)),
            _ => continue,
        };
        match out.iter_mut().find(|(i, a, _)| *i == index && *a == args) {
            Some((_, _, found)) => found.extend(subs),
            None => out.push((index, args, subs)),
        }
    }
    out
}

/// Loads, level by level, every relationship of `sels` that `objs` lack: one DataLoader call
/// per level, relationship and argument set (one statement), never one per parent.
fn fill<'a>(
    rc: &'a RequestContext,
    loader: Option<&'a LazyLoader>,
    entity: Entity,
    objs: Vec<Obj>,
    sels: Vec<&'a [Compiled]>,
    filled: &'a mut Filled,
) -> BoxFuture<'a, AppResult<()>> {
    Box::pin(async move {
        for (index, args, subs) in edges(&sels) {
            let rel = Rel {
                from: entity,
                index,
            };
            let key = |o: &Obj| (entity, o.id(), index, args.clone().unwrap_or_default());
            // A row may occur under several parents (a product on many orders): each id once.
            let mut missing: Vec<&Obj> = objs
                .iter()
                .filter(|o| {
                    let loaded = match &args {
                        None => o.one(index).is_some(),
                        Some(a) => o.many(index, a).is_some(),
                    };
                    !loaded && !filled.contains_key(&key(o))
                })
                .collect();
            missing.sort_unstable_by_key(|o| o.id());
            missing.dedup_by_key(|o| o.id());
            if !missing.is_empty() {
                if rc.strict {
                    return Err(AppError::Unplanned(format!(
                        "{} was not loaded by the plan (strict mode)",
                        rel.path()
                    )));
                }
                let loader = loader.ok_or_else(|| AppError::internal("no lazy loader"))?;
                let mut node = scalars_of(rel.target(), &subs);
                if let Some(a) = args.as_ref().filter(|a| a.page.is_some()) {
                    node.read_sort_keys(a.order);
                }
                let node = Arc::new(node);
                match &args {
                    Some(args) => {
                        let parents = missing.iter().map(|o| o.id()).collect();
                        let mut found = loader.many(rel, args.clone(), node, parents).await?;
                        for o in &missing {
                            let children = found.remove(&o.id()).unwrap_or_default();
                            filled.insert(key(o), children);
                        }
                    }
                    None => {
                        let crate::entities::Link::ForeignKey(fk) = rel.desc().link else {
                            return Err(AppError::internal("a to-one edge without a key"));
                        };
                        let ids = missing.iter().map(|o| o.0.row.key(fk)).collect();
                        let found = loader.one(node, ids).await?;
                        for o in &missing {
                            let target = found.get(&o.0.row.key(fk)).cloned().ok_or_else(|| {
                                AppError::NotFound(format!(
                                    "{}: the related object does not exist",
                                    rel.path()
                                ))
                            })?;
                            filled.insert(key(o), vec![target]);
                        }
                    }
                }
            }
            let mut next: Vec<Obj> = Vec::new();
            for o in &objs {
                let w = Writer { filled: &*filled };
                match &args {
                    None => next.extend(w.one(o, index).cloned()),
                    Some(a) => next.extend(w.many(o, index, a).into_iter().flatten().cloned()),
                }
            }
            fill(rc, loader, rel.target(), next, subs, filled).await?;
        }
        Ok(())
    })
}

/// How a rendered value is shaped: one object, a list, an optional object, or a connection.
pub trait Shape: OutputType {
    /// Its compiled selection.
    #[doc(hidden)]
    type Sel: Send + Sync;
    /// The entity of its objects.
    #[doc(hidden)]
    fn entity() -> Entity;
    /// Compiles the selection of a field of this shape.
    #[doc(hidden)]
    fn compile(field: &SelectionField<'_>) -> Result<Self::Sel, String>;
    /// The selections of its objects, in a compiled selection.
    #[doc(hidden)]
    fn selections(sel: &Self::Sel) -> Vec<&[Compiled]>;
    /// Its objects.
    #[doc(hidden)]
    fn objs(&self) -> Vec<Obj>;
    /// Writes it.
    #[doc(hidden)]
    fn write(&self, w: &Writer<'_>, sel: &Self::Sel, out: &mut Out) -> Step;
}

/// The [`Shape`] items of the object shapes, whose selection is the objects' own.
macro_rules! object_shape {
    () => {
        type Sel = Vec<Compiled>;
        fn entity() -> Entity {
            T::ENTITY
        }
        fn compile(field: &SelectionField<'_>) -> Result<Vec<Compiled>, String> {
            compile(T::ENTITY, field)
        }
        fn selections(sel: &Vec<Compiled>) -> Vec<&[Compiled]> {
            vec![sel.as_slice()]
        }
    };
}

impl<T: Typed> Shape for Connection<T> {
    type Sel = Vec<ConnPart>;
    fn entity() -> Entity {
        T::ENTITY
    }
    fn compile(field: &SelectionField<'_>) -> Result<Vec<ConnPart>, String> {
        compile_conn(T::ENTITY, field)
    }
    fn selections(sel: &Vec<ConnPart>) -> Vec<&[Compiled]> {
        conn_nodes(sel)
    }
    fn objs(&self) -> Vec<Obj> {
        self.objs.clone()
    }
    fn write(&self, w: &Writer<'_>, sel: &Vec<ConnPart>, out: &mut Out) -> Step {
        w.connection(&self.objs, &self.args, self.total, sel, out)
    }
}

impl<T: Typed> OutputType for Connection<T> {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed(CONN_TYPES[T::ENTITY as usize][0])
    }

    fn create_type_info(registry: &mut Registry) -> String {
        register_connection(T::ENTITY, registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve(self, ctx, field).await
    }
}

impl<T: Typed> Shape for Object<T> {
    object_shape!();
    fn objs(&self) -> Vec<Obj> {
        vec![self.0.clone()]
    }
    fn write(&self, w: &Writer<'_>, sel: &Vec<Compiled>, out: &mut Out) -> Step {
        w.object(&self.0, sel, out)
    }
}

impl<T: Typed> Shape for Vec<Object<T>> {
    object_shape!();
    fn objs(&self) -> Vec<Obj> {
        self.iter().map(|o| o.0.clone()).collect()
    }
    fn write(&self, w: &Writer<'_>, sel: &Vec<Compiled>, out: &mut Out) -> Step {
        out.buf.push(b'[');
        for (i, item) in self.iter().enumerate() {
            if out.buf.len() > out.cap {
                return Err(Stop::Over);
            }
            if i > 0 {
                out.buf.push(b',');
            }
            w.object(&item.0, sel, out)?;
        }
        out.buf.push(b']');
        Ok(())
    }
}

impl<T: Typed> Shape for Option<Object<T>> {
    object_shape!();
    fn objs(&self) -> Vec<Obj> {
        self.iter().map(|o| o.0.clone()).collect()
    }
    fn write(&self, w: &Writer<'_>, sel: &Vec<Compiled>, out: &mut Out) -> Step {
        match self {
            Some(v) => w.object(&v.0, sel, out),
            None => {
                out.buf.extend_from_slice(b"null");
                Ok(())
            }
        }
    }
}

fn field_error(
    ctx: &ContextSelectionSet<'_>,
    field: &Positioned<Field>,
    err: AppError,
) -> ServerError {
    let err = async_graphql::Error::from(err).into_server_error(field.pos);
    ctx.set_error_path(err)
}

/// Writes `value` for `field`: compiles the selection, fills what the plan did not load
/// (lazy mode), and writes the JSON text, which `json::write_value` splices into the response.
pub async fn resolve<S: Shape>(
    value: &S,
    ctx: &ContextSelectionSet<'_>,
    field: &Positioned<Field>,
) -> ServerResult<Value> {
    let rc = RequestContext::of(ctx).map_err(|e| field_error(ctx, field, e))?;
    let sel = {
        let fctx = ctx.with_field(field);
        S::compile(&fctx.field()).map_err(|e| field_error(ctx, field, AppError::internal(e)))?
    };
    let loader = ctx.data_opt::<LazyLoader>();
    match write_within_budget(rc, loader, value, &sel).await {
        Ok(bytes) => Ok(Value::Binary(bytes.into())),
        Err(Refusal::Over(cap)) => Err(field_error(ctx, field, too_large(cap, ""))),
        Err(Refusal::Failed(e)) => Err(field_error(ctx, field, e)),
    }
}

/// Why a value was not written.
enum Refusal {
    /// It would pass the request's byte budget, which had this many bytes left.
    Over(usize),
    /// Anything else.
    Failed(AppError),
}

/// The refusal of an answer over the byte budget; `after` says what became of the request.
fn too_large(cap: usize, after: &str) -> AppError {
    AppError::LimitExceeded(format!(
        "the response would be larger than {cap} bytes (EAGERQL_MAX_RESPONSE_BYTES){after}; \
         select less, or page with `first`"
    ))
}

/// Writes `value` with its compiled selection within what is left of the request's byte
/// budget, and spends what it wrote. What the plan did not load (lazy mode) is filled first
/// through `loader`. The render stops at the budget, so an answer over it is never built whole.
async fn write_within_budget<S: Shape>(
    rc: &RequestContext,
    loader: Option<&LazyLoader>,
    value: &S,
    sel: &S::Sel,
) -> Result<Vec<u8>, Refusal> {
    let cap = rc.output.left();
    let mut filled = Filled::new();
    let mut out = Out {
        buf: Vec::with_capacity(512),
        cap,
    };
    let mut result = value.write(&Writer { filled: &filled }, sel, &mut out);
    if let Err(Stop::Missing) = result {
        fill(
            rc,
            loader,
            S::entity(),
            value.objs(),
            S::selections(sel),
            &mut filled,
        )
        .await
        .map_err(Refusal::Failed)?;
        out.buf.clear();
        result = value.write(&Writer { filled: &filled }, sel, &mut out);
    }
    match result {
        Ok(()) => {
            rc.output.spend(out.buf.len());
            // The bytes live until the whole response is written: keep no spare capacity
            // (thousands of small objects, each with a grown buffer, added up to megabytes).
            out.buf.shrink_to_fit();
            Ok(out.buf)
        }
        Err(Stop::Over) => Err(Refusal::Over(cap)),
        Err(Stop::Missing) => Err(Refusal::Failed(AppError::internal(
            "a selected field was not loaded",
        ))),
    }
}

/// A mutation's answer, written inside its transaction before the commit: an answer over
/// the request's byte budget (`EAGERQL_MAX_RESPONSE_BYTES`) fails the mutation and rolls its
/// write back, so a client is never told "too large" about a write that happened. Spliced
/// into the response as it is, under each response key it was written for.
pub struct Written<S> {
    /// `(response key, JSON text)`.
    parts: Vec<(String, Value)>,
    shape: std::marker::PhantomData<S>,
}

impl<S: Shape> Written<S> {
    /// Writes `value` for the field `ctx` resolves (a mutation root field), reading what the
    /// plan did not load (lazy mode) in the mutation's transaction `tx`.
    pub async fn field(ctx: &Context<'_>, tx: &Session, value: &S) -> AppResult<Self> {
        let field = ctx.field();
        let key = field.alias().unwrap_or(field.name()).to_owned();
        let sel = S::compile(&field).map_err(AppError::internal)?;
        let bytes = write_in(ctx, tx, value, &sel).await?;
        Ok(Written {
            parts: vec![(key, bytes)],
            shape: std::marker::PhantomData,
        })
    }

    /// Writes `value` for every occurrence of the child field `child` of the field `ctx`
    /// resolves (`login { user { ... } }`; aliases each get their own text).
    pub async fn child(ctx: &Context<'_>, tx: &Session, child: &str, value: &S) -> AppResult<Self> {
        let mut parts = Vec::new();
        for field in ctx.field().selection_set().filter(|f| f.name() == child) {
            let key = field.alias().unwrap_or(child).to_owned();
            let sel = S::compile(&field).map_err(AppError::internal)?;
            parts.push((key, write_in(ctx, tx, value, &sel).await?));
        }
        Ok(Written {
            parts,
            shape: std::marker::PhantomData,
        })
    }
}

/// Writes a mutation's answer in its transaction (see [`Written`]).
async fn write_in<S: Shape>(
    ctx: &Context<'_>,
    tx: &Session,
    value: &S,
    sel: &S::Sel,
) -> AppResult<Value> {
    let rc = RequestContext::of(ctx)?;
    // Lazy mode reads what the plan left in the transaction, which sees the write.
    let loader: Option<LazyLoader> = (!rc.strict).then(|| Arc::new(RequestLoader::new(tx.clone())));
    match write_within_budget(rc, loader.as_ref(), value, sel).await {
        Ok(bytes) => Ok(Value::Binary(bytes.into())),
        Err(Refusal::Over(cap)) => Err(too_large(
            cap,
            ", so the mutation was rolled back and nothing was written",
        )),
        Err(Refusal::Failed(e)) => Err(e),
    }
}

impl<S: Shape> OutputType for Written<S> {
    fn type_name() -> Cow<'static, str> {
        S::type_name()
    }

    fn qualified_type_name() -> String {
        S::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        S::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let key = field.node.response_key().node.as_str();
        self.parts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                field_error(
                    ctx,
                    field,
                    AppError::internal("a mutation's answer was not written"),
                )
            })
    }
}

impl<T: Typed> OutputType for Object<T> {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed(T::ENTITY.desc().name)
    }

    fn create_type_info(registry: &mut Registry) -> String {
        register_object::<T>(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        resolve(self, ctx, field).await
    }
}

impl<T: Shape> OutputType for Rendered<T> {
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
        resolve(&self.0, ctx, field).await
    }
}

/// A root aggregate (`Query.ordersAggregate`): what was aggregated and the values, written by
/// the same aggregate writer as the edges' aggregates.
pub struct RootAggregate<T> {
    /// What was aggregated, `(function, column)`, in the order of `row.values`.
    pub what: Vec<(AggFunc, u8)>,
    /// The values.
    pub row: AggRow,
    /// The entity.
    pub marker: std::marker::PhantomData<T>,
}

/// What a root aggregate field's selection asks for: `(function, column)`, sorted, no repeats.
pub fn aggregate_values(entity: Entity, field: &SelectionField<'_>) -> Vec<(AggFunc, u8)> {
    let mut out = Vec::new();
    for part in field.selection_set() {
        let Some(func) = AggFunc::ALL.iter().find(|f| f.name() == part.name()) else {
            continue;
        };
        for c in part.selection_set() {
            if let Some(at) = entity.column(c.name()) {
                out.push((*func, at as u8));
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

impl<T: Typed> OutputType for RootAggregate<T> {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed(AGG_TYPES[T::ENTITY as usize][0])
    }

    fn create_type_info(registry: &mut Registry) -> String {
        register_aggregate(T::ENTITY, registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        let parts = {
            let fctx = ctx.with_field(field);
            compile_agg(T::ENTITY, &fctx.field())
                .map_err(|e| field_error(ctx, field, AppError::internal(e)))?
        };
        let mut out = Vec::with_capacity(256);
        aggregate(&mut out, T::ENTITY, &parts, &self.what, &self.row).map_err(|_| {
            field_error(
                ctx,
                field,
                AppError::internal("an aggregate was not loaded"),
            )
        })?;
        Ok(Value::Binary(out.into()))
    }
}
