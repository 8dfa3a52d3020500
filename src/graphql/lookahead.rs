//! The current field's selection as the planner's [`Field`] tree. The executor runs
//! canonical documents (see [`super::operation`]): fragments are already inlined,
//! `@skip`/`@include` applied and variables substituted, so this is a plain conversion. The
//! placeholder that keeps an emptied selection set an object is left out: it writes nothing.

use async_graphql::SelectionField;

use super::operation::EMPTY_SELECTION_KEY;
use crate::planner::Field;

/// The sub-selection of `field`.
pub fn selection(field: &SelectionField<'_>) -> async_graphql::Result<Vec<Field>> {
    let mut out = Vec::new();
    for child in field.selection_set() {
        let alias = child.alias();
        if alias == Some(EMPTY_SELECTION_KEY) {
            continue;
        }
        out.push(Field {
            name: child.name().to_owned(),
            alias: alias.map(str::to_owned),
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
