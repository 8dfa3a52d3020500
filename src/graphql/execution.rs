//! Marks the start of execution, so that the HTTP layer can tell a request error (parse,
//! validation or variable coercion: the response has no `data`) from an execution error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::Response;
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};

/// Attached to a request as `Arc<ExecutionStarted>`; set once execution begins.
#[derive(Default, Debug)]
pub struct ExecutionStarted(AtomicBool);

impl ExecutionStarted {
    /// Whether parsing and validation succeeded and execution began.
    pub fn started(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The schema extension that sets [`ExecutionStarted`].
pub struct ExecutionMarker;

impl ExtensionFactory for ExecutionMarker {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ExecutionMarkerExt)
    }
}

struct ExecutionMarkerExt;

#[async_graphql::async_trait::async_trait]
impl Extension for ExecutionMarkerExt {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if let Some(flag) = ctx.data_opt::<Arc<ExecutionStarted>>() {
            flag.0.store(true, Ordering::Release);
        }
        next.run(ctx, operation_name).await
    }
}
