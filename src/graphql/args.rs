//! Argument checks shared by the query root and the reports.

use async_graphql::Context;

use super::RequestContext;
use crate::error::AppError;
use crate::planner::check_first;

/// Checks a root page: `first` within the configured cap, `offset` not negative.
pub fn page_args(
    ctx: &Context<'_>,
    what: &str,
    first: i32,
    offset: i32,
) -> Result<(i64, i64), AppError> {
    let limits = RequestContext::of(ctx)?.limits;
    let first = check_first(i64::from(first), what, limits)?;
    if offset < 0 {
        return Err(AppError::bad_input(format!(
            "{what}: `offset` must not be negative, got {offset}"
        )));
    }
    Ok((first, i64::from(offset)))
}
