//! `where` filters: the typed tree a `XWhere` input becomes, checked against the entity's
//! description. The SQL builder writes it as one predicate with every value bound
//! (`db::load`), so the statement text depends only on the filter's shape, and a relation
//! filter (`orders: { some: { ... } }`) is a subquery inside the same statement: filters never
//! add a statement.
//!
//! Operators, by column kind: `IDFilter { eq in }`, `StringFilter { eq in contains startsWith
//! isNull }` (`contains` and `startsWith` ignore ASCII case; `eq` and `in` are exact),
//! `IntFilter` and `DecimalFilter` and `DateTimeFilter { eq gt gte lt lte in isNull }`,
//! `BooleanFilter { eq }`, `OrderStatusFilter` and `RoleFilter { eq in }`. Several operators of
//! one field, and several fields of one object, must all hold; `and`, `or` and `not` combine
//! objects (an empty `or` matches nothing, an empty `in` matches nothing). A to-many
//! relationship takes `{ some: XWhere, none: XWhere }`; a to-one relationship takes the
//! target's `XWhere`. Comparisons on a null value are false (never SQL's unknown), so `not`
//! is the plain complement.

use async_graphql::Value;
use chrono::{DateTime, Utc};

use super::PlanError;
use crate::entities::{Entity, Kind, Link, Rel};
use crate::model::EnumType;

/// Most values one `in` list may hold.
pub const MAX_IN_VALUES: usize = 1000;

/// Most conditions (operators, `and`/`or`/`not` and relation filters) one `where` may hold.
pub const MAX_FILTER_TERMS: usize = 100;

/// Most levels of `and`/`or`/`not` and relation filters nested in one another.
pub const MAX_FILTER_DEPTH: usize = 8;

/// A comparison operator.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `eq`
    Eq,
    /// `gt`
    Gt,
    /// `gte`
    Gte,
    /// `lt`
    Lt,
    /// `lte`
    Lte,
    /// `contains` (text, ASCII case ignored)
    Contains,
    /// `startsWith` (text, ASCII case ignored)
    StartsWith,
}

impl Op {
    /// The SQL comparison of the ordering operators.
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
            Op::Contains | Op::StartsWith => "like",
        }
    }
}

/// A value of a filter, typed by its column.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lit {
    /// Keys and integers.
    Int(i64),
    /// Text.
    Text(String),
    /// Booleans.
    Bool(bool),
    /// Timestamps.
    Time(DateTime<Utc>),
    /// Money, in cents.
    Cents(i64),
    /// A value of an enum type: the type and the index of the value.
    Enum(&'static EnumType, u8),
}

/// A checked `where` filter over one entity's rows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Every one holds (`and`, and the fields of one object); empty: true.
    All(Vec<Filter>),
    /// At least one holds (`or`); empty: false.
    Any(Vec<Filter>),
    /// It does not hold.
    Not(Box<Filter>),
    /// Column `col` compared with a value.
    Cmp {
        /// The column's position.
        col: u8,
        /// How.
        op: Op,
        /// With what.
        value: Lit,
    },
    /// Column `col` is one of `values` (none: false).
    In {
        /// The column's position.
        col: u8,
        /// The values.
        values: Vec<Lit>,
    },
    /// Column `col` is null (or not).
    IsNull {
        /// The column's position.
        col: u8,
        /// `isNull: true`.
        null: bool,
    },
    /// Some row (or, with `none`, no row) of relationship `rel` satisfies `filter`; a to-one
    /// relationship's row satisfies it.
    Related {
        /// Which relationship of the entity.
        rel: u8,
        /// `none` instead of `some`.
        none: bool,
        /// The related rows' filter.
        filter: Box<Filter>,
    },
}

/// The name of the `XWhere` input type of `entity`.
pub fn where_type(entity: Entity) -> String {
    format!("{}Where", entity.desc().name)
}

/// The filter input type of a column kind, and its operators.
pub fn kind_filter(kind: Kind) -> (&'static str, &'static [&'static str]) {
    const ORDERED: &[&str] = &["eq", "gt", "gte", "lt", "lte", "in", "isNull"];
    match kind {
        Kind::Id => ("IDFilter", &["eq", "in"]),
        Kind::Text | Kind::OptText => (
            "StringFilter",
            &["eq", "in", "contains", "startsWith", "isNull"],
        ),
        Kind::Bool => ("BooleanFilter", &["eq"]),
        Kind::DateTime | Kind::OptDateTime => ("DateTimeFilter", ORDERED),
        Kind::Money => ("DecimalFilter", ORDERED),
        Kind::Int => ("IntFilter", ORDERED),
        Kind::Enum(e) | Kind::OptEnum(e) => (e.filter, &["eq", "in"]),
    }
}

/// The name of the `{ some none }` input of a to-many relationship to `target`.
pub fn list_filter_type(target: Entity) -> String {
    format!("{}ListFilter", target.desc().name)
}

impl Filter {
    /// `rest` (a `where`, read after them) with the root filters of `entity` given (`(argument, value)`, see
    /// [`crate::entities::FilterArg`]; variables substituted, null: not given) AND-ed to it;
    /// `None`: every row. Each value is read as its column's kind is in a `where`; `what`
    /// names the field in messages.
    pub fn with_filter_args<'a>(
        entity: Entity,
        given: impl IntoIterator<Item = (&'a str, &'a Value)>,
        rest: impl FnOnce() -> Result<Option<std::sync::Arc<Filter>>, PlanError>,
        what: &str,
    ) -> Result<Option<std::sync::Arc<Filter>>, PlanError> {
        let mut parts = Vec::new();
        for (arg, value) in given {
            if *value == Value::Null {
                continue;
            }
            let (col, at_least) = entity
                .desc()
                .filter_args
                .iter()
                .find(|f| f.arg == arg)
                .and_then(|f| Some((entity.column_named(f.column)?, f.at_least)))
                .ok_or_else(|| {
                    PlanError(format!("{} has no root filter `{arg}`", entity.desc().name))
                })?;
            let kind = entity.desc().columns[col].kind;
            let op = if at_least { Op::Gte } else { Op::Eq };
            let at = format!("{what}.{arg}");
            let value = match kind {
                // A key argument names a row, as `order(id:)` does.
                Kind::Id => Lit::Int(read_id(value, &at)?),
                _ => lit(kind, value, &at)?,
            };
            parts.push(Filter::Cmp {
                col: col as u8,
                op,
                value,
            });
        }
        let rest = rest()?;
        if parts.is_empty() {
            return Ok(rest);
        }
        parts.extend(rest.map(|f| (*f).clone()));
        // The canonical form, as `where` has: `status: X` is `where: { status: { eq: X } }`.
        Ok(Some(std::sync::Arc::new(Filter::All(parts).canonical())))
    }

    /// Reads a `XWhere` value of `entity` (variables already substituted); `what` names the
    /// argument in messages.
    pub fn parse(entity: Entity, value: &Value, what: &str) -> Result<Filter, PlanError> {
        let mut terms = Terms { count: 0, depth: 0 };
        Ok(parse_where(entity, value, what, &mut terms)?.canonical())
    }

    /// The one form of every filter that means the same by the same rules: the members of
    /// `and` (the fields of one object, in whatever order written) and of `or` sorted, an
    /// `and` inside an `and` (or an `or` inside an `or`) merged into it, `in` lists sorted
    /// without repeats. Equal filters so batch together whatever order their fields were
    /// written in. Members are sorted by their shape first (values apart), so that the SQL
    /// text still depends on the filter's shape only.
    fn canonical(self) -> Filter {
        match self {
            Filter::All(parts) => Filter::All(merged(parts, true)),
            Filter::Any(parts) => Filter::Any(merged(parts, false)),
            Filter::Not(inner) => Filter::Not(Box::new(inner.canonical())),
            Filter::In { col, mut values } => {
                values.sort_by_cached_key(|v| format!("{v:?}"));
                values.dedup();
                Filter::In { col, values }
            }
            Filter::Related { rel, none, filter } => Filter::Related {
                rel,
                none,
                filter: Box::new(filter.canonical()),
            },
            other => other,
        }
    }

    /// What the filter's SQL text depends on: its structure, operators and columns, not its
    /// values (an `in` list's length neither: it is one array parameter).
    fn shape(&self, out: &mut String) {
        use std::fmt::Write as _;
        match self {
            Filter::All(parts) | Filter::Any(parts) => {
                out.push_str(if matches!(self, Filter::All(_)) {
                    "all("
                } else {
                    "any("
                });
                for p in parts {
                    p.shape(out);
                    out.push(',');
                }
                out.push(')');
            }
            Filter::Not(inner) => {
                out.push_str("not(");
                inner.shape(out);
                out.push(')');
            }
            Filter::Cmp { col, op, value } => {
                let _ = write!(out, "cmp({col},{op:?},{})", lit_kind(value));
            }
            Filter::In { col, .. } => {
                let _ = write!(out, "in({col})");
            }
            Filter::IsNull { col, null } => {
                let _ = write!(out, "null({col},{null})");
            }
            Filter::Related { rel, none, filter } => {
                let _ = write!(out, "rel({rel},{none},");
                filter.shape(out);
                out.push(')');
            }
        }
    }

    /// Whether it holds for every row (an empty object): no condition to write.
    pub fn is_true(&self) -> bool {
        matches!(self, Filter::All(v) if v.iter().all(Filter::is_true))
    }
}

/// The canonical members of an `and` (`all`) or an `or`: each canonical, nested ones of the
/// same kind merged in, sorted by shape and then by value, without repeats.
fn merged(parts: Vec<Filter>, all: bool) -> Vec<Filter> {
    let mut out = Vec::with_capacity(parts.len());
    for part in parts.into_iter().map(Filter::canonical) {
        match part {
            Filter::All(inner) if all => out.extend(inner),
            Filter::Any(inner) if !all && !inner.is_empty() => out.extend(inner),
            other => out.push(other),
        }
    }
    out.sort_by_cached_key(|f| {
        let mut shape = String::new();
        f.shape(&mut shape);
        (shape, format!("{f:?}"))
    });
    out.dedup();
    out
}

/// The variant of a value, for [`Filter::shape`] (the SQL text depends on it: money and
/// times are written differently).
fn lit_kind(v: &Lit) -> &'static str {
    match v {
        Lit::Int(_) => "int",
        Lit::Text(_) => "text",
        Lit::Bool(_) => "bool",
        Lit::Time(_) => "time",
        Lit::Cents(_) => "cents",
        Lit::Enum(..) => "enum",
    }
}

/// How much of a filter has been read: conditions, and the current nesting.
struct Terms {
    count: usize,
    depth: usize,
}

fn count(terms: &mut Terms, what: &str) -> Result<(), PlanError> {
    terms.count += 1;
    if terms.count > MAX_FILTER_TERMS {
        return Err(PlanError(format!(
            "{what}: a filter may hold at most {MAX_FILTER_TERMS} conditions"
        )));
    }
    Ok(())
}

/// Reads a nested filter one level deeper.
fn nested<T>(
    terms: &mut Terms,
    what: &str,
    read: impl FnOnce(&mut Terms) -> Result<T, PlanError>,
) -> Result<T, PlanError> {
    terms.depth += 1;
    if terms.depth > MAX_FILTER_DEPTH {
        return Err(PlanError(format!(
            "{what}: filters may nest at most {MAX_FILTER_DEPTH} levels deep"
        )));
    }
    let out = read(terms);
    terms.depth -= 1;
    out
}

fn parse_where(
    entity: Entity,
    value: &Value,
    what: &str,
    terms: &mut Terms,
) -> Result<Filter, PlanError> {
    let Value::Object(fields) = value else {
        return Err(PlanError(format!(
            "{what} must be a {} object, got {value}",
            where_type(entity)
        )));
    };
    let mut all = Vec::new();
    for (name, v) in fields {
        if matches!(v, Value::Null) {
            continue;
        }
        let name = name.as_str();
        let at = format!("{what}.{name}");
        match name {
            "and" | "or" => {
                count(terms, what)?;
                let items = match v {
                    Value::List(items) => items.as_slice(),
                    one => std::slice::from_ref(one),
                };
                let parts = nested(terms, &at, |t| {
                    items
                        .iter()
                        .map(|i| parse_where(entity, i, &at, t))
                        .collect::<Result<Vec<_>, _>>()
                })?;
                all.push(if name == "and" {
                    Filter::All(parts)
                } else {
                    Filter::Any(parts)
                });
            }
            "not" => {
                count(terms, what)?;
                let inner = nested(terms, &at, |t| parse_where(entity, v, &at, t))?;
                all.push(Filter::Not(Box::new(inner)));
            }
            _ => {
                if let Some(col) = entity.column(name) {
                    let kind = entity.desc().columns[col].kind;
                    all.push(parse_ops(col as u8, kind, v, &at, terms)?);
                } else if let Some(rel) = entity.relation(name) {
                    all.push(parse_related(rel, v, &at, terms)?);
                } else {
                    return Err(PlanError(format!(
                        "{what}: {} has no field `{name}` to filter by",
                        where_type(entity)
                    )));
                }
            }
        }
    }
    Ok(Filter::All(all))
}

fn parse_related(rel: Rel, v: &Value, at: &str, terms: &mut Terms) -> Result<Filter, PlanError> {
    count(terms, at)?;
    let target = rel.target();
    if matches!(rel.desc().link, Link::ForeignKey(_)) {
        return Ok(Filter::Related {
            rel: rel.index,
            none: false,
            filter: Box::new(nested(terms, at, |t| parse_where(target, v, at, t))?),
        });
    }
    let Value::Object(ops) = v else {
        return Err(PlanError(format!(
            "{at} must be a {} object",
            list_filter_type(target)
        )));
    };
    let mut all = Vec::new();
    for (op, w) in ops {
        if matches!(w, Value::Null) {
            continue;
        }
        let none = match op.as_str() {
            "some" => false,
            "none" => true,
            other => {
                return Err(PlanError(format!(
                    "{at}: `{other}` is not an operator of {}",
                    list_filter_type(target)
                )));
            }
        };
        all.push(Filter::Related {
            rel: rel.index,
            none,
            filter: Box::new(nested(terms, at, |t| {
                parse_where(target, w, &format!("{at}.{op}"), t)
            })?),
        });
    }
    Ok(Filter::All(all))
}

fn parse_ops(
    col: u8,
    kind: Kind,
    v: &Value,
    at: &str,
    terms: &mut Terms,
) -> Result<Filter, PlanError> {
    let (type_name, allowed) = kind_filter(kind);
    let Value::Object(ops) = v else {
        return Err(PlanError(format!(
            "{at} must be a {type_name} object, got {v}"
        )));
    };
    let mut all = Vec::new();
    for (op, value) in ops {
        if matches!(value, Value::Null) {
            continue;
        }
        let op = op.as_str();
        if !allowed.contains(&op) {
            return Err(PlanError(format!(
                "{at}: `{op}` is not an operator of {type_name}"
            )));
        }
        count(terms, at)?;
        let here = format!("{at}.{op}");
        all.push(match op {
            "in" => {
                let Value::List(items) = value else {
                    return Err(PlanError(format!("{here} must be a list")));
                };
                if items.len() > MAX_IN_VALUES {
                    return Err(PlanError(format!(
                        "{here}: at most {MAX_IN_VALUES} values, got {}",
                        items.len()
                    )));
                }
                let values = items
                    .iter()
                    .map(|i| lit(kind, i, &here))
                    .collect::<Result<Vec<_>, _>>()?;
                Filter::In { col, values }
            }
            "isNull" => match value {
                Value::Boolean(null) => Filter::IsNull { col, null: *null },
                other => return Err(PlanError(format!("{here} must be a Boolean, got {other}"))),
            },
            _ => {
                let op = match op {
                    "eq" => Op::Eq,
                    "gt" => Op::Gt,
                    "gte" => Op::Gte,
                    "lt" => Op::Lt,
                    "lte" => Op::Lte,
                    "contains" => Op::Contains,
                    _ => Op::StartsWith,
                };
                Filter::Cmp {
                    col,
                    op,
                    value: lit(kind, value, &here)?,
                }
            }
        });
    }
    Ok(Filter::All(all))
}

fn name_of(v: &Value) -> String {
    match v {
        Value::Enum(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => String::new(),
    }
}

/// A row's id given as an argument: a positive integer, as a string or a number.
pub(crate) fn read_id(value: &Value, what: &str) -> Result<i64, PlanError> {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| PlanError(format!("{what}: {text:?} is not a valid id")))
}

fn lit(kind: Kind, v: &Value, at: &str) -> Result<Lit, PlanError> {
    let bad = |expected: &str| PlanError(format!("{at} must be {expected}, got {v}"));
    Ok(match (kind, v) {
        (Kind::Id, Value::String(s)) => Lit::Int(s.parse().map_err(|_| bad("an ID"))?),
        (Kind::Id, Value::Number(n)) => Lit::Int(n.as_i64().ok_or_else(|| bad("an ID"))?),
        // No stored text holds U+0000 (PostgreSQL cannot store it): refused, not sent.
        (Kind::Text | Kind::OptText, Value::String(s)) if s.contains('\0') => {
            return Err(PlanError(format!(
                "{at} must not contain U+0000, which no stored text holds"
            )));
        }
        (Kind::Text | Kind::OptText, Value::String(s)) => Lit::Text(s.clone()),
        (Kind::Bool, Value::Boolean(b)) => Lit::Bool(*b),
        (Kind::Int, Value::Number(n)) => Lit::Int(n.as_i64().ok_or_else(|| bad("an Int"))?),
        (Kind::DateTime | Kind::OptDateTime, Value::String(s)) => Lit::Time(
            DateTime::parse_from_rfc3339(s)
                .map_err(|_| bad("an RFC 3339 DateTime"))?
                .with_timezone(&Utc),
        ),
        (Kind::Money, Value::String(_) | Value::Number(_)) => {
            let text = match v {
                Value::String(s) => s.clone(),
                _ => v.to_string(),
            };
            let d: rust_decimal::Decimal = text.parse().map_err(|_| bad("a Decimal"))?;
            Lit::Cents(crate::money::to_cents(d).ok_or_else(|| {
                PlanError(format!(
                    "{at} must be {}, got {d}",
                    crate::money::cents_requirement(d)
                ))
            })?)
        }
        // Enum values come as names from a document and as strings from the variables.
        (Kind::Enum(e) | Kind::OptEnum(e), Value::Enum(_) | Value::String(_)) => Lit::Enum(
            e,
            e.by_name(&name_of(v))
                .ok_or_else(|| bad(&format!("{} {}", e.article(), e.name)))?,
        ),
        (Kind::Id, _) => return Err(bad("an ID")),
        (Kind::Text | Kind::OptText, _) => return Err(bad("a String")),
        (Kind::Bool, _) => return Err(bad("a Boolean")),
        (Kind::Int, _) => return Err(bad("an Int")),
        (Kind::DateTime | Kind::OptDateTime, _) => return Err(bad("a DateTime")),
        (Kind::Money, _) => return Err(bad("a Decimal")),
        (Kind::Enum(e) | Kind::OptEnum(e), _) => {
            return Err(bad(&format!("{} {}", e.article(), e.name)));
        }
    })
}
