//! What a response writes for a selection: the planner's other half.
//!
//! [`super::plan`] reads a selection for what to load; [`View::object`] (and its connection
//! and aggregate twins) reads the same [`Field`] tree for what to write: each response key
//! (ready-escaped JSON), the column position it reads, and each relationship with its
//! arguments, read and checked by the same functions the planner uses, so the key a batch is
//! stored under is the key the writer looks it up by. The renderer (`graphql::render`) only
//! walks this tree; it never reads a selection itself.

use super::{
    AggBatch, EdgeArgs, Field, Limits, Node, PlanError, args_of, connection_args, edge_args,
};
use crate::entities::{AGGREGATE_SUFFIX, AggFunc, CONNECTION_SUFFIX, Entity, Kind, Rel};
use crate::json;

/// A compiled selection, of one of the three kinds a field can have.
#[derive(Debug)]
pub enum View {
    /// An object, a list of objects or an optional object.
    Object(Vec<Compiled>),
    /// A connection object (`edges`, `nodes`, `pageInfo`, `totalCount`).
    Connection(Vec<ConnPart>),
    /// An aggregate object (`count`, `sum { ... }`...).
    Aggregate(Vec<AggPart>),
}

/// One compiled field of an object: its response key and what it writes.
#[derive(Debug)]
pub struct Compiled {
    /// `"key":`, ready to copy.
    pub key: Box<[u8]>,
    /// What it writes.
    pub what: What,
}

/// What a compiled field writes. Relationships carry their compiled sub-selection.
#[derive(Debug)]
pub enum What {
    /// `__typename`.
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
#[derive(Debug)]
pub struct ConnPart {
    /// `"key":`.
    pub key: Box<[u8]>,
    /// What it writes.
    pub what: ConnWhat,
}

/// What a field of a connection object writes.
#[derive(Debug)]
pub enum ConnWhat {
    /// `__typename`.
    Typename(&'static str),
    /// `totalCount`.
    TotalCount,
    /// `pageInfo { ... }`.
    PageInfo(Vec<(Box<[u8]>, PageWhat)>),
    /// `edges { cursor node { ... } }`.
    Edges(Vec<(Box<[u8]>, EdgeWhat)>),
    /// `nodes { ... }`.
    Nodes(Vec<Compiled>),
}

/// A field of `PageInfo`.
#[derive(Copy, Clone, Debug)]
pub enum PageWhat {
    /// `__typename`.
    Typename,
    /// `hasNextPage`.
    HasNext,
    /// `hasPreviousPage`.
    HasPrevious,
    /// `startCursor`.
    Start,
    /// `endCursor`.
    End,
}

/// A field of an edge object.
#[derive(Debug)]
pub enum EdgeWhat {
    /// `__typename`.
    Typename(&'static str),
    /// `cursor`.
    Cursor,
    /// `node { ... }`.
    Node(Vec<Compiled>),
}

/// One field of an aggregate object (`count`, `sum { ... }`, `__typename`).
#[derive(Debug)]
pub struct AggPart {
    /// `"key":`.
    pub key: Box<[u8]>,
    /// What it writes.
    pub what: AggWhat,
}

/// What a field of an aggregate object writes.
#[derive(Debug)]
pub enum AggWhat {
    /// `__typename`.
    Typename(&'static str),
    /// `count`.
    Count,
    /// `sum { totalAmount }`: its fields, `(key, column)` or a `__typename` (`None`).
    Func(AggFunc, Vec<(Box<[u8]>, Option<u8>)>),
}

/// The type names of an entity's connection objects: `[XConnection, XEdge]`.
pub fn connection_names(entity: Entity) -> [&'static str; 2] {
    CONN_TYPES[entity as usize]
}

/// The type names of an entity's aggregate objects: `[XAggregate, XSumFields, XAvgFields,
/// XMinFields, XMaxFields]`.
pub fn aggregate_names(entity: Entity) -> [&'static str; 5] {
    AGG_TYPES[entity as usize]
}

static CONN_TYPES: std::sync::LazyLock<Vec<[&'static str; 2]>> = std::sync::LazyLock::new(|| {
    Entity::ALL
        .iter()
        .map(|e| {
            let n = e.desc().name;
            [
                leak(format!("{n}{CONNECTION_SUFFIX}")),
                leak(format!("{n}Edge")),
            ]
        })
        .collect()
});

static AGG_TYPES: std::sync::LazyLock<Vec<[&'static str; 5]>> = std::sync::LazyLock::new(|| {
    Entity::ALL
        .iter()
        .map(|e| {
            let n = e.desc().name;
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

/// A type name made once per process (the tables above are built once).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// `"key":` as JSON text.
fn key_of(field: &Field) -> Box<[u8]> {
    let key = field.key();
    let mut k = Vec::with_capacity(key.len() + 3);
    json::push_str(&mut k, key);
    k.push(b':');
    k.into_boxed_slice()
}

fn unknown(type_name: &str, field: &str) -> PlanError {
    PlanError(format!("{type_name} has no field {field}"))
}

impl View {
    /// The view of a selection of `entity` objects.
    pub fn object(entity: Entity, fields: &[Field], limits: Limits) -> Result<View, PlanError> {
        Ok(View::Object(object(entity, fields, limits)?))
    }

    /// The view of a connection over `target` rows.
    pub fn connection(target: Entity, fields: &[Field], limits: Limits) -> Result<View, PlanError> {
        Ok(View::Connection(connection(target, fields, limits)?))
    }

    /// The view of an aggregate over `target` rows.
    pub fn aggregate(target: Entity, fields: &[Field]) -> Result<View, PlanError> {
        Ok(View::Aggregate(aggregate(target, fields)?))
    }

    /// The selections of the objects this view writes (a connection's `edges { node }` and
    /// `nodes`; an aggregate writes none).
    pub fn selections(&self) -> Vec<&[Compiled]> {
        match self {
            View::Object(sel) => vec![sel.as_slice()],
            View::Connection(parts) => conn_nodes(parts),
            View::Aggregate(_) => Vec::new(),
        }
    }

    /// Whether a connection view writes `totalCount`.
    pub fn counts(&self) -> bool {
        matches!(self, View::Connection(parts) if conn_counts(parts))
    }

    /// What an aggregate view reads: `(function, column)`, sorted, no repeats.
    pub fn aggregated(&self) -> Vec<(AggFunc, u8)> {
        let View::Aggregate(parts) = self else {
            return Vec::new();
        };
        let mut out = aggregated(parts);
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The `(function, column)` pairs an aggregate's fields read, in selection order.
fn aggregated(parts: &[AggPart]) -> Vec<(AggFunc, u8)> {
    parts
        .iter()
        .flat_map(|p| match &p.what {
            AggWhat::Func(func, cols) => cols
                .iter()
                .filter_map(|(_, col)| col.map(|c| (*func, c)))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// The plan of a level loaded lazily (`EAGERQL_PLAN=lazy`) from its views: the rows' own
/// columns that any of `sels` reads, and the aggregates of the level (with a connection's
/// `totalCount`), which are no relationship to load lazily; no join and no batch.
pub fn level_plan(entity: Entity, sels: &[&[Compiled]]) -> Node {
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
    let mut aggregates: Vec<AggBatch> = Vec::new();
    for c in sels.iter().flat_map(|sel| sel.iter()) {
        let (index, args, values) = match &c.what {
            What::Conn(index, args, parts) if conn_counts(parts) => {
                (*index, args.matching(), Vec::new())
            }
            What::Agg(index, args, parts) => (*index, args.clone(), aggregated(parts)),
            _ => continue,
        };
        let edge = Rel {
            from: entity,
            index,
        };
        match aggregates
            .iter_mut()
            .find(|a| a.edge == edge && a.args == args)
        {
            Some(a) => a.values.extend(values),
            None => aggregates.push(AggBatch { edge, args, values }),
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

/// Compiles a selection of `entity` objects, by the description.
fn object(entity: Entity, fields: &[Field], limits: Limits) -> Result<Vec<Compiled>, PlanError> {
    let desc = entity.desc();
    let mut out = Vec::with_capacity(fields.len());
    for child in fields {
        let name = child.name.as_str();
        let what = if name == "__typename" {
            What::Typename(desc.name)
        } else if let Some(at) = entity.column(name) {
            match desc.columns[at].kind {
                Kind::Id => What::Id(at),
                _ => What::Column(at),
            }
        } else if let Some(rel) = entity.connection(name) {
            let args = connection_args(rel, child, limits)?;
            What::Conn(
                rel.index,
                args,
                connection(rel.target(), &child.children, limits)?,
            )
        } else if let Some(rel) = entity.aggregate(name) {
            let args = EdgeArgs::read(rel, args_of(child))?;
            What::Agg(rel.index, args, aggregate(rel.target(), &child.children)?)
        } else if let Some(rel) = entity.relation(name) {
            let sub = object(rel.target(), &child.children, limits)?;
            if rel.desc().is_many() {
                What::Many(rel.index, edge_args(rel, child, limits)?, sub)
            } else {
                What::One(rel.index, sub)
            }
        } else {
            return Err(unknown(desc.name, name));
        };
        out.push(Compiled {
            key: key_of(child),
            what,
        });
    }
    Ok(out)
}

/// Compiles the selection of a connection over `target` rows.
fn connection(
    target: Entity,
    fields: &[Field],
    limits: Limits,
) -> Result<Vec<ConnPart>, PlanError> {
    let [conn_name, edge_name] = connection_names(target);
    let mut out = Vec::with_capacity(fields.len());
    for part in fields {
        let what = match part.name.as_str() {
            "__typename" => ConnWhat::Typename(conn_name),
            "totalCount" => ConnWhat::TotalCount,
            "nodes" => ConnWhat::Nodes(object(target, &part.children, limits)?),
            "pageInfo" => ConnWhat::PageInfo(
                part.children
                    .iter()
                    .map(|f| {
                        let what = match f.name.as_str() {
                            "__typename" => PageWhat::Typename,
                            "hasNextPage" => PageWhat::HasNext,
                            "hasPreviousPage" => PageWhat::HasPrevious,
                            "startCursor" => PageWhat::Start,
                            "endCursor" => PageWhat::End,
                            other => return Err(unknown("PageInfo", other)),
                        };
                        Ok((key_of(f), what))
                    })
                    .collect::<Result<_, PlanError>>()?,
            ),
            "edges" => ConnWhat::Edges(
                part.children
                    .iter()
                    .map(|f| {
                        let what = match f.name.as_str() {
                            "__typename" => EdgeWhat::Typename(edge_name),
                            "cursor" => EdgeWhat::Cursor,
                            "node" => EdgeWhat::Node(object(target, &f.children, limits)?),
                            other => return Err(unknown(edge_name, other)),
                        };
                        Ok((key_of(f), what))
                    })
                    .collect::<Result<_, PlanError>>()?,
            ),
            other => return Err(unknown(conn_name, other)),
        };
        out.push(ConnPart {
            key: key_of(part),
            what,
        });
    }
    Ok(out)
}

/// Compiles the selection of an aggregate over `target` rows.
fn aggregate(target: Entity, fields: &[Field]) -> Result<Vec<AggPart>, PlanError> {
    let names = aggregate_names(target);
    let mut out = Vec::with_capacity(fields.len());
    for part in fields {
        let what = match part.name.as_str() {
            "__typename" => AggWhat::Typename(names[0]),
            "count" => AggWhat::Count,
            name => {
                let (i, func) = AggFunc::ALL
                    .iter()
                    .enumerate()
                    .find(|(_, f)| f.name() == name)
                    .ok_or_else(|| unknown(names[0], name))?;
                let cols = part
                    .children
                    .iter()
                    .map(|c| {
                        if c.name == "__typename" {
                            return Ok((key_of(c), None));
                        }
                        let at = target
                            .column(&c.name)
                            .ok_or_else(|| unknown(names[i + 1], &c.name))?;
                        Ok((key_of(c), Some(at as u8)))
                    })
                    .collect::<Result<_, PlanError>>()?;
                AggWhat::Func(*func, cols)
            }
        };
        out.push(AggPart {
            key: key_of(part),
            what,
        });
    }
    Ok(out)
}

/// The row selections of a compiled connection (`edges { node }` and `nodes`).
pub fn conn_nodes(parts: &[ConnPart]) -> Vec<&[Compiled]> {
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

/// Whether a compiled connection writes `totalCount`.
pub fn conn_counts(parts: &[ConnPart]) -> bool {
    parts.iter().any(|p| matches!(p.what, ConnWhat::TotalCount))
}
