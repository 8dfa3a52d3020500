//! The `Query` root. Its entity roots (`order`, `orders`, `ordersConnection`,
//! `ordersAggregate`, ...) are generated from the entities' description
//! ([`crate::planner::roots`]): one generic resolver per kind of root, the access rule
//! and arguments of the description, and the schema fields registered from it. `me` and
//! `analytics` are written by hand. Every root field plans its whole sub-selection before
//! sending any SQL.

use std::borrow::Cow;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::Field as AstField;
use async_graphql::registry::{MetaField, MetaInputValue, MetaType, MetaTypeId, Registry};
use async_graphql::{
    ContainerType, Context, ContextSelectionSet, ObjectType, OutputType, Positioned, ServerResult,
    Value,
};

use super::analytics::Analytics;
use super::preload;
use super::render::{self, Answer, Rendered};
use super::types::{
    Connection, PAGE_ARGS, User, first, input, meta_field, object_type, register_aggregate,
    register_connection, register_entity, register_filters, register_kind, register_order_by,
};
use super::{RequestContext, render::write_aggregate};
use crate::db::Reserved;
use crate::db::load::{self, AggRow, RootQuery};
use crate::entities::{Access, Entity, ORDER_BY_DOC, Visibility, WHERE_DOC};
use crate::error::{AppError, AppResult};
use crate::planner::roots::{
    DEFAULT_LIST_SIZE, RootArgs, RootField, RootKind, root_field, root_fields,
};

/// Read access to the entities, the signed-in account and the reports.
pub struct Query;

const QUERY_DOC: &str = "Read access to users, orders and products. Every root field plans its \
whole sub-selection before any SQL runs: one statement for the root rows (to-one relations \
joined in) plus one per selected to-many relation. Every load shows only the rows the viewer \
may see: customers their own account and orders, anonymous viewers the catalogue.";

const ME_DOC: &str = "The signed-in account, or null when the request is anonymous.";

const ANALYTICS_DOC: &str =
    "Revenue reports computed by aggregate SQL in the database (administrators only).";

/// The signed-in account.
async fn me(ctx: &Context<'_>) -> AppResult<Rendered<Option<User>>> {
    let Some(id) = RequestContext::of(ctx)?.viewer.user_id() else {
        return Ok(Rendered(None, None));
    };
    let (objs, view) = preload::load_root(ctx, Entity::User, RootQuery::ById(id)).await?;
    Ok(Rendered::planned(first(objs), &view))
}

/// Passes when the viewer may use `root`.
fn allowed(rc: &RequestContext, root: &RootField) -> AppResult<()> {
    match root.access {
        Access::Anyone => Ok(()),
        Access::SignedIn => rc.require_user().map(drop),
        Access::Admin => rc.require_admin(&root.name),
    }
}

/// Answers the generated root `root` for the field `ctx` resolves: its access rule, its
/// arguments, its statements, and the JSON text of its answer.
async fn answer(ctx: &Context<'_>, root: &RootField) -> AppResult<Value> {
    let rc = RequestContext::of(ctx)?;
    allowed(rc, root)?;
    let given = ctx
        .field()
        .arguments()
        .map_err(|e| AppError::BadInput(e.message))?;
    let args = root.read(given.iter().map(|(n, v)| (n.as_str(), v)), rc.limits)?;
    let entity = root.entity;
    match args {
        RootArgs::ById(id) => {
            let (objs, view) = preload::load_root(ctx, entity, RootQuery::ById(id)).await?;
            let answer = Answer::One(entity, objs.into_iter().next());
            render::write_answer(ctx, &answer, &view).await
        }
        RootArgs::List {
            first,
            offset,
            order,
            filter,
        } => {
            let q = RootQuery::Page {
                first,
                offset,
                order,
                filter,
            };
            let (objs, view) = preload::load_root(ctx, entity, q).await?;
            render::write_answer(ctx, &Answer::List(entity, objs), &view).await
        }
        RootArgs::Connection { args, filter } => {
            let (objs, total, view) =
                preload::load_connection(ctx, entity, args.clone(), filter).await?;
            let page = Connection {
                entity,
                objs,
                args,
                total,
            };
            render::write_answer(ctx, &Answer::Page(page), &view).await
        }
        RootArgs::Aggregate { filter } => {
            let (view, what) = render::aggregate_view(ctx, entity)?;
            let reserved = rc.session.log().reserve_plan(
                preload::key(ctx),
                1,
                || serde_json::json!({ "aggregate": entity.desc().name }),
            )?;
            let row = match reserved {
                Reserved::Run => {
                    load::fetch_total(&rc.session, entity, filter.as_deref(), &what).await?
                }
                Reserved::PlanOnly => AggRow::empty(what.len()),
            };
            write_aggregate(entity, &view, &what, &row)
        }
    }
}

impl ContainerType for Query {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        let failed = |e: AppError| {
            ctx.set_error_path(async_graphql::Error::from(e).into_server_error(ctx.item.pos))
        };
        let name = ctx.item.node.name.node.as_str();
        if let Some(root) = root_field(name) {
            return Box::pin(answer(ctx, root)).await.map(Some).map_err(failed);
        }
        let fields = ctx.with_selection_set(&ctx.item.node.selection_set);
        match name {
            "me" => {
                let value = me(ctx).await.map_err(failed)?;
                OutputType::resolve(&value, &fields, ctx.item)
                    .await
                    .map(Some)
            }
            "analytics" => {
                RequestContext::of(ctx)
                    .and_then(|rc| rc.require_admin("analytics"))
                    .map_err(failed)?;
                OutputType::resolve(&Analytics, &fields, ctx.item)
                    .await
                    .map(Some)
            }
            _ => Ok(None),
        }
    }
}

impl OutputType for Query {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("Query")
    }

    fn create_type_info(registry: &mut Registry) -> String {
        registry.create_output_type::<Self, _>(MetaTypeId::Object, |registry| {
            let fields = read_fields(registry);
            let mut ty = object_type("Query".to_owned(), Some(QUERY_DOC.to_owned()), fields);
            if let MetaType::Object { rust_typename, .. } = &mut ty {
                *rust_typename = Some(std::any::type_name::<Self>());
            }
            ty
        })
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<AstField>,
    ) -> ServerResult<Value> {
        async_graphql::resolver_utils::resolve_container(ctx, self).await
    }
}

impl ObjectType for Query {}

/// The read roots: `me`, the entity roots of the description, and `analytics` (the
/// `Query` type's fields, mirrored by `Subscription`).
pub(super) fn read_fields(registry: &mut Registry) -> IndexMap<String, MetaField> {
    let mut fields = IndexMap::new();
    let me = <Option<User> as OutputType>::create_type_info(registry);
    fields.insert(
        "me".to_owned(),
        meta_field("me", ME_DOC, me, IndexMap::new()),
    );
    for root in root_fields() {
        fields.insert(root.name.clone(), root_meta(root, registry));
    }
    let analytics = <Analytics as OutputType>::create_type_info(registry);
    fields.insert(
        "analytics".to_owned(),
        meta_field("analytics", ANALYTICS_DOC, analytics, IndexMap::new()),
    );
    fields
}

/// The schema field of a generated root: its type, arguments and documentation, from the
/// description.
fn root_meta(root: &RootField, registry: &mut Registry) -> MetaField {
    let entity = root.entity;
    let desc = entity.desc();
    let node = register_entity(entity, registry);
    let ty = match root.kind {
        RootKind::ById => node.trim_end_matches('!').to_owned(),
        RootKind::List => format!("[{node}]!"),
        RootKind::Connection => register_connection(entity, registry),
        RootKind::Aggregate => register_aggregate(entity, registry),
    };
    let mut args = IndexMap::new();
    for name in root.arg_names().iter().copied() {
        args.insert(name.to_owned(), arg_meta(root, name, registry));
    }
    let rows = root_rows(root);
    let doc = match root.kind {
        RootKind::ById => format!(
            "One `{}` by id, or null if there is none or the viewer may not see it.",
            desc.name
        ),
        RootKind::List => {
            format!("{rows} in `orderBy` order (by id by default), a page at a time.")
        }
        RootKind::Connection => {
            format!("{rows} as a cursor connection: keyset pages in `orderBy` order.")
        }
        RootKind::Aggregate => format!(
            "Aggregates over the `{}` rows the viewer may see, in one statement.",
            desc.name
        ),
    };
    meta_field(&root.name, &format!("{doc}{}", who(root)), ty, args)
}

/// The rows a list root reads, as its documentation names them.
fn root_rows(root: &RootField) -> String {
    let name = root
        .name
        .trim_end_matches(crate::entities::CONNECTION_SUFFIX);
    let mut chars = name.chars();
    chars
        .next()
        .map_or_else(String::new, |c| c.to_uppercase().chain(chars).collect())
}

/// Who may use a root and which rows it shows, as its documentation says it.
fn who(root: &RootField) -> String {
    let access = match root.access {
        Access::Anyone => "",
        Access::SignedIn => " Signed-in viewers only.",
        Access::Admin => " Administrators only.",
    };
    let rows = match root.entity.desc().visibility {
        Visibility::Public => "",
        Visibility::Owner(_) | Visibility::Through { .. } if root.access == Access::Admin => "",
        Visibility::Owner(_) | Visibility::Through { .. } => {
            " A customer sees only their own; an administrator sees every row."
        }
    };
    format!("{access}{rows}")
}

/// The schema input value of a generated root's argument `name`.
fn arg_meta(root: &RootField, name: &str, registry: &mut Registry) -> MetaInputValue {
    let entity = root.entity;
    let page = || PAGE_ARGS.iter().find(|(n, _, _)| *n == name);
    let described = entity.desc().filter_args.iter().find(|f| f.arg == name);
    if let Some(filter) = described {
        let col = entity
            .column_named(filter.column)
            .map(|c| entity.desc().columns[c].kind);
        let kind = col.unwrap_or(crate::entities::Kind::Id);
        register_kind(kind, registry);
        return input(name, kind.graphql().trim_end_matches('!'), filter.doc);
    }
    match (root.kind, name) {
        (RootKind::ById, _) => {
            register_kind(crate::entities::Kind::Id, registry);
            input(
                name,
                "ID!",
                &format!("The id of the `{}`.", entity.desc().name),
            )
        }
        (RootKind::List, "first") => {
            let mut v = input(
                name,
                "Int!",
                "Page size (at most the configured maximum, 1000 by default).",
            );
            v.default_value = Some(DEFAULT_LIST_SIZE.to_string());
            v
        }
        (RootKind::List, "offset") => {
            let mut v = input(name, "Int!", "Rows skipped before the page starts.");
            v.default_value = Some("0".to_owned());
            v
        }
        (_, "orderBy") => {
            let ty = register_order_by(entity, registry);
            input(name, &format!("[{ty}!]"), ORDER_BY_DOC)
        }
        (_, "where") => {
            register_filters(registry);
            input(name, &crate::planner::filter::where_type(entity), WHERE_DOC)
        }
        // The connection's page arguments; `arg_names` names no other.
        _ => {
            let (n, t, d) = page()
                .unwrap_or_else(|| panic!("{}: `{name}` is not a described argument", root.name));
            input(n, t, d)
        }
    }
}
