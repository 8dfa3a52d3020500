//! The GraphQL object types of the entities, registered from their description
//! ([`crate::entities`]): one generic [`Object`] type per entity, whose schema fields, types,
//! arguments and documentation are those of its [`EntityDesc`](crate::entities::EntityDesc).
//!
//! A value is an [`Obj`]: a row and the relationships its plan loaded ([`ObjData`]), one of
//! a run of them behind one `Arc` (a root's rows, or a batch's children: every parent's, in
//! one allocation, shared by the parents), so a value is cheap to hand out. Whatever
//! returns one (a query root, a mutation, an analytics row) is written as JSON by the one
//! renderer, [`super::render`]: these types have no field resolvers of their own.

mod filters;

pub use filters::register_filters;

use std::marker::PhantomData;
use std::ops::{Deref, Range};
use std::sync::Arc;

use async_graphql::indexmap::IndexMap;
use async_graphql::registry::{
    Deprecation, MetaEnumValue, MetaField, MetaInputValue, MetaType, Registry,
};
use async_graphql::{CacheControl, ID, InputType, OutputType};

use super::scalars::{DateTime, Decimal};
use crate::db::load::AggRow;
use crate::entities::{AGGREGATE_SUFFIX, AggFunc, CONNECTION_SUFFIX, EdgeArg, Entity, Kind, Row};
use crate::planner::EdgeArgs;
use crate::planner::view::{aggregate_names, connection_names};

/// What a plan loaded for one row.
#[derive(Debug)]
pub struct ObjData {
    /// The row.
    pub row: Row,
    /// The joined to-one relationships, by their index in the entity's relationships.
    pub ones: Box<[(u8, Obj)]>,
    /// The loaded to-many relationships, by index and argument set.
    pub manys: Box<[Many]>,
    /// The aggregates over to-many relationships, by index and argument set: what was
    /// aggregated (`(function, column)`) and the values, in that order.
    pub aggs: Box<[Aggregated]>,
}

impl ObjData {
    /// Its entity.
    pub fn entity(&self) -> Entity {
        self.row.entity
    }

    /// Its primary key.
    pub fn id(&self) -> i64 {
        self.row.id()
    }

    /// The target of to-one relationship `rel`, if the plan joined it.
    pub fn one(&self, rel: u8) -> Option<&Obj> {
        self.ones.iter().find(|(r, _)| *r == rel).map(|(_, o)| o)
    }

    /// The aggregates over to-many relationship `rel` with arguments `args`, if loaded.
    pub fn aggregate(&self, rel: u8, args: &EdgeArgs) -> Option<(&[(AggFunc, u8)], &AggRow)> {
        self.aggs
            .iter()
            .find(|(r, a, _, _)| *r == rel && **a == *args)
            .map(|(_, _, what, row)| (what.as_slice(), row.as_ref()))
    }

    /// The children over to-many relationship `rel` with arguments `args`, if loaded.
    pub fn many(&self, rel: u8, args: &EdgeArgs) -> Option<&Objs> {
        self.manys
            .iter()
            .find(|(r, a, _)| *r == rel && **a == *args)
            .map(|(_, _, objs)| objs)
    }
}

/// One to-many relationship of an object: relationship index, arguments, and its children.
pub type Many = (u8, Arc<EdgeArgs>, Objs);

/// One aggregate of an object: relationship index, arguments, what was aggregated, values.
pub type Aggregated = (u8, Arc<EdgeArgs>, Arc<Vec<(AggFunc, u8)>>, Arc<AggRow>);

/// A run of loaded objects: the range `run` of `all` (a batch's children, every parent's in
/// parent runs, shared by the batch's parents rather than copied into each).
#[derive(Clone, Debug, Default)]
pub struct Objs {
    all: Arc<[ObjData]>,
    run: Range<usize>,
}

impl Objs {
    /// The run `run` of `all` (empty when out of its bounds).
    pub fn new(all: Arc<[ObjData]>, run: Range<usize>) -> Self {
        let run = if run.end <= all.len() { run } else { 0..0 };
        Objs { all, run }
    }

    /// The objects.
    pub fn as_slice(&self) -> &[ObjData] {
        &self.all[self.run.clone()]
    }

    /// A handle on each object.
    pub fn handles(&self) -> impl Iterator<Item = Obj> + '_ {
        self.run.clone().map(|at| Obj {
            all: self.all.clone(),
            at,
        })
    }
}

impl From<Arc<[ObjData]>> for Objs {
    fn from(all: Arc<[ObjData]>) -> Self {
        let run = 0..all.len();
        Objs { all, run }
    }
}

impl From<Obj> for Objs {
    fn from(obj: Obj) -> Self {
        Objs {
            run: obj.at..obj.at + 1,
            all: obj.all,
        }
    }
}

/// A loaded object of any entity: one of a run of them ([`Objs`]), reached through [`Deref`].
#[derive(Clone)]
pub struct Obj {
    all: Arc<[ObjData]>,
    at: usize,
}

impl Obj {
    /// An object on its own.
    pub fn new(data: ObjData) -> Self {
        Obj {
            all: Arc::new([data]),
            at: 0,
        }
    }

    /// A handle on each of `all`.
    pub fn all(all: Arc<[ObjData]>) -> Vec<Obj> {
        (0..all.len())
            .map(|at| Obj {
                all: all.clone(),
                at,
            })
            .collect()
    }
}

impl Deref for Obj {
    type Target = ObjData;

    fn deref(&self) -> &ObjData {
        &self.all[self.at]
    }
}

impl std::fmt::Debug for Obj {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

/// The entity behind a GraphQL object type.
pub trait Typed: Send + Sync + 'static {
    /// Which entity.
    const ENTITY: Entity;
}

/// The GraphQL object type of entity `T::ENTITY`.
pub struct Object<T>(pub Obj, PhantomData<T>);

impl<T> Clone for Object<T> {
    fn clone(&self) -> Self {
        Object(self.0.clone(), PhantomData)
    }
}

impl<T> std::fmt::Debug for Object<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! typed {
    ($marker:ident, $alias:ident, $entity:expr) => {
        #[doc = concat!("Marks [`", stringify!($alias), "`].")]
        pub struct $marker;
        impl Typed for $marker {
            const ENTITY: Entity = $entity;
        }
        #[doc = concat!("The `", stringify!($alias), "` object type.")]
        pub type $alias = Object<$marker>;
    };
}
typed!(UserType, User, Entity::User);
typed!(OrderType, Order, Entity::Order);
typed!(OrderItemType, OrderItem, Entity::OrderItem);
typed!(ProductType, Product, Entity::Product);

/// Registers the object type of `entity` from its description (once); gives `Name!`.
pub fn register_entity(entity: Entity, registry: &mut Registry) -> String {
    let name = entity.desc().name;
    if !registry.types.contains_key(name) {
        // A placeholder first: the type's relationships lead back to it.
        registry.types.insert(
            name.to_owned(),
            object_type(name.to_owned(), None, IndexMap::new()),
        );
        let ty = meta_type(entity, registry);
        registry.types.insert(name.to_owned(), ty);
    }
    format!("{name}!")
}

/// Registers the scalar or enum type of a column kind.
pub(crate) fn register_kind(kind: Kind, registry: &mut Registry) {
    match kind {
        Kind::Id => drop(<ID as OutputType>::create_type_info(registry)),
        Kind::Text | Kind::OptText => drop(<String as OutputType>::create_type_info(registry)),
        Kind::Bool => drop(<bool as OutputType>::create_type_info(registry)),
        Kind::DateTime | Kind::OptDateTime => {
            drop(<DateTime as OutputType>::create_type_info(registry))
        }
        Kind::Money => drop(<Decimal as OutputType>::create_type_info(registry)),
        Kind::Int => drop(<i32 as OutputType>::create_type_info(registry)),
        Kind::Enum(e) | Kind::OptEnum(e) => (e.register)(registry),
    }
}

fn register_arg(arg: EdgeArg, target: Entity, registry: &mut Registry) {
    match arg {
        EdgeArg::First(_) => drop(<Option<i32> as InputType>::create_type_info(registry)),
        EdgeArg::Filter(name) => {
            if let Some((_, kind)) = target.filter_arg(name) {
                register_kind(kind, registry);
            }
        }
        EdgeArg::OrderBy(_) => drop(register_order_by(target, registry)),
        EdgeArg::Where(_) => register_filters(registry),
    }
}

/// Registers the `XOrderBy` enum of `entity` from its description's sortable columns
/// (`CREATED_AT_DESC`), once; gives its name.
pub fn register_order_by(entity: Entity, registry: &mut Registry) -> String {
    let name = entity.order_by_type();
    if registry.types.contains_key(&name) {
        return name;
    }
    let mut enum_values = IndexMap::new();
    for (value, col, desc) in entity.sort_values() {
        let field = entity.desc().columns[col].field.unwrap_or_default();
        let direction = if desc { "descending" } else { "ascending" };
        enum_values.insert(
            value.clone(),
            MetaEnumValue {
                name: value,
                description: Some(format!("By `{field}`, {direction}.")),
                deprecation: Deprecation::NoDeprecated,
                visible: None,
                inaccessible: false,
                tags: Vec::new(),
                directive_invocations: Vec::new(),
            },
        );
    }
    registry.types.insert(
        name.clone(),
        MetaType::Enum {
            name: name.clone(),
            description: Some(format!(
                "An order of {} lists: one key, ascending or descending.",
                entity.desc().name
            )),
            enum_values,
            visible: None,
            inaccessible: false,
            tags: Vec::new(),
            rust_typename: None,
            directive_invocations: Vec::new(),
            requires_scopes: Vec::new(),
        },
    );
    name
}

fn doc(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

pub(crate) fn meta_field(
    name: &str,
    description: &str,
    ty: String,
    args: IndexMap<String, MetaInputValue>,
) -> MetaField {
    MetaField {
        name: name.to_owned(),
        description: doc(description),
        args,
        ty,
        deprecation: Deprecation::NoDeprecated,
        cache_control: CacheControl::default(),
        external: false,
        requires: None,
        provides: None,
        visible: None,
        shareable: false,
        inaccessible: false,
        tags: Vec::new(),
        override_from: None,
        compute_complexity: None,
        directive_invocations: Vec::new(),
        requires_scopes: Vec::new(),
    }
}

fn input_value(arg: EdgeArg, target: Entity) -> MetaInputValue {
    input(arg.name(), &arg.graphql(target), arg.doc(target))
}

/// A schema input value (an argument or an input object's field).
pub(crate) fn input(name: &str, ty: &str, description: &str) -> MetaInputValue {
    MetaInputValue {
        name: name.to_owned(),
        description: doc(description),
        ty: ty.to_owned(),
        deprecation: Deprecation::NoDeprecated,
        default_value: None,
        visible: None,
        inaccessible: false,
        tags: Vec::new(),
        is_secret: false,
        directive_invocations: Vec::new(),
    }
}

pub(crate) fn object_type(
    name: String,
    description: Option<String>,
    fields: IndexMap<String, MetaField>,
) -> MetaType {
    MetaType::Object {
        name,
        description,
        fields,
        cache_control: CacheControl::default(),
        extends: false,
        shareable: false,
        resolvable: true,
        keys: None,
        visible: None,
        inaccessible: false,
        interface_object: false,
        tags: Vec::new(),
        is_subscription: false,
        rust_typename: None,
        directive_invocations: Vec::new(),
        requires_scopes: Vec::new(),
    }
}

/// Registers `XAggregate` of `entity` and its `XSumFields`, ... types (once); gives the
/// field type `XAggregate!`.
pub fn register_aggregate(entity: Entity, registry: &mut Registry) -> String {
    let names = aggregate_names(entity);
    let name = names[0].to_owned();
    if !registry.types.contains_key(&name) {
        // Reserve the name first: the types below do not refer back, but keep it simple.
        drop(<i32 as OutputType>::create_type_info(registry));
        drop(<f64 as OutputType>::create_type_info(registry));
        let mut fields = IndexMap::new();
        fields.insert(
            "count".to_owned(),
            meta_field(
                "count",
                "How many rows match (0 when none).",
                "Int!".to_owned(),
                IndexMap::new(),
            ),
        );
        for (i, func) in AggFunc::ALL.into_iter().enumerate() {
            let cols = entity.aggregated(func);
            if cols.is_empty() {
                continue;
            }
            let fields_name = names[i + 1].to_owned();
            let mut inner = IndexMap::new();
            for (_, col) in cols {
                register_kind(col.kind, registry);
                let field = col.field.unwrap_or_default();
                inner.insert(
                    field.to_owned(),
                    meta_field(
                        field,
                        &format!(
                            "The {} of `{field}` (null when no row matches).",
                            func.name()
                        ),
                        func.graphql(col.kind).to_owned(),
                        IndexMap::new(),
                    ),
                );
            }
            registry.types.insert(
                fields_name.clone(),
                object_type(
                    fields_name.clone(),
                    Some(format!(
                        "The {} of each {} field it applies to.",
                        func.name(),
                        entity.desc().name
                    )),
                    inner,
                ),
            );
            fields.insert(
                func.name().to_owned(),
                meta_field(
                    func.name(),
                    &format!("The {} of each field it applies to.", func.name()),
                    format!("{fields_name}!"),
                    IndexMap::new(),
                ),
            );
        }
        registry.types.insert(
            name.clone(),
            object_type(
                name.clone(),
                Some(format!(
                    "Aggregates over a list of {} rows.",
                    entity.desc().name
                )),
                fields,
            ),
        );
    }
    format!("{name}!")
}

/// The arguments of a connection field, beyond a relationship's own filters and order.
pub const PAGE_ARGS: [(&str, &str, &str); 4] = [
    (
        "first",
        "Int",
        "The first this many rows (after `after`); at most the configured maximum. Default: \
         20 when neither `first` nor `last` is given.",
    ),
    (
        "after",
        "String",
        "Only rows after this cursor (an `endCursor` or edge `cursor` of the same list and \
         `orderBy`).",
    ),
    (
        "last",
        "Int",
        "The last this many rows (before `before`); not together with `first`.",
    ),
    (
        "before",
        "String",
        "Only rows before this cursor (a `startCursor` or edge `cursor` of the same list and \
         `orderBy`).",
    ),
];

/// The page arguments of a connection field, as schema input values.
pub fn page_input_values() -> impl Iterator<Item = (String, MetaInputValue)> {
    PAGE_ARGS
        .iter()
        .map(|(n, t, d)| ((*n).to_owned(), input(n, t, d)))
}

/// Object fields without arguments: `(name, type, documentation)`.
fn plain_fields(list: &[(&str, String, &str)]) -> IndexMap<String, MetaField> {
    list.iter()
        .map(|(name, ty, text)| {
            (
                (*name).to_owned(),
                meta_field(name, text, ty.clone(), IndexMap::new()),
            )
        })
        .collect()
}

/// Registers `PageInfo` (once).
fn register_page_info(registry: &mut Registry) {
    if registry.types.contains_key("PageInfo") {
        return;
    }
    let fields = plain_fields(&[
        (
            "hasNextPage",
            "Boolean!".to_owned(),
            "Whether more rows follow the page (paging forward with `first`; false when \
             paging with `last`).",
        ),
        (
            "hasPreviousPage",
            "Boolean!".to_owned(),
            "Whether more rows precede the page (paging backward with `last`; false when \
             paging with `first`).",
        ),
        (
            "startCursor",
            "String".to_owned(),
            "The cursor of the page's first row; null when the page is empty.",
        ),
        (
            "endCursor",
            "String".to_owned(),
            "The cursor of the page's last row; null when the page is empty.",
        ),
    ]);
    registry.types.insert(
        "PageInfo".to_owned(),
        object_type(
            "PageInfo".to_owned(),
            Some("Where a page of a connection is in its list.".to_owned()),
            fields,
        ),
    );
}

/// Registers `PageInfo`, `XEdge` and `XConnection` of `entity` (once); gives the field type
/// `XConnection!`.
pub fn register_connection(entity: Entity, registry: &mut Registry) -> String {
    let [name, edge] = connection_names(entity).map(str::to_owned);
    if registry.types.contains_key(&name) {
        return format!("{name}!");
    }
    let node = register_entity(entity, registry);
    drop(<String as OutputType>::create_type_info(registry));
    drop(<bool as OutputType>::create_type_info(registry));
    drop(<i32 as OutputType>::create_type_info(registry));
    register_page_info(registry);
    let type_name = entity.desc().name;
    let fields = plain_fields(&[
        (
            "cursor",
            "String!".to_owned(),
            "An opaque position of this row in its list (its sort keys and id): pass it as \
             `after` or `before`.",
        ),
        ("node", node.clone(), "The row."),
    ]);
    registry.types.insert(
        edge.clone(),
        object_type(
            edge.clone(),
            Some(format!(
                "{} {type_name} in a connection, with its cursor.",
                if crate::model::article(type_name) == "an" {
                    "An"
                } else {
                    "A"
                }
            )),
            fields,
        ),
    );
    let fields = plain_fields(&[
        (
            "edges",
            format!("[{edge}!]!"),
            "The page's rows with their cursors, in list order.",
        ),
        (
            "nodes",
            format!("[{node}]!"),
            "The page's rows, in list order (`edges { node }` without the cursors).",
        ),
        (
            "pageInfo",
            "PageInfo!".to_owned(),
            "Where the page is in its list.",
        ),
        (
            "totalCount",
            "Int!".to_owned(),
            "How many rows the whole list has (every page, under its filters). Costs one \
             grouped count statement per edge and argument set, and only when selected.",
        ),
    ]);
    registry.types.insert(
        name.clone(),
        object_type(
            name.clone(),
            Some(format!(
                "A page of a list of {type_name} rows, by the Relay cursor connections \
                 specification: keyset cursors, one statement per level and argument set."
            )),
            fields,
        ),
    );
    format!("{name}!")
}

/// A page of a root connection (`Query.ordersConnection`): the rows loaded (the page's, and
/// one more when there is a next page in its direction), its arguments and, when selected,
/// the total count. Written by the renderer.
pub struct Connection {
    /// The rows' entity.
    pub entity: Entity,
    /// The rows, in the order they were read (reversed for `last`).
    pub objs: Objs,
    /// The order and page.
    pub args: EdgeArgs,
    /// The list's count, when `totalCount` is selected.
    pub total: Option<i64>,
}

/// The schema type of an entity, from its description.
fn meta_type(entity: Entity, registry: &mut Registry) -> MetaType {
    let desc = entity.desc();
    let mut fields = IndexMap::new();
    for col in desc.columns {
        let Some(name) = col.field else { continue };
        register_kind(col.kind, registry);
        fields.insert(
            name.to_owned(),
            meta_field(
                name,
                col.doc,
                col.kind.graphql().to_owned(),
                IndexMap::new(),
            ),
        );
    }
    for rel in desc.relations {
        // The qualified (non-null) name: `User!`.
        let target = register_entity(rel.target, registry);
        let mut args = IndexMap::new();
        for arg in rel.args {
            register_arg(*arg, rel.target, registry);
            args.insert(arg.name().to_owned(), input_value(*arg, rel.target));
        }
        let ty = if rel.is_many() {
            format!("[{target}]!")
        } else {
            target
        };
        fields.insert(
            rel.field.to_owned(),
            meta_field(rel.field, rel.doc, ty, args),
        );
    }
    for rel in desc.relations.iter().filter(|r| r.is_many()) {
        let name = format!("{}{CONNECTION_SUFFIX}", rel.field);
        let ty = register_connection(rel.target, registry);
        let mut args: IndexMap<String, MetaInputValue> = page_input_values().collect();
        for arg in rel.args.iter().filter(|a| !matches!(a, EdgeArg::First(_))) {
            register_arg(*arg, rel.target, registry);
            args.insert(arg.name().to_owned(), input_value(*arg, rel.target));
        }
        let doc = format!(
            "`{}` as a cursor connection: pages per parent (each parent's first or last \
             rows), for all parents of a level in one statement.",
            rel.field
        );
        fields.insert(name.clone(), meta_field(&name, &doc, ty, args));
    }
    for rel in desc.relations.iter().filter(|r| r.is_many()) {
        let name = format!("{}{AGGREGATE_SUFFIX}", rel.field);
        let ty = register_aggregate(rel.target, registry);
        let mut args = IndexMap::new();
        for arg in rel
            .args
            .iter()
            .filter(|a| matches!(a, EdgeArg::Filter(_) | EdgeArg::Where(_)))
        {
            register_arg(*arg, rel.target, registry);
            args.insert(arg.name().to_owned(), input_value(*arg, rel.target));
        }
        let doc = format!(
            "Aggregates of `{}`: a count, and sums, averages, minimums and maximums of its \
             fields, for all parents of a level in one grouped statement (no {} row is read).",
            rel.field,
            rel.target.desc().name
        );
        fields.insert(name.clone(), meta_field(&name, &doc, ty, args));
    }
    object_type(desc.name.to_owned(), doc(desc.doc), fields)
}

impl<T: Typed> Object<T> {
    /// The object, if `obj` is of this type's entity.
    pub fn of(obj: Obj) -> Option<Self> {
        (obj.entity() == T::ENTITY).then_some(Object(obj, PhantomData))
    }
}

/// Keeps the objects of type `T` of a list.
pub fn typed<T: Typed>(objs: Vec<Obj>) -> Vec<Object<T>> {
    objs.into_iter().filter_map(Object::of).collect()
}

/// The first object of type `T` of a list, if any.
pub fn first<T: Typed>(objs: Vec<Obj>) -> Option<Object<T>> {
    objs.into_iter().find_map(Object::of)
}
