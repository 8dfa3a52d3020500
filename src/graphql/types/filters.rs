//! The schema of `where` filters, from the entity description: one `XWhere` input per entity
//! (a field per column, by its kind's operator input; a field per relationship; `and`, `or`,
//! `not`), `XListFilter { some none }` per to-many target, and the operator inputs
//! (`StringFilter`, ...). What they mean is [`crate::planner::filter`].

use async_graphql::indexmap::IndexMap;
use async_graphql::registry::{MetaInputValue, MetaType, Registry};

use super::register_kind;
use crate::entities::{Entity, Kind, Link};
use crate::planner::filter::{
    MAX_FILTER_TERMS, MAX_IN_VALUES, kind_filter, list_filter_type, where_type,
};

fn input(name: &str, ty: String, description: String) -> (String, MetaInputValue) {
    (name.to_owned(), super::input(name, &ty, &description))
}

fn input_object(
    registry: &mut Registry,
    name: String,
    description: String,
    fields: IndexMap<String, MetaInputValue>,
) {
    registry.types.insert(
        name.clone(),
        MetaType::InputObject {
            name,
            description: Some(description),
            input_fields: fields,
            visible: None,
            inaccessible: false,
            tags: Vec::new(),
            rust_typename: None,
            oneof: false,
            directive_invocations: Vec::new(),
        },
    );
}

/// The kinds of the described fields, one per filter input type (a nullable kind shares its
/// non-null kind's type).
fn kinds() -> Vec<Kind> {
    let mut out: Vec<Kind> = Vec::new();
    for col in Entity::ALL.iter().flat_map(|e| e.desc().columns) {
        let named = |k: &Kind| kind_filter(*k).0 == kind_filter(col.kind).0;
        if col.field.is_some() && !out.iter().any(named) {
            out.push(col.kind);
        }
    }
    out
}

fn op_doc(op: &str, scalar: &str) -> String {
    match op {
        "eq" => "Equal to.".to_owned(),
        "gt" => "Greater than.".to_owned(),
        "gte" => "Greater than or equal to.".to_owned(),
        "lt" => "Less than.".to_owned(),
        "lte" => "Less than or equal to.".to_owned(),
        "in" => format!(
            "One of these {scalar} values (at most {MAX_IN_VALUES}; an empty list matches nothing)."
        ),
        "contains" => "Contains this text, ignoring ASCII case.".to_owned(),
        "startsWith" => "Starts with this text, ignoring ASCII case.".to_owned(),
        _ => "True: only null values; false: only non-null values.".to_owned(),
    }
}

/// Registers every `where` input type (once).
pub fn register_filters(registry: &mut Registry) {
    if registry.types.contains_key(&where_type(Entity::User)) {
        return;
    }
    for kind in kinds() {
        register_kind(kind, registry);
        let (name, ops) = kind_filter(kind);
        let scalar = kind.graphql().trim_end_matches('!');
        let fields = ops
            .iter()
            .map(|op| {
                let ty = match *op {
                    "in" => format!("[{scalar}!]"),
                    "isNull" => "Boolean".to_owned(),
                    _ => scalar.to_owned(),
                };
                input(op, ty, op_doc(op, scalar))
            })
            .collect();
        input_object(
            registry,
            name.to_owned(),
            format!(
                "Conditions on {} {scalar} field; every one given must hold.",
                crate::model::article(scalar)
            ),
            fields,
        );
    }
    for entity in Entity::ALL {
        let desc = entity.desc();
        let name = where_type(entity);
        let mut fields: IndexMap<String, MetaInputValue> = IndexMap::new();
        for col in desc.columns {
            let Some(field) = col.field else { continue };
            let (ty, _) = kind_filter(col.kind);
            fields.insert(
                field.to_owned(),
                input(field, ty.to_owned(), format!("Conditions on `{field}`.")).1,
            );
        }
        for rel in desc.relations {
            let (ty, doc) = match rel.link {
                Link::ForeignKey(_) => (
                    where_type(rel.target),
                    format!("Conditions on the `{}` row.", rel.field),
                ),
                _ => (
                    list_filter_type(rel.target),
                    format!("Conditions on the `{}` rows.", rel.field),
                ),
            };
            fields.insert(rel.field.to_owned(), input(rel.field, ty, doc).1);
        }
        for (op, ty, doc) in [
            ("and", format!("[{name}!]"), "Every one of these holds."),
            (
                "or",
                format!("[{name}!]"),
                "At least one of these holds (an empty list matches nothing).",
            ),
            ("not", name.clone(), "This does not hold."),
        ] {
            fields.insert(op.to_owned(), input(op, ty, doc.to_owned()).1);
        }
        input_object(
            registry,
            name.clone(),
            format!(
                "A filter of {} rows: every field given must hold. At most \
                 {MAX_FILTER_TERMS} conditions in all.",
                desc.name
            ),
            fields,
        );
        let list = list_filter_type(entity);
        let fields = [
            input(
                "some",
                name.clone(),
                "At least one related row matches.".to_owned(),
            ),
            input("none", name.clone(), "No related row matches.".to_owned()),
        ]
        .into_iter()
        .collect();
        input_object(
            registry,
            list,
            format!("Conditions on a list of related {} rows.", desc.name),
            fields,
        );
    }
}
