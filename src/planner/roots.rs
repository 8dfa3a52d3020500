//! The `Query` roots of the entities, from their description ([`crate::entities::Roots`]):
//! which roots there are, what each is called, who may use it, and its arguments read and
//! checked by the same rules as an edge's (`first` against the cap, cursors against the
//! order, `where` and the root filters as one filter).

use std::sync::{Arc, LazyLock};

use async_graphql::Value;

use super::filter::read_id;
use super::{EdgeArgs, Filter, Limits, Page, PlanError, SortKeys, check_first, check_page};
use crate::entities::{AGGREGATE_SUFFIX, Access, CONNECTION_SUFFIX, Entity};

/// What a root field answers with.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum RootKind {
    /// One row by id, or null (`order(id:)`).
    ById,
    /// A page of rows by `first` and `offset` (`orders`).
    List,
    /// A cursor connection (`ordersConnection`).
    Connection,
    /// Aggregates in one statement (`ordersAggregate`).
    Aggregate,
}

/// A root field of `Query` generated from an entity's description.
#[derive(Clone, Debug)]
pub struct RootField {
    /// The field's name.
    pub name: String,
    /// The entity it reads.
    pub entity: Entity,
    /// What it answers with.
    pub kind: RootKind,
    /// Who may use it.
    pub access: Access,
    /// The names of its arguments, in schema order.
    args: Vec<&'static str>,
}

/// Every generated root, in schema order: the lists and by-id roots of each entity, then
/// the connections, then the aggregates.
pub fn root_fields() -> &'static [RootField] {
    static ROOTS: LazyLock<Vec<RootField>> = LazyLock::new(|| {
        let mut out = Vec::new();
        let described = || Entity::ALL.into_iter().map(|e| (e, e.desc().roots));
        for (entity, roots) in described() {
            let lists = roots.list.map(|r| (r, RootKind::List));
            let one = roots.by_id.map(|r| (r, RootKind::ById));
            for (root, kind) in lists.into_iter().chain(one) {
                out.push(RootField {
                    name: root.name.to_owned(),
                    entity,
                    kind,
                    access: root.access,
                    args: arg_names(entity, kind),
                });
            }
        }
        for (kind, suffix) in [
            (RootKind::Connection, CONNECTION_SUFFIX),
            (RootKind::Aggregate, AGGREGATE_SUFFIX),
        ] {
            for (entity, roots) in described() {
                out.extend(roots.list.map(|r| RootField {
                    name: format!("{}{suffix}", r.name),
                    entity,
                    kind,
                    access: r.access,
                    args: arg_names(entity, kind),
                }));
            }
        }
        out
    });
    &ROOTS
}

/// The generated root called `name`, if any.
pub fn root_field(name: &str) -> Option<&'static RootField> {
    root_fields().iter().find(|r| r.name == name)
}

/// The default page size of a root list (`first`).
pub const DEFAULT_LIST_SIZE: i64 = 20;

/// A root field's arguments, read and checked.
#[derive(Clone, Debug)]
pub enum RootArgs {
    /// The row's id.
    ById(i64),
    /// A page by offset.
    List {
        /// Page size.
        first: i64,
        /// Rows skipped.
        offset: i64,
        /// The order (empty: by id).
        order: SortKeys,
        /// `where` with the root filters (`None`: every row).
        filter: Option<Arc<Filter>>,
    },
    /// A connection's page.
    Connection {
        /// Its order and page.
        args: EdgeArgs,
        /// `where` with the root filters (`None`: every row).
        filter: Option<Arc<Filter>>,
    },
    /// An aggregate.
    Aggregate {
        /// `where` with the root filters (`None`: every row).
        filter: Option<Arc<Filter>>,
    },
}

impl RootField {
    /// Reads this root's arguments (variables substituted; null means not given).
    pub fn read<'v>(
        &self,
        args: impl IntoIterator<Item = (&'v str, &'v Value)>,
        limits: Limits,
    ) -> Result<RootArgs, PlanError> {
        let what = self.name.as_str();
        let mut given_args = Vec::new();
        for (name, value) in args {
            match value {
                // A non-null argument (`first: Int! = 20`) given null, from a variable.
                Value::Null if self.required(name) => {
                    return Err(PlanError(format!("{what}: `{name}` must not be null")));
                }
                Value::Null => {}
                _ => given_args.push((name, value)),
            }
        }
        let args = given_args;
        let given = |name: &str| args.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        if let Some((unknown, _)) = args.iter().find(|(n, _)| !self.accepts(n)) {
            return Err(PlanError(format!("{what}: unknown argument `{unknown}`")));
        }
        let int = |name: &str| -> Result<Option<i64>, PlanError> {
            match given(name) {
                None => Ok(None),
                Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
                    PlanError(format!("{what}: `{name}` must be an integer, got {n}"))
                }),
                Some(other) => Err(PlanError(format!(
                    "{what}: `{name}` must be an integer, got {other}"
                ))),
            }
        };
        let text = |name: &str| -> Result<Option<&str>, PlanError> {
            match given(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(other) => Err(PlanError(format!(
                    "{what}: `{name}` must be a cursor string, got {other}"
                ))),
            }
        };
        let order = || match given("orderBy") {
            None => Ok(SortKeys::default()),
            Some(v) => SortKeys::parse(self.entity, sort_names(v, what)?, what),
        };
        let filter = || self.filter(&args, given("where"));
        Ok(match self.kind {
            RootKind::ById => match given("id") {
                Some(v) => RootArgs::ById(read_id(v, what)?),
                None => return Err(PlanError(format!("{what}: `id` is required"))),
            },
            RootKind::List => {
                let first = check_first(int("first")?.unwrap_or(DEFAULT_LIST_SIZE), what, limits)?;
                let offset = int("offset")?.unwrap_or(0);
                if offset < 0 {
                    return Err(PlanError(format!(
                        "{what}: `offset` must not be negative, got {offset}"
                    )));
                }
                let filter = filter()?;
                RootArgs::List {
                    first,
                    offset,
                    order: order()?,
                    filter,
                }
            }
            RootKind::Connection => {
                let order = order()?;
                let page = Page::read(
                    self.entity,
                    order,
                    int("first")?,
                    int("last")?,
                    text("after")?,
                    text("before")?,
                    what,
                )?;
                let args = EdgeArgs {
                    order,
                    page: Some(page),
                    ..EdgeArgs::default()
                };
                check_page(&args, what, limits)?;
                RootArgs::Connection {
                    args,
                    filter: filter()?,
                }
            }
            RootKind::Aggregate => RootArgs::Aggregate { filter: filter()? },
        })
    }

    /// The names of the arguments this root takes, in schema order.
    pub fn arg_names(&self) -> &[&'static str] {
        &self.args
    }

    /// Whether argument `name` is non-null (with a default or not).
    fn required(&self, name: &str) -> bool {
        match self.kind {
            RootKind::ById => name == "id",
            RootKind::List => name == "first" || name == "offset",
            RootKind::Connection | RootKind::Aggregate => false,
        }
    }

    fn accepts(&self, name: &str) -> bool {
        self.args.contains(&name)
    }

    /// The root filters given AND-ed with `where` (read in that order).
    fn filter(
        &self,
        args: &[(&str, &Value)],
        filter: Option<&Value>,
    ) -> Result<Option<Arc<Filter>>, PlanError> {
        let described = self.entity.desc().filter_args;
        let given = args
            .iter()
            .filter(|(n, _)| described.iter().any(|f| f.arg == *n))
            .copied();
        let rest = || match filter {
            None => Ok(None),
            Some(v) => {
                let f = Filter::parse(self.entity, v, &format!("{}.where", self.name))?;
                Ok((!f.is_true()).then(|| Arc::new(f)))
            }
        };
        Filter::with_filter_args(self.entity, given, rest, &self.name)
    }
}

/// The sort keys an `orderBy` value names: a list, or one value standing for a list of one
/// (input coercion).
pub(crate) fn sort_names<'v>(value: &'v Value, what: &str) -> Result<Vec<&'v str>, PlanError> {
    let name = |v: &'v Value| match v {
        Value::Enum(n) => Ok(n.as_str()),
        Value::String(n) => Ok(n.as_str()),
        other => Err(PlanError(format!(
            "{what}: `orderBy` must list sort keys, got {other}"
        ))),
    };
    match value {
        Value::List(items) => items.iter().map(name).collect(),
        one => Ok(vec![name(one)?]),
    }
}

/// The names of the arguments a root of `kind` over `entity` takes, in schema order.
fn arg_names(entity: Entity, kind: RootKind) -> Vec<&'static str> {
    let filters = entity.desc().filter_args.iter().map(|f| f.arg);
    let (page, ordered): (&[&'static str], bool) = match kind {
        RootKind::ById => return vec!["id"],
        RootKind::List => (&["first", "offset"], true),
        RootKind::Connection => (&["first", "after", "last", "before"], true),
        RootKind::Aggregate => (&[], false),
    };
    let mut out: Vec<&'static str> = page.to_vec();
    out.extend(filters);
    if ordered {
        out.push("orderBy");
    }
    out.push("where");
    out
}
