//! The one renderer: every entity object in a response (query roots, mutation results,
//! analytics rows) is written as JSON here, field by field, by the kinds of the entity's
//! description. A field-level rule (a guard, a mask) has this one place to live.
//!
//! Executing a preloaded object graph field by field through async-graphql (a future, a
//! context and a lookup per field) costs far more than the SQL, so every object is written
//! with a plain loop over its [`View`]: the tree of response keys, column positions and edge
//! arguments the planner reads from the same selection as the plan (`planner::view`). A
//! root field's view comes with its plan; the renderer never reads a selection itself.
//!
//! Relationships the plan did not load (only in lazy mode, `EAGERQL_PLAN=lazy`) are loaded
//! before writing, level by level, through the request's DataLoader ([`super::lazy`]); in
//! strict mode they are an `UNPLANNED_LOAD` error instead.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::parser::types::Field as AstField;
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, OutputType, Positioned, ServerError, ServerResult, Value,
};
use futures_util::future::BoxFuture;

use super::lazy::{LazyLoader, RequestLoader};
use super::lookahead::selection;
use super::types::{Connection, Obj, ObjData, Object, Objs, Typed, register_entity};
use super::{RequestContext, preload};
use crate::db::Session;
use crate::db::load::AggRow;
use crate::entities::{AggFunc, Entity, Rel, Val};
use crate::error::{AppError, AppResult};
use crate::json;
use crate::planner::view::{
    self, AggPart, AggWhat, Compiled, ConnPart, ConnWhat, EdgeWhat, PageWhat, What,
    aggregate_names, conn_counts, conn_nodes,
};
use crate::planner::{EdgeArgs, Field, Limits, PlanError, View, cursor};

/// A root value (an object, a list or an optional object) written by the renderer in one
/// go, with the view its root field's plan made (`None`: compiled from the field when it is
/// written).
pub struct Rendered<T>(pub T, pub Option<Arc<View>>);

impl<T> Rendered<T> {
    /// A value written with the view of its root field's plan.
    pub fn planned(value: T, view: &Arc<View>) -> Self {
        Rendered(value, Some(view.clone()))
    }
}

/// The view of the field `ctx` resolves, compiled from its selection.
fn view_of(
    ctx: &Context<'_>,
    compile: impl FnOnce(&[crate::planner::Field], crate::planner::Limits) -> Result<View, PlanError>,
) -> AppResult<View> {
    let rc = RequestContext::of(ctx)?;
    let fields = selection(&ctx.field()).map_err(|e| AppError::BadInput(e.message))?;
    Ok(compile(&fields, rc.limits)?)
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
pub type Filled = HashMap<(Entity, i64, u8, EdgeArgs), Objs>;

/// Writes objects; `filled` holds what the lazy pass loaded.
#[doc(hidden)]
pub struct Writer<'a> {
    filled: &'a Filled,
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
        Val::Enum(e, i) => json::push_str(out, e.values[usize::from(*i)].0),
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
    let names = aggregate_names(entity);
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
    fn one<'o>(&'o self, o: &'o ObjData, rel: u8) -> Option<&'o ObjData> {
        match o.one(rel) {
            Some(one) => Some(one),
            None => self
                .filled
                .get(&(o.entity(), o.id(), rel, EdgeArgs::default()))
                .and_then(|objs| objs.as_slice().first()),
        }
    }

    fn many<'o>(&'o self, o: &'o ObjData, rel: u8, args: &EdgeArgs) -> Option<&'o Objs> {
        o.many(rel, args)
            .or_else(|| self.filled.get(&(o.entity(), o.id(), rel, args.clone())))
    }

    fn object(&self, o: &ObjData, sel: &[Compiled], out: &mut Out) -> Step {
        let row = &o.row;
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
                    let items = self.many(o, *rel, args).ok_or(Stop::Missing)?;
                    self.list(items.as_slice(), s, out)?
                }
                What::Conn(rel, args, parts) => {
                    let rows = self.many(o, *rel, args).ok_or(Stop::Missing)?.as_slice();
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
        rows: &[ObjData],
        args: &EdgeArgs,
        total: Option<i64>,
        parts: &[ConnPart],
        out: &mut Out,
    ) -> Step {
        let page = args.page.as_ref().ok_or(Stop::Missing)?;
        let more = page.more(rows.len());
        let mut shown: Vec<&ObjData> = rows.iter().take(page.shown_of(rows.len())).collect();
        if page.backward {
            shown.reverse();
        }
        let target = shown.first().map(|o| o.entity());
        let order_text = target.map(|e| cursor::order_text(e, args.order));
        let cursor_of =
            |o: &ObjData| cursor::encode(args.order, order_text.as_deref().unwrap_or(""), &o.row);
        out.buf.push(b'{');
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                out.buf.push(b',');
            }
            out.buf.extend_from_slice(&part.key);
            match &part.what {
                ConnWhat::Typename(n) => json::push_str(&mut out.buf, n),
                ConnWhat::TotalCount => json::push_i64(&mut out.buf, total.ok_or(Stop::Missing)?),
                ConnWhat::Nodes(sel) => array(out, shown.iter().copied(), |o, out| {
                    self.object(o, sel, out)
                })?,
                ConnWhat::Edges(fields) => {
                    array(out, shown.iter().copied(), |o, out| {
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
                        Ok(())
                    })?;
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

    fn list(&self, items: &[ObjData], sel: &[Compiled], out: &mut Out) -> Step {
        array(out, items, |o, out| self.object(o, sel, out))
    }
}

/// Writes `[item,...]`, each item by `item`; stops at the byte budget before an item, so a
/// fan-out never builds a giant body.
#[inline]
fn array<'o>(
    out: &mut Out,
    items: impl IntoIterator<Item = &'o ObjData>,
    mut item: impl FnMut(&'o ObjData, &mut Out) -> Step,
) -> Step {
    out.buf.push(b'[');
    for (i, o) in items.into_iter().enumerate() {
        if out.buf.len() > out.cap {
            return Err(Stop::Over);
        }
        if i > 0 {
            out.buf.push(b',');
        }
        item(o, out)?;
    }
    out.buf.push(b']');
    Ok(())
}

fn push_bool(out: &mut Vec<u8>, b: bool) {
    out.extend_from_slice(if b { b"true" } else { b"false" });
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
                let mut node = view::level_plan(rel.target(), &subs);
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
                        let ids = missing.iter().map(|o| o.row.key(fk)).collect();
                        let found = loader.one(node, ids).await?;
                        for o in &missing {
                            let target = found.get(&o.row.key(fk)).cloned().ok_or_else(|| {
                                AppError::NotFound(format!(
                                    "{}: the related object does not exist",
                                    rel.path()
                                ))
                            })?;
                            filled.insert(key(o), target.into());
                        }
                    }
                }
            }
            let mut next: Vec<Obj> = Vec::new();
            for o in &objs {
                let w = Writer { filled: &*filled };
                match &args {
                    None => match o.one(index) {
                        Some(one) => next.push(one.clone()),
                        None => {
                            next.extend(filled.get(&key(o)).and_then(|objs| objs.handles().next()))
                        }
                    },
                    Some(a) => next.extend(w.many(o, index, a).into_iter().flat_map(Objs::handles)),
                }
            }
            fill(rc, loader, rel.target(), next, subs, filled).await?;
        }
        Ok(())
    })
}

/// A value the renderer writes: its objects (all of one entity) and how they are written.
pub trait Writes: Send + Sync {
    /// The entity of its objects.
    #[doc(hidden)]
    fn entity(&self) -> Entity;
    /// Its objects.
    #[doc(hidden)]
    fn objs(&self) -> Vec<Obj>;
    /// Writes it with its view.
    #[doc(hidden)]
    fn write(&self, w: &Writer<'_>, view: &View, out: &mut Out) -> Step;
}

/// A written value whose schema type is static (a mutation's or a report's answer), so its
/// view can be compiled from a selection: one object, a list or an optional object.
pub trait Shape: OutputType + Writes {
    /// Compiles the selection of a field of this shape (see [`View`]).
    #[doc(hidden)]
    fn view(fields: &[Field], limits: Limits) -> Result<View, PlanError>;
}

/// The compiled selection of an object view (any other view was made for another shape).
fn object_view(view: &View) -> Result<&[Compiled], Stop> {
    match view {
        View::Object(sel) => Ok(sel),
        _ => Err(Stop::Missing),
    }
}

/// A generated root's answer (`Query.order`, `Query.orders`, `Query.ordersConnection`).
pub enum Answer {
    /// One row, or none.
    One(Entity, Option<Obj>),
    /// A list.
    List(Entity, Vec<Obj>),
    /// A connection's page.
    Page(Connection),
}

impl Writes for Answer {
    fn entity(&self) -> Entity {
        match self {
            Answer::One(e, _) | Answer::List(e, _) => *e,
            Answer::Page(c) => c.entity,
        }
    }
    fn objs(&self) -> Vec<Obj> {
        match self {
            Answer::One(_, o) => o.iter().cloned().collect(),
            Answer::List(_, objs) => objs.clone(),
            Answer::Page(c) => c.objs.handles().collect(),
        }
    }
    fn write(&self, w: &Writer<'_>, view: &View, out: &mut Out) -> Step {
        match self {
            Answer::One(_, o) => write_one(w, o.as_deref(), view, out),
            Answer::List(_, objs) => write_list(w, objs.iter().map(|o| &**o), view, out),
            Answer::Page(c) => {
                let View::Connection(parts) = view else {
                    return Err(Stop::Missing);
                };
                w.connection(c.objs.as_slice(), &c.args, c.total, parts, out)
            }
        }
    }
}

fn write_one(w: &Writer<'_>, obj: Option<&ObjData>, view: &View, out: &mut Out) -> Step {
    match obj {
        Some(o) => w.object(o, object_view(view)?, out),
        None => {
            out.buf.extend_from_slice(b"null");
            Ok(())
        }
    }
}

fn write_list<'o>(
    w: &Writer<'_>,
    objs: impl Iterator<Item = &'o ObjData>,
    view: &View,
    out: &mut Out,
) -> Step {
    let sel = object_view(view)?;
    array(out, objs, |o, out| w.object(o, sel, out))
}

/// The [`Shape`] of the object shapes of `T`, whose selection is the objects' own.
macro_rules! object_shape {
    ($ty:ty, $objs:expr, $write:expr) => {
        impl<T: Typed> Writes for $ty {
            fn entity(&self) -> Entity {
                T::ENTITY
            }
            fn objs(&self) -> Vec<Obj> {
                #[allow(clippy::redundant_closure_call)]
                ($objs)(self)
            }
            fn write(&self, w: &Writer<'_>, view: &View, out: &mut Out) -> Step {
                #[allow(clippy::redundant_closure_call)]
                ($write)(self, w, view, out)
            }
        }
        impl<T: Typed> Shape for $ty {
            fn view(fields: &[Field], limits: Limits) -> Result<View, PlanError> {
                View::object(T::ENTITY, fields, limits)
            }
        }
    };
}

object_shape!(
    Object<T>,
    |o: &Object<T>| vec![o.0.clone()],
    |o: &Object<T>, w: &Writer<'_>, view: &View, out: &mut Out| w.object(
        &o.0,
        object_view(view)?,
        out
    )
);
object_shape!(
    Vec<Object<T>>,
    |v: &Vec<Object<T>>| v.iter().map(|o| o.0.clone()).collect(),
    |v: &Vec<Object<T>>, w: &Writer<'_>, view: &View, out: &mut Out| write_list(
        w,
        v.iter().map(|o| &*o.0),
        view,
        out
    )
);
object_shape!(
    Option<Object<T>>,
    |v: &Option<Object<T>>| v.iter().map(|o| o.0.clone()).collect(),
    |v: &Option<Object<T>>, w: &Writer<'_>, view: &View, out: &mut Out| write_one(
        w,
        v.as_ref().map(|o| &*o.0),
        view,
        out
    )
);

fn field_error(
    ctx: &ContextSelectionSet<'_>,
    field: &Positioned<AstField>,
    err: AppError,
) -> ServerError {
    let err = async_graphql::Error::from(err).into_server_error(field.pos);
    ctx.set_error_path(err)
}

/// Writes `value` for `field` with `view` (the root field's plan made it) or, without one, the
/// view compiled from the field; fills what the plan did not load (lazy mode), and writes the
/// JSON text, which `json::write_value` splices into the response.
pub async fn resolve<S: Shape>(
    value: &S,
    view: Option<&View>,
    ctx: &ContextSelectionSet<'_>,
    field: &Positioned<AstField>,
) -> ServerResult<Value> {
    let rc = RequestContext::of(ctx).map_err(|e| field_error(ctx, field, e))?;
    let compiled;
    let view = match view {
        Some(view) => view,
        None => {
            let fctx = ctx.with_field(field);
            compiled = view_of(&fctx, S::view).map_err(|e| field_error(ctx, field, e))?;
            &compiled
        }
    };
    let loader = ctx.data_opt::<LazyLoader>();
    written(write_within_budget(rc, loader, value, view).await, "")
        .map_err(|e| field_error(ctx, field, e))
}

/// Writes a generated root's answer with the view its plan made, for the field `ctx`
/// resolves (see [`resolve`]).
pub async fn write_answer(ctx: &Context<'_>, answer: &Answer, view: &View) -> AppResult<Value> {
    let rc = RequestContext::of(ctx)?;
    let loader = ctx.data_opt::<LazyLoader>();
    written(write_within_budget(rc, loader, answer, view).await, "")
}

/// The written JSON text as a value to splice, or why it was not written (`after` says
/// what became of the request when it was too large).
fn written(result: Result<Vec<u8>, Refusal>, after: &str) -> AppResult<Value> {
    match result {
        Ok(bytes) => Ok(Value::Binary(bytes.into())),
        Err(Refusal::Over(cap)) => Err(too_large(cap, after)),
        Err(Refusal::Failed(e)) => Err(e),
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

/// Writes `value` with its view within what is left of the request's byte budget, and
/// spends what it wrote. What the plan did not load (lazy mode) is filled first through
/// `loader`. The render stops at the budget, so an answer over it is never built whole.
async fn write_within_budget<S: Writes + ?Sized>(
    rc: &RequestContext,
    loader: Option<&LazyLoader>,
    value: &S,
    view: &View,
) -> Result<Vec<u8>, Refusal> {
    let cap = rc.output.left();
    let mut filled = Filled::new();
    let mut out = Out {
        buf: Vec::with_capacity(512),
        cap,
    };
    let mut result = value.write(&Writer { filled: &filled }, view, &mut out);
    if let Err(Stop::Missing) = result {
        fill(
            rc,
            loader,
            value.entity(),
            value.objs(),
            view.selections(),
            &mut filled,
        )
        .await
        .map_err(Refusal::Failed)?;
        out.buf.clear();
        result = value.write(&Writer { filled: &filled }, view, &mut out);
    }
    match result {
        // The budget is checked before each list item as it is written, and here for the
        // whole value: an object without lists (to-one edges, aliases) is bounded too.
        Ok(()) if out.buf.len() > cap => Err(Refusal::Over(cap)),
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
        let view = view_of(ctx, S::view)?;
        let bytes = write_in(ctx, tx, value, &view).await?;
        Ok(Written {
            parts: vec![(preload::key(ctx).to_owned(), bytes)],
            shape: std::marker::PhantomData,
        })
    }

    /// Writes `value` for every occurrence of the child field `child` of the field `ctx`
    /// resolves (`login { user { ... } }`; aliases each get their own text).
    pub async fn child(ctx: &Context<'_>, tx: &Session, child: &str, value: &S) -> AppResult<Self> {
        let limits = RequestContext::of(ctx)?.limits;
        let fields = selection(&ctx.field()).map_err(|e| AppError::BadInput(e.message))?;
        let mut parts = Vec::new();
        for field in fields.iter().filter(|f| f.name == child) {
            let view = S::view(&field.children, limits)?;
            parts.push((
                field.key().to_owned(),
                write_in(ctx, tx, value, &view).await?,
            ));
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
    view: &View,
) -> AppResult<Value> {
    let rc = RequestContext::of(ctx)?;
    // Lazy mode reads what the plan left in the transaction, which sees the write.
    let loader: Option<LazyLoader> = (!rc.strict).then(|| Arc::new(RequestLoader::new(tx.clone())));
    written(
        write_within_budget(rc, loader.as_ref(), value, view).await,
        ", so the mutation was rolled back and nothing was written",
    )
}

/// The type items of a wrapper that answers as the shape it wraps (its schema type is the
/// shape's).
macro_rules! answers_as {
    ($s:ident) => {
        fn type_name() -> Cow<'static, str> {
            $s::type_name()
        }

        fn qualified_type_name() -> String {
            $s::qualified_type_name()
        }

        fn create_type_info(registry: &mut Registry) -> String {
            $s::create_type_info(registry)
        }
    };
}

impl<S: Shape> OutputType for Written<S> {
    answers_as!(S);

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<AstField>,
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
        register_entity(T::ENTITY, registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<AstField>,
    ) -> ServerResult<Value> {
        resolve(self, None, ctx, field).await
    }
}

impl<T: Shape> OutputType for Rendered<T> {
    answers_as!(T);

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<AstField>,
    ) -> ServerResult<Value> {
        resolve(&self.0, self.1.as_deref(), ctx, field).await
    }
}

/// The view of the root aggregate field `ctx` resolves over `entity`, and what it
/// aggregates (`(function, column)`, the order of the values its statement reads).
pub fn aggregate_view(ctx: &Context<'_>, entity: Entity) -> AppResult<(View, Vec<(AggFunc, u8)>)> {
    let view = view_of(ctx, |fields, _| View::aggregate(entity, fields))?;
    let what = view.aggregated();
    Ok((view, what))
}

/// Writes a root aggregate (`Query.ordersAggregate`) with its view, what was aggregated and
/// the values, by the same aggregate writer as the edges' aggregates.
pub fn write_aggregate(
    entity: Entity,
    view: &View,
    what: &[(AggFunc, u8)],
    row: &AggRow,
) -> AppResult<Value> {
    let View::Aggregate(parts) = view else {
        return Err(AppError::internal("an aggregate without its view"));
    };
    let mut out = Vec::with_capacity(256);
    aggregate(&mut out, entity, parts, what, row)
        .map_err(|_| AppError::internal("an aggregate was not loaded"))?;
    Ok(Value::Binary(out.into()))
}
