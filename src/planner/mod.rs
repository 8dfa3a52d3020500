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

/// A selected field, as the planner sees it: its name (not its alias), its arguments with
/// variables already substituted, and its sub-selection with fragments flattened.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    /// The schema field name.
    pub name: String,
    /// Its alias, when the query gives one (the response key is then the alias).
    pub alias: Option<String>,
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
            alias: None,
            args: Vec::new(),
            children,
        }
    }

    /// The field's response key: its alias, or its name.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.name)
    }

    /// The same field under the response key `alias`.
    pub fn alias(mut self, alias: &str) -> Self {
        self.alias = Some(alias.to_owned());
        self
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

use crate::entities::{AggFunc, EdgeArg, MAX_SORT_KEYS};
pub use crate::entities::{Entity, Rel};

pub mod cursor;
pub mod filter;
pub mod roots;
pub mod view;
pub use cursor::{Cursor, DEFAULT_PAGE_SIZE, Page};
pub use filter::Filter;
pub use view::View;

/// The per-parent arguments of a to-many edge. Two selections with equal arguments share one
/// batch; different arguments are different batches. The field resolver rebuilds the same key
/// from its own arguments to find its preloaded rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct EdgeArgs {
    /// At most this many children per parent, the first in `order`.
    pub first: Option<i64>,
    /// The children's order (empty: by id).
    pub order: SortKeys,
    /// A connection's page (`ordersConnection`): its rows are the page's, plus one more
    /// when there is a next page (in the page's direction); `None` for a plain list.
    pub page: Option<Page>,
    /// The `where` filter (`None`: every row).
    pub filter: Option<std::sync::Arc<Filter>>,
}

impl EdgeArgs {
    /// The arguments that decide which rows match, without order or page: a connection's
    /// `totalCount` is the count aggregate under these.
    pub fn matching(&self) -> EdgeArgs {
        EdgeArgs {
            filter: self.filter.clone(),
            ..EdgeArgs::default()
        }
    }
}

/// An `orderBy` list: up to [`MAX_SORT_KEYS`] `(column, descending)` keys of one entity, the
/// id always breaking the remaining ties. Empty: by id.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SortKeys([Option<(u8, bool)>; MAX_SORT_KEYS]);

impl SortKeys {
    /// The keys: `(column position, descending)`.
    pub fn keys(&self) -> impl Iterator<Item = (usize, bool)> + '_ {
        self.0.iter().flatten().map(|(c, d)| (usize::from(*c), *d))
    }

    /// No key: by id.
    pub fn is_empty(&self) -> bool {
        self.0[0].is_none()
    }

    /// Reads the values of `entity`'s `XOrderBy` enum, in order. More than
    /// [`MAX_SORT_KEYS`] keys, or one column twice, is refused.
    pub fn parse<'a>(
        entity: Entity,
        values: impl IntoIterator<Item = &'a str>,
        what: &str,
    ) -> Result<SortKeys, PlanError> {
        let mut out = SortKeys::default();
        for (n, value) in values.into_iter().enumerate() {
            let (col, desc) = entity.sort_key(value).ok_or_else(|| {
                PlanError(format!(
                    "{what}: `orderBy` has {value}, which is not a {}",
                    entity.order_by_type()
                ))
            })?;
            if n == MAX_SORT_KEYS {
                return Err(PlanError(format!(
                    "{what}: `orderBy` takes at most {MAX_SORT_KEYS} keys"
                )));
            }
            if out.keys().any(|(c, _)| c == col) {
                return Err(PlanError(format!(
                    "{what}: `orderBy` names the same field twice ({value})"
                )));
            }
            out.0[n] = Some((col as u8, desc));
        }
        Ok(out)
    }
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
    /// Aggregates over to-many edges (`ordersAggregate`), each one grouped statement keyed
    /// by this node's ids.
    pub aggregates: Vec<AggBatch>,
}

/// An aggregate over a to-many edge: one grouped statement per distinct argument set, keyed
/// by the parents' ids; its rows are counts and aggregated values, never the children.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AggBatch {
    /// Which edge.
    pub edge: Rel,
    /// Its filter arguments (`status`).
    pub args: EdgeArgs,
    /// The aggregated values wanted, `(function, column of the target)`, sorted, no repeats
    /// (the count always comes with them).
    pub values: Vec<(AggFunc, u8)>,
}

/// A root field's selection, read once: what to load ([`Node`]) and what to write
/// ([`View`]). A canonical form keeps it when it depends on the form alone.
#[derive(Debug)]
pub struct Planned {
    /// What the field loads.
    pub node: Node,
    /// What the field writes.
    pub view: std::sync::Arc<View>,
}

/// A to-one edge loaded by a JOIN into its parent's statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Join {
    /// Which edge (a to-one relationship).
    pub edge: Rel,
    /// The joined rows and what they load in turn.
    pub node: Node,
}

/// A to-many edge loaded by one batch statement.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Batch {
    /// Which edge (a to-many relationship).
    pub edge: Rel,
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
        self.aggregates.len()
            + self
                .batches
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

impl Node {
    /// The plan as JSON, for `extensions.plan`: the rows' type and columns, the joined to-one
    /// edges, and each batch and aggregate (one statement each) with its arguments.
    pub fn describe(&self) -> serde_json::Value {
        use serde_json::json;
        let desc = self.entity.desc();
        json!({
            "type": desc.name,
            "fields": self.scalars,
            "joins": self.joins.iter().map(|j| json!({
                "field": j.edge.desc().field,
                "node": j.node.describe(),
            })).collect::<Vec<_>>(),
            "batches": self.batches.iter().map(|b| json!({
                "field": b.edge.desc().field,
                "arguments": b.args.describe(b.edge.target()),
                "node": b.node.describe(),
            })).collect::<Vec<_>>(),
            "aggregates": self.aggregates.iter().map(|a| json!({
                "field": format!("{}{}", a.edge.desc().field, crate::entities::AGGREGATE_SUFFIX),
                "arguments": a.args.describe(a.edge.target()),
            })).collect::<Vec<_>>(),
        })
    }
}

impl EdgeArgs {
    /// The arguments as JSON (only those given), for `extensions.plan`.
    pub fn describe(&self, target: Entity) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        if let Some(first) = self.first {
            out.insert("first".into(), first.into());
        }
        if !self.order.is_empty() {
            out.insert(
                "orderBy".into(),
                cursor::order_text(target, self.order).into(),
            );
        }
        if let Some(page) = &self.page {
            let size = if page.backward { "last" } else { "first" };
            out.insert(size.into(), page.size.into());
            out.insert("after".into(), page.after.is_some().into());
            out.insert("before".into(), page.before.is_some().into());
        }
        if self.filter.is_some() {
            out.insert("where".into(), true.into());
        }
        serde_json::Value::Object(out)
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
    let mut joins: Vec<(Rel, Vec<&Field>)> = Vec::new();
    let mut batches: Vec<(Rel, EdgeArgs, Vec<&Field>)> = Vec::new();
    let mut scalars: Vec<String> = Vec::new();
    let aggregates = plan_aggregates(entity, fields, limits)?;
    for field in fields {
        if entity.aggregate(&field.name).is_some() {
            continue;
        }
        if let Some(edge) = entity.connection(&field.name) {
            let args = connection_args(edge, field, limits)?;
            let nodes = connection_nodes(field);
            match batches
                .iter_mut()
                .find(|(e, a, _)| *e == edge && *a == args)
            {
                Some((_, _, children)) => children.extend(nodes),
                None => batches.push((edge, args, nodes)),
            }
            continue;
        }
        match entity.relation(&field.name) {
            None => {
                if let Err(at) = scalars.binary_search(&field.name) {
                    scalars.insert(at, field.name.clone());
                }
            }
            Some(edge) if !edge.desc().is_many() => {
                match joins.iter_mut().find(|(e, _)| *e == edge) {
                    Some((_, children)) => children.extend(field.children.iter()),
                    None => joins.push((edge, field.children.iter().collect())),
                }
            }
            Some(edge) => {
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
                let mut node = plan_node(edge.target(), &children, limits)?;
                if args.page.is_some() {
                    node.read_sort_keys(args.order);
                }
                Ok(Batch { edge, args, node })
            })
            .collect::<Result<_, PlanError>>()?,
        scalars,
        aggregates,
    })
}

/// The aggregate fields among `fields`: one [`AggBatch`] per edge and argument set, with
/// the union of what every occurrence selects.
fn plan_aggregates(
    entity: Entity,
    fields: &[&Field],
    limits: Limits,
) -> Result<Vec<AggBatch>, PlanError> {
    let mut out: Vec<AggBatch> = Vec::new();
    for field in fields {
        if let Some(edge) = entity.connection(&field.name) {
            // `totalCount`: the count aggregate of the connection's filter, one grouped
            // statement (shared with an `...Aggregate` of the same filter).
            if field.children.iter().any(|c| c.name == "totalCount") {
                let args = connection_args(edge, field, limits)?.matching();
                if !out.iter().any(|a| a.edge == edge && a.args == args) {
                    out.push(AggBatch {
                        edge,
                        args,
                        values: Vec::new(),
                    });
                }
            }
            continue;
        }
        let Some(edge) = entity.aggregate(&field.name) else {
            continue;
        };
        let args = EdgeArgs::read(edge, args_of(field))?;
        let mut values = Vec::new();
        for part in &field.children {
            let Some(func) = AggFunc::ALL.iter().find(|f| f.name() == part.name) else {
                continue;
            };
            for col in &part.children {
                if let Some(at) = edge.target().column(&col.name) {
                    values.push((*func, at as u8));
                }
            }
        }
        match out.iter_mut().find(|a| a.edge == edge && a.args == args) {
            Some(a) => a.values.extend(values),
            None => out.push(AggBatch { edge, args, values }),
        }
    }
    for a in &mut out {
        a.values.sort_unstable();
        a.values.dedup();
    }
    Ok(out)
}

pub(crate) fn args_of(field: &Field) -> impl Iterator<Item = (&str, &Value)> {
    field.args.iter().map(|(n, v)| (n.as_str(), v))
}

/// The selections of a connection's rows: `edges { node { ... } }` and `nodes { ... }`.
pub fn connection_nodes(field: &Field) -> Vec<&Field> {
    let mut out = Vec::new();
    for part in &field.children {
        match part.name.as_str() {
            "nodes" => out.extend(part.children.iter()),
            "edges" => out.extend(
                part.children
                    .iter()
                    .filter(|c| c.name == "node")
                    .flat_map(|c| c.children.iter()),
            ),
            _ => {}
        }
    }
    out
}

impl Node {
    /// The node reading the columns of `order`'s keys too (a connection's rows carry their
    /// cursors): itself when it reads them already.
    pub fn with_sort_keys(&self, order: SortKeys) -> std::borrow::Cow<'_, Node> {
        let cols = self.entity.desc().columns;
        let read = order.keys().all(|(col, _)| {
            cols[col]
                .field
                .is_none_or(|f| self.scalars.binary_search_by(|s| s.as_str().cmp(f)).is_ok())
        });
        if read {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut node = self.clone();
        node.read_sort_keys(order);
        std::borrow::Cow::Owned(node)
    }

    /// Makes the node read the columns of `order`'s keys (a connection's rows carry their
    /// cursors).
    pub fn read_sort_keys(&mut self, order: SortKeys) {
        let cols = self.entity.desc().columns;
        for (col, _) in order.keys() {
            if let Some(field) = cols[col].field
                && let Err(at) = self.scalars.binary_search_by(|s| s.as_str().cmp(field))
            {
                self.scalars.insert(at, field.to_owned());
            }
        }
    }
}

/// Validates a connection's page size, as [`check_first`] does a list's.
pub fn check_page(args: &EdgeArgs, what: &str, limits: Limits) -> Result<(), PlanError> {
    if let Some(page) = &args.page
        && page.size > limits.max_page_size
    {
        let arg = if page.backward { "last" } else { "first" };
        return Err(PlanError(format!(
            "{what}: `{arg}` must be at most {}, got {}",
            limits.max_page_size, page.size
        )));
    }
    Ok(())
}

/// A plan that loads only the rows' own columns and no relationship: what a lazy loader
/// plans (each relationship is then loaded when it is resolved).
pub fn plan_scalars(
    entity: Entity,
    selection: &[Field],
    limits: Limits,
) -> Result<Node, PlanError> {
    let mut scalars: Vec<String> = selection
        .iter()
        .filter(|f| {
            entity.relation(&f.name).is_none()
                && entity.aggregate(&f.name).is_none()
                && entity.connection(&f.name).is_none()
        })
        .map(|f| f.name.clone())
        .collect();
    scalars.sort();
    scalars.dedup();
    // Aggregates are no relationship to load lazily: they are planned in both modes.
    let fields: Vec<&Field> = selection.iter().collect();
    Ok(Node {
        entity,
        joins: Vec::new(),
        batches: Vec::new(),
        scalars,
        aggregates: plan_aggregates(entity, &fields, limits)?,
    })
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

/// The arguments of a to-many edge's list field (`items(first: 5)`), read and checked: the
/// one reader the planner and the view use.
pub(crate) fn edge_args(edge: Rel, field: &Field, limits: Limits) -> Result<EdgeArgs, PlanError> {
    let args = EdgeArgs::read(edge, args_of(field))?;
    if let Some(first) = args.first {
        check_first(first, &edge.path(), limits)?;
    }
    Ok(args)
}

/// The arguments of a to-many edge's connection field (`ordersConnection(first: 5)`), read
/// and checked: the one reader the planner and the view use.
pub(crate) fn connection_args(
    edge: Rel,
    field: &Field,
    limits: Limits,
) -> Result<EdgeArgs, PlanError> {
    let args = EdgeArgs::read_connection(edge, args_of(field))?;
    check_page(&args, &edge.path(), limits)?;
    Ok(args)
}

impl EdgeArgs {
    /// Reads a to-many edge's arguments (variables already substituted; `null` means absent)
    /// against the arguments its description accepts. The planner and the renderer read them
    /// through this one function, so the key a batch is stored under is the key it is looked
    /// up by.
    pub fn read<'v>(
        edge: Rel,
        args: impl IntoIterator<Item = (&'v str, &'v Value)>,
    ) -> Result<EdgeArgs, PlanError> {
        let accepted = edge.desc().args;
        let mut out = EdgeArgs::default();
        let path = edge.path();
        let (mut filters, mut filter) = (Vec::new(), None);
        for (name, value) in args {
            let Some(arg) = accepted.iter().find(|a| a.name() == name) else {
                return Err(PlanError(format!("{path}: unknown argument `{name}`")));
            };
            match (arg, value) {
                (_, Value::Null) => {}
                (EdgeArg::First(_), Value::Number(n)) => {
                    out.first =
                        Some(n.as_i64().ok_or_else(|| {
                            PlanError(format!("{path}: `first` must be an integer"))
                        })?);
                }
                (EdgeArg::Filter(name), v) => filters.push((*name, v)),
                (EdgeArg::OrderBy(_), v) => {
                    let names = roots::sort_names(v, &path)?;
                    out.order = SortKeys::parse(edge.target(), names, &path)?;
                }
                (EdgeArg::Where(_), Value::Object(_)) => filter = Some(value),
                (arg, other) => {
                    return Err(PlanError(format!(
                        "{path}: `{}` must be {}, got {other}",
                        arg.name(),
                        arg.graphql(edge.target())
                    )));
                }
            }
        }
        // The filter arguments stand for `where` conditions: one filter, so `orders(status:
        // PENDING)` and `orders(where: { status: { eq: PENDING } })` share a batch.
        let target = edge.target();
        let rest = || match filter {
            None => Ok(None),
            Some(v) => {
                let f = Filter::parse(target, v, &format!("{path}.where"))?;
                Ok((!f.is_true()).then(|| std::sync::Arc::new(f)))
            }
        };
        out.filter = Filter::with_filter_args(target, filters, rest, &path)?;
        Ok(out)
    }
}

impl EdgeArgs {
    /// Reads a connection field's arguments (`ordersConnection(first, after, last, before,
    /// orderBy, status)`): the relationship's own filters and order, and the page.
    pub fn read_connection<'v>(
        edge: Rel,
        args: impl IntoIterator<Item = (&'v str, &'v Value)>,
    ) -> Result<EdgeArgs, PlanError> {
        let what = format!("{}{}", edge.path(), crate::entities::CONNECTION_SUFFIX);
        let mut own = Vec::new();
        let (mut first, mut last, mut after, mut before) = (None, None, None, None);
        for (name, value) in args {
            let slot = match name {
                "first" => &mut first,
                "last" => &mut last,
                "after" => &mut after,
                "before" => &mut before,
                // The relationship's own arguments (`EdgeArgs::read` refuses unknown ones).
                _ => {
                    own.push((name, value));
                    continue;
                }
            };
            if !matches!(value, Value::Null) {
                *slot = Some(value);
            }
        }
        let mut out = EdgeArgs::read(edge, own)?;
        let int = |v: Option<&Value>, arg: &str| -> Result<Option<i64>, PlanError> {
            match v {
                None => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| PlanError(format!("{what}: `{arg}` must be an integer"))),
                Some(other) => Err(PlanError(format!(
                    "{what}: `{arg}` must be an integer, got {other}"
                ))),
            }
        };
        let text = |v: Option<&'v Value>, arg: &str| -> Result<Option<&'v str>, PlanError> {
            match v {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(other) => Err(PlanError(format!(
                    "{what}: `{arg}` must be a cursor string, got {other}"
                ))),
            }
        };
        out.page = Some(Page::read(
            edge.target(),
            out.order,
            int(first, "first")?,
            int(last, "last")?,
            text(after, "after")?,
            text(before, "before")?,
            &what,
        )?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
