//! What every request handler shares: the schema, the request preparer, the pool, the
//! configuration and the bounded services (password hashing, persisted queries).

use std::sync::Arc;

use crate::auth::password::Hasher;
use crate::auth::{Keys, LoginLimiter};
use crate::config::ServeConfig;
use crate::db::{Db, StatementHook};
use crate::documents::trusted::Trusted;
use crate::graphql::operation::Preparer;
use crate::graphql::{AppSchema, build_schema};
use crate::observe::metrics::Metrics;

/// Any start-up failure.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What every handler shares: cloned for each request, so one reference count, not one per
/// part.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
#[derive(Clone)]
pub struct Shared {
    /// The GraphQL schema.
    pub schema: AppSchema,
    /// Validates requests and rewrites them into the canonical documents the schema runs.
    pub preparer: Arc<Preparer>,
    /// Plans made ahead of running, by canonical form, variables and viewer.
    pub plans: Arc<crate::graphql::operation::Plans>,
    /// The password hashing workers (bounded threads and memory).
    pub hasher: Hasher,
    /// Signs and checks access tokens.
    pub keys: Arc<Keys>,
    /// Failed logins per account and address.
    pub limiter: Arc<LoginLimiter>,
    /// Automatic persisted queries: documents by SHA-256, bounded.
    pub persisted: Arc<crate::documents::persisted::Store>,
    /// Counters and histograms for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Trusted documents (`EAGERQL_TRUSTED_DOCUMENTS`).
    pub trusted: Arc<Trusted>,
    /// The connection pool.
    pub db: Db,
    /// The configuration.
    pub config: Arc<ServeConfig>,
    /// WebSocket connections open now, at most `EAGERQL_WS_MAX_CONNECTIONS`.
    pub sockets: Arc<tokio::sync::Semaphore>,
    /// Set when the server begins to shut down: WebSockets close with 1001 and event streams
    /// end, so that the graceful shutdown does not wait for them.
    pub closing: Arc<tokio::sync::watch::Sender<bool>>,
    /// Live subscriptions (see [`crate::live`]).
    pub live: Arc<crate::live::Registry>,
    /// Called after every statement of every request (tests and diagnostics; `None` in
    /// production).
    pub statement_hook: Option<StatementHook>,
}

impl AppState {
    /// Builds the state for an already opened (and migrated) pool, with its token keys.
    pub fn new(db: Db, config: ServeConfig, keys: Keys) -> Result<Self, BoxError> {
        let schema = build_schema();
        let preparer = Preparer::new(
            &schema.sdl(),
            config.document_limits(),
            config.document_cache(),
        )?;
        let trusted = Trusted::load(&config.trusted_manifests())?;
        let preparer = Arc::new(preparer);
        let persisted = Arc::new(crate::documents::persisted::Store::new(
            config.documents.persisted_queries,
            config.documents.persisted_queries.saturating_mul(16 << 10),
        ));
        let live = Arc::new(crate::live::Registry::default());
        let metrics = Arc::new(Metrics::new(
            db.clone(),
            config.db.pool().max_connections,
            preparer.clone(),
            persisted.clone(),
            live.clone(),
        ));
        Ok(AppState(Arc::new(Shared {
            schema,
            preparer,
            plans: Arc::new(crate::graphql::operation::Plans::new(
                config.document_cache(),
            )),
            hasher: Hasher::start_default()?,
            keys: Arc::new(keys),
            limiter: Arc::new(config.login_limiter()),
            persisted,
            metrics,
            trusted: Arc::new(trusted),
            db,
            sockets: Arc::new(tokio::sync::Semaphore::new(
                config
                    .limits
                    .ws_max_connections
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            config: Arc::new(config),
            live,
            closing: Arc::new(tokio::sync::watch::Sender::new(false)),
            statement_hook: None,
        })))
    }

    /// The same state with `hook` called after every statement of every request.
    pub fn with_statement_hook(&self, hook: Option<StatementHook>) -> AppState {
        let mut shared = Shared::clone(self);
        shared.statement_hook = hook;
        AppState(Arc::new(shared))
    }
}
