//! Runs a plan: the root statement, then one statement per batch, level by level, and
//! assembles the object graph the field resolvers read.
//!
//! Batches come from the plan, never from a timer, so the statement count of a request is
//! exactly what the planner predicted: `1 + batches` per root field (fewer only when a level
//! comes back empty, since a batch with no parent ids is not sent).

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use async_graphql::Context;

use super::RequestContext;
use super::lookahead::selection;
use super::types::{Obj, ObjData, Objs};
use crate::db::load::{self, AggRow, Loaded, Parents, RootQuery};
use crate::db::{Reserved, Session};
use crate::entities::{AggFunc, Entity};
use crate::error::{AppError, AppResult};
use crate::planner::{self, EdgeArgs, Field, Filter, Node, Page, Planned, View};

/// The merged sub-selection of every occurrence of the sub-field `child` of the current field.
fn child_selection(ctx: &Context<'_>, child: &str) -> AppResult<Vec<Field>> {
    let fields = selection(&ctx.field()).map_err(|e| AppError::BadInput(e.message))?;
    Ok(fields
        .into_iter()
        .filter(|f| f.name == child)
        .flat_map(|f| f.children)
        .collect())
}

/// The response key of the current field (its alias, or its name).
pub fn key<'a>(ctx: &Context<'a>) -> &'a str {
    ctx.item.node.response_key().node.as_str()
}

/// The plan of the root field `ctx` resolves: the one its canonical form keeps, or made now
/// by `make` from the field's selection (and kept, when it depends on the form alone).
fn root_plan(
    ctx: &Context<'_>,
    make: impl FnOnce(&RequestContext, Vec<Field>) -> AppResult<Planned>,
) -> AppResult<Arc<Planned>> {
    let rc = RequestContext::of(ctx)?;
    let slot = rc.form.as_ref().and_then(|f| f.root_plan(key(ctx)));
    if let Some(kept) = slot.and_then(|s| s.get()) {
        return Ok(kept.clone());
    }
    let fields = selection(&ctx.field()).map_err(|e| AppError::BadInput(e.message))?;
    let planned = Arc::new(make(rc, fields)?);
    if let Some(slot) = slot {
        let _ = slot.set(planned.clone());
    }
    Ok(planned)
}

/// Plans the rows named by the sub-field `child` of the current field (for example `user` of
/// `topCustomers`): every occurrence (aliases, fragments) is merged into one plan, and its
/// statements are reserved in the request's budget. `extra` statements are reserved with it.
/// `None`: planning only, the field answers without its statements.
pub fn plan_child(
    ctx: &Context<'_>,
    child: &str,
    entity: Entity,
    extra: usize,
) -> AppResult<Option<Node>> {
    let rc = RequestContext::of(ctx)?;
    let node = plan_for(rc, entity, &child_selection(ctx, child)?)?;
    let reserved = rc.session.log().reserve_plan(
        key(ctx),
        extra + node.batch_statements(),
        || serde_json::json!({ "statement": "report", child: node.describe() }),
    )?;
    Ok((reserved == Reserved::Run).then_some(node))
}

/// The plan of a selection: every relationship (eager mode), or the rows' own columns only
/// (lazy mode, where relationships are loaded as they are resolved).
fn plan_for(rc: &RequestContext, entity: Entity, fields: &[Field]) -> AppResult<Node> {
    if rc.eager {
        Ok(planner::plan(entity, fields, rc.limits)?)
    } else {
        Ok(planner::plan_scalars(entity, fields, rc.limits)?)
    }
}

/// Plans the current field's selection for `entity` rows (or takes the plan its form
/// keeps), reserves its statements in the request's budget, and loads it with the request's
/// session; with the objects comes the field's view (what the renderer writes).
pub async fn load_root(
    ctx: &Context<'_>,
    entity: Entity,
    q: RootQuery,
) -> AppResult<(Vec<Obj>, Arc<View>)> {
    let rc = RequestContext::of(ctx)?;
    let planned = root_plan(ctx, |rc, fields| {
        Ok(Planned {
            view: Arc::new(View::object(entity, &fields, rc.limits)?),
            node: plan_for(rc, entity, &fields)?,
        })
    })?;
    let objs = load_node(ctx, &rc.session, &planned.node, q).await?;
    Ok((objs, planned.view.clone()))
}

/// [`load_root`] on a given session (a mutation's transaction, so that the result is read
/// as it was written).
pub async fn load_root_in(
    ctx: &Context<'_>,
    session: &Session,
    entity: Entity,
    q: RootQuery,
) -> AppResult<Vec<Obj>> {
    let fields = selection(&ctx.field()).map_err(|e| AppError::BadInput(e.message))?;
    load_planned(ctx, session, entity, &fields, q).await
}

/// Plans `fields` for `entity` rows and loads them on `session` (see [`load_node`]).
async fn load_planned(
    ctx: &Context<'_>,
    session: &Session,
    entity: Entity,
    fields: &[Field],
    q: RootQuery,
) -> AppResult<Vec<Obj>> {
    let node = plan_for(RequestContext::of(ctx)?, entity, fields)?;
    load_node(ctx, session, &node, q).await
}

/// Reserves a plan's statements and loads it on `session`: the root statement, then the
/// batches level by level.
async fn load_node(
    ctx: &Context<'_>,
    session: &Session,
    node: &Node,
    q: RootQuery,
) -> AppResult<Vec<Obj>> {
    let reserved = session
        .log()
        .reserve_plan(key(ctx), node.statements(), || node.describe())?;
    if reserved == Reserved::PlanOnly {
        return Ok(Vec::new());
    }
    let parents = match q {
        RootQuery::ById(_) => Parents::One,
        _ => Parents::Many,
    };
    let loaded = load::fetch_root(session, node, q).await?;
    build_for(session, node, loaded, parents).await
}

/// Loads a root connection's page (`Query.ordersConnection`): the rows named by its
/// `edges { node }` and `nodes` selections, planned as one, in one statement plus one per
/// batch below, and its total count (one more statement) when `totalCount` is selected.
pub async fn load_connection(
    ctx: &Context<'_>,
    entity: Entity,
    args: EdgeArgs,
    filter: Option<Arc<Filter>>,
) -> AppResult<(Objs, Option<i64>, Arc<View>)> {
    let rc = RequestContext::of(ctx)?;
    let page = args
        .page
        .clone()
        .ok_or_else(|| AppError::internal("no page"))?;
    let planned = root_plan(ctx, |rc, fields| {
        let view = Arc::new(View::connection(entity, &fields, rc.limits)?);
        let conn = Field::new("connection", fields);
        let nodes: Vec<Field> = planner::connection_nodes(&conn)
            .into_iter()
            .cloned()
            .collect();
        Ok(Planned {
            node: plan_for(rc, entity, &nodes)?,
            view,
        })
    })?;
    let counted = planned.view.counts();
    let node = planned.node.with_sort_keys(args.order);
    let reserved = rc.session.log().reserve_plan(
        key(ctx),
        node.statements() + usize::from(counted),
        || serde_json::json!({ "totalCount": counted, "node": node.describe() }),
    )?;
    if reserved == Reserved::PlanOnly {
        return Ok((Objs::default(), counted.then_some(0), planned.view.clone()));
    }
    let total = if counted {
        Some(
            load::fetch_total(&rc.session, entity, filter.as_deref(), &[])
                .await?
                .count,
        )
    } else {
        None
    };
    let q = RootQuery::Connection {
        order: args.order,
        page: page.clone(),
        filter,
    };
    let loaded = load::fetch_root(&rc.session, &node, q).await?;
    Ok((
        build_page(&rc.session, &node, loaded, &page).await?,
        total,
        planned.view.clone(),
    ))
}

/// Loads rows for the sub-field `child` of the current field (the `user` of a login's
/// payload) with that sub-field's selection, on `session`.
pub async fn load_child_in(
    ctx: &Context<'_>,
    session: &Session,
    child: &str,
    entity: Entity,
    q: RootQuery,
) -> AppResult<Vec<Obj>> {
    load_planned(ctx, session, entity, &child_selection(ctx, child)?, q).await
}

/// The results of a node's batches (and of the batches below its joins), grouped by parent.
#[derive(Default)]
struct Children {
    /// Per batch: its arguments and its children (shared by every parent's object), and
    /// each parent's run of them.
    batches: Vec<BatchChildren>,
    /// Per aggregate: its arguments and values (shared), and the rows by parent.
    aggregates: Vec<AggChildren>,
    joins: Vec<Children>,
}

type ByParent<T> = HashMap<i64, T, std::hash::BuildHasherDefault<IdHasher>>;

/// Hashes row ids with a multiply and a shift. The ids are the database's keys, not values a
/// client picks, so SipHash's resistance to chosen keys buys nothing here, and on a large
/// answer (10,000 children to group) it cost about 5% of the request.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_i64(&mut self, n: i64) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        // The table indexes by the low bits: fold the well-mixed high bits into them.
        self.0 ^ (self.0 >> 32)
    }
}

/// A batch's arguments and children.
type BatchChildren = (Arc<EdgeArgs>, Batched);

/// A batch's children, assembled: every parent's in one run, all in one allocation shared by
/// the parents' objects.
#[derive(Default)]
pub struct Batched {
    all: Arc<[ObjData]>,
    runs: ByParent<Range<usize>>,
}

impl Batched {
    /// The children of `parent`.
    pub fn of(&self, parent: i64) -> Objs {
        let run = self.runs.get(&parent).cloned().unwrap_or(0..0);
        Objs::new(self.all.clone(), run)
    }
}

/// An aggregate's arguments and values (shared by every parent's object), and its rows.
type AggChildren = (
    Arc<EdgeArgs>,
    Arc<Vec<(AggFunc, u8)>>,
    ByParent<Arc<AggRow>>,
);

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = AppResult<T>> + Send + 'a>>;

/// Loads every batch below `node` for `rows`, then assembles the objects.
pub async fn build(s: &Session, node: &Node, rows: Vec<Loaded>) -> AppResult<Vec<Obj>> {
    build_for(s, node, rows, Parents::Many).await
}

/// [`build`] for rows of which there can be as many as `parents` says.
async fn build_for(
    s: &Session,
    node: &Node,
    rows: Vec<Loaded>,
    parents: Parents,
) -> AppResult<Vec<Obj>> {
    let marked = rows.into_iter().map(|l| (l, true)).collect();
    Ok(Obj::all(build_shown(s, node, marked, parents).await?))
}

/// [`build`] for rows some of which are a page's look-ahead row (`false`): read only to tell
/// whether a next page exists, never shown, so nothing below them is loaded. They are never
/// parents of the next level, and a level whose only row is one sends no batch below it.
/// `parents`: how many rows there can be, by the operation's shape.
fn build_shown<'a>(
    s: &'a Session,
    node: &'a Node,
    rows: Vec<(Loaded, bool)>,
    parents: Parents,
) -> BoxFut<'a, Arc<[ObjData]>> {
    Box::pin(async move {
        let refs: Vec<&Loaded> = rows.iter().filter(|r| r.1).map(|r| &r.0).collect();
        let children = load_children(s, node, &refs, parents).await?;
        Ok(rows
            .into_iter()
            .map(|(l, _)| assemble(node, l, &children))
            .collect())
    })
}

/// A root connection's rows (its page and, past it, the look-ahead row), assembled.
pub async fn build_page(
    s: &Session,
    node: &Node,
    rows: Vec<Loaded>,
    page: &Page,
) -> AppResult<Objs> {
    let marked = rows
        .into_iter()
        .enumerate()
        .map(|(i, l)| (l, page.shows(i)))
        .collect();
    Ok(build_shown(s, node, marked, Parents::Many).await?.into())
}

/// Whether each parent's rows are one run: true when the parents never decrease (every
/// batch statement's rows, as fetched), otherwise checked.
fn in_parent_runs(found: &[(i64, Loaded)]) -> bool {
    if found.windows(2).all(|w| w[0].0 <= w[1].0) {
        return true;
    }
    let mut seen = ByParent::<()>::default();
    found
        .chunk_by(|a, b| a.0 == b.0)
        .all(|run| seen.insert(run[0].0, ()).is_none())
}

/// A batch's rows (in the order fetched, each parent's one run), assembled, and where each
/// parent's run is; in a paged batch each parent's rows past the page size are its
/// look-ahead row (see [`build_shown`]).
pub async fn build_batch(
    s: &Session,
    batch: &crate::planner::Batch,
    found: Vec<(i64, Loaded)>,
) -> AppResult<Batched> {
    let page = batch.args.page.as_ref();
    // Every batch statement returns its rows grouped by parent (ordered by parent, or
    // sorted so after the fetch): a parent's rows are one run, counted as it goes. Were a
    // parent's rows ever apart, they are brought together first (in the order fetched).
    let mut found = found;
    if !in_parent_runs(&found) {
        found.sort_by_key(|(parent, _)| *parent);
    }
    let mut runs = ByParent::default();
    let mut at = 0;
    for run in found.chunk_by(|a, b| a.0 == b.0) {
        runs.insert(run[0].0, at..at + run.len());
        at += run.len();
    }
    let mut marked = Vec::with_capacity(found.len());
    let mut run = (None, 0usize);
    for (parent, loaded) in found {
        if run.0 != Some(parent) {
            run = (Some(parent), 0);
        }
        marked.push((loaded, page.is_none_or(|page| page.shows(run.1))));
        run.1 += 1;
    }
    let all = build_shown(s, &batch.node, marked, Parents::Many).await?;
    Ok(Batched { all, runs })
}

fn load_children<'a>(
    s: &'a Session,
    node: &'a Node,
    rows: &'a [&'a Loaded],
    parents: Parents,
) -> BoxFut<'a, Children> {
    Box::pin(async move {
        let mut out = Children::default();
        for batch in &node.batches {
            let mut ids: Vec<i64> = rows.iter().map(|l| l.row.id()).collect();
            ids.sort_unstable();
            ids.dedup();
            let batched = if ids.is_empty() {
                Batched::default()
            } else {
                let found = load::fetch_batch(s, batch, ids, parents).await?;
                build_batch(s, batch, found).await?
            };
            out.batches.push((Arc::new(batch.args.clone()), batched));
        }
        for agg in &node.aggregates {
            let mut ids: Vec<i64> = rows.iter().map(|l| l.row.id()).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut by_parent = ByParent::default();
            if !ids.is_empty() {
                for (parent, row) in load::fetch_aggregates(s, agg, ids).await? {
                    by_parent.insert(parent, Arc::new(row));
                }
            }
            out.aggregates.push((
                Arc::new(agg.args.clone()),
                Arc::new(agg.values.clone()),
                by_parent,
            ));
        }
        for (k, join) in node.joins.iter().enumerate() {
            let joined: Vec<&Loaded> = rows.iter().filter_map(|l| l.joins.get(k)).collect();
            // A row joined to one row is one row.
            out.joins
                .push(load_children(s, &join.node, &joined, parents).await?);
        }
        Ok(out)
    })
}

fn assemble(node: &Node, loaded: Loaded, children: &Children) -> ObjData {
    // Loops into vectors of the known size: most objects (a batch's leaves) have none of
    // these, and an empty one then costs nothing.
    let id = loaded.row.id();
    let mut ones = Vec::with_capacity(node.joins.len());
    for ((join, l), c) in node.joins.iter().zip(loaded.joins).zip(&children.joins) {
        ones.push((join.edge.index, Obj::new(assemble(&join.node, l, c))));
    }
    let mut manys = Vec::with_capacity(node.batches.len());
    for (b, (args, batched)) in node.batches.iter().zip(&children.batches) {
        manys.push((b.edge.index, args.clone(), batched.of(id)));
    }
    let mut aggs = Vec::with_capacity(node.aggregates.len());
    for (a, (args, values, map)) in node.aggregates.iter().zip(&children.aggregates) {
        let row = map
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Arc::new(AggRow::empty(a.values.len())));
        aggs.push((a.edge.index, args.clone(), values.clone(), row));
    }
    // Of the exact size (no reallocation), and two words each instead of three.
    ObjData {
        row: loaded.row,
        ones: ones.into_boxed_slice(),
        manys: manys.into_boxed_slice(),
        aggs: aggs.into_boxed_slice(),
    }
}
