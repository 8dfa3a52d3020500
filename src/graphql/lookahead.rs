//! The current field's selection as the planner's [`Field`] tree. The executor runs
//! canonical documents (see [`super::operation`]): fragments are already inlined,
//! `@skip`/`@include` applied and variables substituted, so this is a plain conversion.

use async_graphql::SelectionField;

use crate::planner::Field;

/// The sub-selection of `field`.
pub fn selection(field: &SelectionField<'_>) -> async_graphql::Result<Vec<Field>> {
    let mut out = Vec::new();
    for child in field.selection_set() {
        out.push(Field {
            name: child.name().to_owned(),
            args: child
                .arguments()?
                .into_iter()
                .map(|(n, v)| (n.to_string(), v))
                .collect(),
            children: selection(&child)?,
        });
    }
    Ok(out)
}
