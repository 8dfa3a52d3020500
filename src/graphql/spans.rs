//! The `plan` span of each root field, when traces are exported (see
//! [`crate::observe::telemetry`]): the field's planning and its statements run inside it. Only root
//! fields get one; nested fields are rendered from planned rows and run no statement of
//! their own.

use std::sync::Arc;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo,
};
use async_graphql::{ServerResult, Value};
use tracing::Instrument as _;

/// Registers [`RootFieldSpan`] on a schema.
pub struct RootFieldSpans;

impl ExtensionFactory for RootFieldSpans {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RootFieldSpan)
    }
}

/// Wraps each root field's resolution in a `plan` span (`mutation` for a mutation's field)
/// named by its response key; [`crate::db::StatementLog::reserve_plan`] records the
/// statements it planned.
pub struct RootFieldSpan;

#[async_graphql::async_trait::async_trait]
impl Extension for RootFieldSpan {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        if info.path_node.parent.is_some() || info.is_for_introspection {
            return next.run(ctx, info).await;
        }
        let key = info.alias.unwrap_or(info.name).to_owned();
        let span = if info.parent_type == "Mutation" {
            tracing::debug_span!(
                "mutation",
                graphql.field.name = %key,
                eagerql.statements = tracing::field::Empty,
            )
        } else {
            tracing::debug_span!(
                "plan",
                graphql.field.name = %key,
                eagerql.statements = tracing::field::Empty,
            )
        };
        next.run(ctx, info).instrument(span).await
    }
}
