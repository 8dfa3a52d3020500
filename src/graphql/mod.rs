//! The GraphQL API: schema, root resolvers, object types and the plan executor.

pub mod analytics;
pub mod args;
pub mod execution;
pub mod handler;
pub mod lazy;
pub mod lookahead;
pub mod mutation;
pub mod operation;
pub mod preload;
pub mod query;
pub mod render;
pub mod scalars;
pub mod spans;
pub mod subscription;
pub mod types;

use async_graphql::{ID, Schema};

use crate::db::Session;
use crate::error::AppError;
use crate::planner::Limits;

/// The server's schema type.
pub type AppSchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

/// Builds the schema. It executes canonical documents (see [`operation`]), which were
/// validated in full and checked against every limit (depth, fields, complexity) before they
/// were rewritten, so its own validation pass refuses nothing.
pub fn build_schema() -> AppSchema {
    let schema = Schema::build(query::Query, mutation::Mutation, subscription::Subscription)
        .validation_mode(async_graphql::ValidationMode::Fast);
    if crate::observe::telemetry::traces_on() {
        schema.extension(spans::RootFieldSpans).finish()
    } else {
        schema.finish()
    }
}

/// The schema in SDL, as committed in `schema.graphql`.
pub fn sdl() -> String {
    build_schema().sdl()
}

/// What every resolver of one request shares: the request's database session (and so its
/// statement log), the planner's limits, and whether unplanned loads are errors.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// The request's database session.
    pub session: Session,
    /// Planner limits.
    pub limits: Limits,
    /// The lesson's `lazy="raise"`: a relationship no plan loaded is an error, not a query.
    pub strict: bool,
    /// Whether root fields plan their relationships (`EAGERQL_PLAN=eager`) or leave them to
    /// the lazy loader.
    pub eager: bool,
    /// The password hashing workers.
    pub hasher: crate::auth::password::Hasher,
    /// Who sends the request (from its access token alone).
    pub viewer: crate::model::Viewer,
    /// The client's address, when known (failed logins are limited per address).
    pub client: Option<std::net::IpAddr>,
    /// Signs access tokens (login, refresh).
    pub keys: std::sync::Arc<crate::auth::Keys>,
    /// Failed logins per account and address.
    pub limiter: std::sync::Arc<crate::auth::LoginLimiter>,
    /// The response bytes the renderer may still write for this request.
    pub output: std::sync::Arc<OutputBudget>,
    /// The canonical form the request runs, which keeps its root fields' plans (`None`: plan
    /// every root field afresh).
    pub form: Option<operation::Form>,
}

impl RequestContext {
    /// The request's context, as the executor hands it to every resolver (the one place it
    /// is read).
    pub fn of<'a, T>(
        ctx: &async_graphql::context::ContextBase<'a, T>,
    ) -> Result<&'a Self, AppError> {
        ctx.data_opt::<RequestContext>()
            .ok_or_else(|| AppError::internal("the request has no context"))
    }

    /// The signed-in viewer's user id; `UNAUTHENTICATED` for an anonymous request.
    pub fn require_user(&self) -> Result<i64, AppError> {
        self.viewer.user_id().ok_or_else(|| {
            AppError::Unauthenticated(
                "sign in first: send `Authorization: Bearer <access token>` (see `login`)"
                    .to_owned(),
            )
        })
    }

    /// Passes for an administrator; `UNAUTHENTICATED` when anonymous, `FORBIDDEN` otherwise.
    pub fn require_admin(&self, what: &str) -> Result<(), AppError> {
        self.require_user()?;
        if self.viewer.is_admin() {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("{what} is for administrators")))
        }
    }
}

/// The bytes a request's response may still take (see `EAGERQL_MAX_RESPONSE_BYTES`).
#[derive(Debug)]
pub struct OutputBudget {
    left: std::sync::atomic::AtomicUsize,
}

impl OutputBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        OutputBudget {
            left: std::sync::atomic::AtomicUsize::new(cap),
        }
    }

    /// Bytes left.
    pub fn left(&self) -> usize {
        self.left.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Spends `n` bytes (saturating).
    pub fn spend(&self, n: usize) {
        let _ = self.left.fetch_update(
            std::sync::atomic::Ordering::Relaxed,
            std::sync::atomic::Ordering::Relaxed,
            |left| Some(left.saturating_sub(n)),
        );
    }
}

/// Parses a GraphQL `ID` argument into a row id.
pub fn parse_id(id: &ID, what: &str) -> Result<i64, AppError> {
    id.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| AppError::bad_input(format!("{what}: {:?} is not a valid id", id.as_str())))
}
