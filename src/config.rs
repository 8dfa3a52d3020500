//! Configuration: every setting, its environment variable and its default, in one place.
//! `eagerql --help` prints the same list.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::db::{Backend, PoolConfig, Pooler};
use crate::graphql::operation::DocumentLimits;
use crate::planner::Limits;

pub use crate::observe::telemetry::LogFormat;

/// Whether clients may ask for the SQL a request ran (`x-eagerql-debug: sql`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DebugSql {
    /// Allowed on the embedded SQLite database, refused on PostgreSQL.
    Auto,
    /// Always allowed.
    On,
    /// Never allowed.
    Off,
}

/// Settings shared by every subcommand. `Debug` leaves the passwords in its URLs out.
#[derive(Clone, Args)]
pub struct DbConfig {
    /// Database: `postgres://...` for PostgreSQL, or `sqlite:PATH` / a file path for the
    /// embedded SQLite database (created if missing).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite:eagerql.db",
        hide_env_values = true
    )]
    pub database_url: String,

    /// Maximum connections in the pool.
    #[arg(long, env = "EAGERQL_POOL_SIZE", default_value_t = 10)]
    pub pool_size: u32,

    /// Seconds a request waits for a free connection before it fails with SERVICE_UNAVAILABLE.
    #[arg(long, env = "EAGERQL_POOL_TIMEOUT_SECS", default_value_t = 5)]
    pub pool_timeout_secs: u64,

    /// PostgreSQL: longest a single statement may run, in milliseconds (0: no limit). A
    /// statement over it is cancelled by the server and the request gets LIMIT_EXCEEDED.
    #[arg(long, env = "EAGERQL_STATEMENT_TIMEOUT_MS", default_value_t = 10_000)]
    pub statement_timeout_ms: u64,

    /// Statements slower than this many milliseconds are logged at WARN, with their SQL
    /// (0: never).
    #[arg(long, env = "EAGERQL_SLOW_STATEMENT_MS", default_value_t = 1_000)]
    pub slow_statement_ms: u64,

    /// PostgreSQL: what `DATABASE_URL` leads to. `transaction`: a transaction-mode pooler
    /// such as PgBouncer with `pool_mode = transaction` (settings travel with each BEGIN,
    /// no named prepared statements, migrations only checked); `none`: PostgreSQL itself, or
    /// a session-mode pooler.
    #[arg(long, env = "EAGERQL_POOLER", value_enum, default_value_t = Pooler::None)]
    pub pooler: Pooler,

    /// PostgreSQL read replicas, comma-separated URLs: query operations read from them,
    /// round-robin over the healthy ones; mutations use the primary (`DATABASE_URL`).
    #[arg(
        long,
        env = "EAGERQL_REPLICA_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub replica_urls: Vec<String>,

    /// A read replica further behind the primary than this (`10s`, `2m`; `0`: no limit) is
    /// not read from until it catches up; lag is measured from the WAL every second, so to
    /// the second.
    #[arg(long, env = "EAGERQL_REPLICA_MAX_LAG", default_value = "10s", value_parser = parse_duration)]
    pub replica_max_lag: Duration,

    /// After a viewer's write commits, for this long its reads use only replicas that have
    /// replayed it, else the primary (`0`: off). Keep it above EAGERQL_REPLICA_MAX_LAG plus
    /// 2 s.
    #[arg(long, env = "EAGERQL_READ_YOUR_WRITES", default_value = "30s", value_parser = parse_duration)]
    pub read_your_writes: Duration,

    /// PostgreSQL: where the change feed LISTENs for committed writes (one connection per
    /// instance). Default: `DATABASE_URL`, unless `EAGERQL_POOLER=transaction`: a
    /// transaction-mode pooler cannot keep a LISTEN, so give PostgreSQL's own (or a
    /// session-mode pooler's) URL here.
    #[arg(long, env = "EAGERQL_LISTEN_URL", hide_env_values = true)]
    pub listen_url: Option<String>,

    /// How long the change feed gathers committed writes before it hands them on as one
    /// set, in milliseconds: a burst of writes costs one refresh.
    #[arg(long, env = "EAGERQL_LIVE_COALESCE_MS", default_value_t = 20)]
    pub live_coalesce_ms: u64,

    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `eagerql=debug`); when unset,
    /// `RUST_LOG`, the ecosystem's usual variable; when neither is set, `info`.
    #[arg(long, env = "EAGERQL_LOG")]
    pub log: Option<String>,

    /// Log format.
    #[arg(long, env = "EAGERQL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let replicas: Vec<String> = self.replica_urls.iter().map(|u| redacted_url(u)).collect();
        f.debug_struct("DbConfig")
            .field("database_url", &redacted_url(&self.database_url))
            .field("pool_size", &self.pool_size)
            .field("pool_timeout_secs", &self.pool_timeout_secs)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("slow_statement_ms", &self.slow_statement_ms)
            .field("pooler", &self.pooler)
            .field("replica_urls", &replicas)
            .field("replica_max_lag", &self.replica_max_lag)
            .field("read_your_writes", &self.read_your_writes)
            .field("listen_url", &self.listen_url.as_deref().map(redacted_url))
            .field("live_coalesce_ms", &self.live_coalesce_ms)
            .field("log", &self.log)
            .field("log_format", &self.log_format)
            .finish()
    }
}

impl DbConfig {
    /// The log filter: `EAGERQL_LOG`, else `RUST_LOG`, else `info`.
    pub fn log_filter(&self) -> String {
        self.log
            .clone()
            .or_else(|| {
                std::env::var("RUST_LOG")
                    .ok()
                    .filter(|v| !v.trim().is_empty())
            })
            .unwrap_or_else(|| "info".to_owned())
    }

    /// The pool settings.
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            max_connections: self.pool_size.max(1),
            acquire_timeout: Duration::from_secs(self.pool_timeout_secs),
            statement_timeout: (self.statement_timeout_ms > 0)
                .then(|| Duration::from_millis(self.statement_timeout_ms)),
            slow_statement: (self.slow_statement_ms > 0)
                .then(|| Duration::from_millis(self.slow_statement_ms)),
            pooler: self.pooler,
            replica_urls: self
                .replica_urls
                .iter()
                .map(|u| u.trim().to_owned())
                .filter(|u| !u.is_empty())
                .collect(),
            listen_url: self.listen_url.clone().filter(|u| !u.trim().is_empty()),
            change_window: Duration::from_millis(self.live_coalesce_ms),
            // At most a day each: enough for any deployment, and far from `Instant`'s range.
            consistency: crate::db::replicas::Consistency {
                max_lag: (!self.replica_max_lag.is_zero()).then_some(self.replica_max_lag.min(DAY)),
                read_your_writes: self.read_your_writes.min(DAY),
            },
        }
    }

    /// The backend `database_url` names.
    pub fn backend(&self) -> Backend {
        if self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
        {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// Settings of `eagerql serve`, grouped by concern (each group's flags and environment
/// variables are the same as if they were listed here).
#[derive(Clone, Debug, Args)]
pub struct ServeConfig {
    /// Database and logging.
    #[command(flatten)]
    pub db: DbConfig,

    /// Listen address.
    #[arg(long, env = "EAGERQL_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,

    /// Serve HTTPS with this certificate chain (PEM; the server's certificate first):
    /// HTTP/2 and HTTP/1.1 by ALPN. Needs `EAGERQL_TLS_KEY`.
    #[arg(long, env = "EAGERQL_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of `EAGERQL_TLS_CERT` (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "EAGERQL_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Seconds between SIGTERM and closing the listener: meanwhile `/readyz` answers 503
    /// `draining` and requests are still served, so a load balancer's health check takes the
    /// instance out of rotation before it stops accepting connections.
    #[arg(long, env = "EAGERQL_SHUTDOWN_DELAY_SECS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub shutdown_delay_secs: u64,

    /// Seconds in-flight requests get to finish once the listener is closed; then the server
    /// exits anyway.
    #[arg(long, env = "EAGERQL_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_timeout_secs: u64,

    /// Apply pending migrations on start.
    #[arg(long, env = "EAGERQL_MIGRATE", default_value_t = true, action = clap::ArgAction::Set)]
    pub migrate: bool,

    /// Load the small demo data set when the database is empty.
    #[arg(long, env = "EAGERQL_DEMO_DATA", default_value_t = true, action = clap::ArgAction::Set)]
    pub demo_data: bool,

    /// Origins allowed to call the API from a browser (comma list, or `*` for any origin
    /// without credentials); none by default.
    #[arg(
        long,
        env = "EAGERQL_CORS_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub cors_origins: Vec<String>,

    /// What one request may cost: every limit is checked before or while it runs, on every path.
    #[command(flatten)]
    pub limits: LimitsConfig,

    /// How queries are planned and run.
    #[command(flatten)]
    pub execution: ExecutionConfig,

    /// Which documents requests may send or name, and what is kept of them.
    #[command(flatten)]
    pub documents: DocumentsConfig,

    /// What the server shows its operators.
    #[command(flatten)]
    pub observe: ObserveConfig,

    /// Failed-login limits, kept in the database so every instance shares them.
    #[command(flatten)]
    pub login: LoginConfig,

    /// Tokens.
    #[command(flatten)]
    pub auth: AuthConfig,
}

/// What one request may cost: every limit is checked before or while it runs, on every path.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitsConfig {
    /// Largest `first` accepted on any list; larger (or negative) is BAD_USER_INPUT.
    #[arg(long, env = "EAGERQL_MAX_PAGE_SIZE", default_value_t = 1000)]
    pub max_page_size: i64,

    /// Most SQL statements one request may run; a request whose plan needs more is refused
    /// with LIMIT_EXCEEDED before any SQL runs. 0 means no limit.
    #[arg(long, env = "EAGERQL_STATEMENT_BUDGET", default_value_t = 25)]
    pub statement_budget: usize,

    /// Most rows one request may read, counted while they stream in; past it the request is
    /// refused with LIMIT_EXCEEDED and what it read is dropped. 0 means no limit.
    #[arg(long, env = "EAGERQL_MAX_ROWS", default_value_t = 50_000)]
    pub max_rows: usize,

    /// Largest response body, in bytes, checked while it is written; past it the request is
    /// refused with LIMIT_EXCEEDED instead of sending a giant body. 0 means no limit.
    #[arg(long, env = "EAGERQL_MAX_RESPONSE_BYTES", default_value_t = 16 << 20)]
    pub max_response_bytes: usize,

    /// Deepest selection nesting accepted, not counting introspection (`__schema`, `__type`),
    /// which has its own bound so that the standard introspection query always works.
    #[arg(long, env = "EAGERQL_MAX_DEPTH", default_value_t = 12)]
    pub max_depth: usize,

    /// Most lexical tokens in a GraphQL document, whitespace runs and comments included
    /// (GraphiQL's introspection query has about 1,000; send bulk input as variables, which
    /// do not count).
    #[arg(long, env = "EAGERQL_MAX_TOKENS", default_value_t = 5_000)]
    pub max_tokens: usize,

    /// Most aliased fields in a document.
    #[arg(long, env = "EAGERQL_MAX_ALIASES", default_value_t = 30)]
    pub max_aliases: usize,

    /// Most directives in a document.
    #[arg(long, env = "EAGERQL_MAX_DIRECTIVES", default_value_t = 50)]
    pub max_directives: usize,

    /// Most fields of an operation once its fragments are expanded.
    #[arg(long, env = "EAGERQL_MAX_FIELDS", default_value_t = 2_000)]
    pub max_fields: usize,

    /// Largest query complexity accepted (one point per selected field).
    #[arg(long, env = "EAGERQL_MAX_COMPLEXITY", default_value_t = 2000)]
    pub max_complexity: usize,

    /// Largest request body, in bytes.
    #[arg(long, env = "EAGERQL_MAX_BODY_BYTES", default_value_t = 4 << 20)]
    pub max_body_bytes: usize,

    /// Seconds before a request is cut off with 503.
    #[arg(long, env = "EAGERQL_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// Most WebSocket connections open at once on this instance; one more upgrade is refused
    /// with 503.
    #[arg(long, env = "EAGERQL_WS_MAX_CONNECTIONS", default_value_t = 1000)]
    pub ws_max_connections: usize,

    /// Seconds a new WebSocket may take to send `connection_init` before it is closed with
    /// 4408.
    #[arg(long, env = "EAGERQL_WS_INIT_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ws_init_timeout_secs: u64,

    /// Most live subscriptions followed at once on this instance (over every connection);
    /// one more is refused with `LIMIT_EXCEEDED`.
    #[arg(long, env = "EAGERQL_LIVE_MAX_SUBSCRIPTIONS", default_value_t = 20_000)]
    pub live_max_subscriptions: usize,

    /// Subscribers of one operation refreshed by one set of statements: a larger group is
    /// refreshed in ceil(N / batch) sets, each costing the operation's planned statements.
    #[arg(long, env = "EAGERQL_LIVE_BATCH", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub live_batch: u64,
}

/// How queries are planned and run.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Execution")]
pub struct ExecutionConfig {
    /// Strict loading (the lesson's `lazy="raise"`): a relationship that no plan loaded is an
    /// error instead of an extra query.
    #[arg(long, env = "EAGERQL_STRICT", default_value_t = true, action = clap::ArgAction::Set)]
    pub strict: bool,

    /// How relationships are loaded: `eager` plans every selected relationship before any SQL
    /// runs (joins and batches); `lazy` loads each one as it is resolved, through a
    /// per-request DataLoader (one batch per level, not one query per parent), for
    /// comparison. `lazy` needs `EAGERQL_STRICT=false`.
    #[arg(long, env = "EAGERQL_PLAN", value_enum, default_value_t = PlanMode::Eager)]
    pub plan: PlanMode,

    /// Run each query operation in one read-only transaction, so all its statements see one
    /// snapshot (PostgreSQL `REPEATABLE READ READ ONLY`; SQLite a WAL read transaction).
    #[arg(long, env = "EAGERQL_READ_SNAPSHOT", default_value_t = true, action = clap::ArgAction::Set)]
    pub read_snapshot: bool,
}

/// Which documents requests may send or name, and what is kept of them.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Documents")]
pub struct DocumentsConfig {
    /// Most documents kept for automatic persisted queries (least recently used go first;
    /// at most 16 KiB of text each on average). 0 turns the store off.
    #[arg(long, env = "EAGERQL_PERSISTED_QUERIES", default_value_t = 1000)]
    pub persisted_queries: usize,

    /// Most parsed and validated documents kept, by the SHA-256 of their text, so a repeated
    /// document skips parsing and validation (least recently used go first; at most 16 KiB of
    /// text each on average). 0 turns the cache off.
    #[arg(long, env = "EAGERQL_DOCUMENT_CACHE", default_value_t = 1000)]
    pub document_cache: usize,

    /// Persisted-operation manifests (Apollo's `persisted-query-manifest.json`, Relay's
    /// `persisted_queries.json`; comma-separated) whose documents requests may name by
    /// `documentId` or `extensions.persistedQuery.sha256Hash`. Each is validated and planned
    /// at start: the server does not start when one is invalid or over the statement budget.
    #[arg(
        long,
        env = "EAGERQL_TRUSTED_DOCUMENTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub trusted_documents: Vec<String>,

    /// Run only trusted documents: any other document, sent in full or as an automatic
    /// persisted query, is refused with PERSISTED_QUERY_NOT_IN_LIST (the recommended setting
    /// for a server behind first-party frontends).
    #[arg(long, env = "EAGERQL_TRUSTED_ONLY", default_value_t = false, action = clap::ArgAction::Set)]
    pub trusted_only: bool,
}

/// What the server shows its operators.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Observability")]
pub struct ObserveConfig {
    /// Keep and serve metrics (`/metrics`); `false`: none are recorded and `/metrics` is not
    /// served.
    #[arg(long, env = "EAGERQL_METRICS", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics: bool,

    /// Serve `/metrics` on this address only, off the public port (unset: `/metrics` is on
    /// the public port).
    #[arg(long, env = "EAGERQL_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Whether `x-eagerql-debug: sql` may add the executed statements to a response.
    #[arg(long, env = "EAGERQL_DEBUG_SQL", value_enum, default_value_t = DebugSql::Auto)]
    pub debug_sql: DebugSql,
}

/// Failed-login limits, kept in the database so every instance shares them.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Login limits")]
pub struct LoginConfig {
    /// Failed logins one account may have per `EAGERQL_LOGIN_WINDOW_SECS` before further
    /// attempts get RATE_LIMITED.
    #[arg(long, env = "EAGERQL_LOGIN_FAILURES_PER_ACCOUNT", default_value_t = 5)]
    pub login_failures_per_account: u32,

    /// Failed logins one client address may have per window.
    #[arg(long, env = "EAGERQL_LOGIN_FAILURES_PER_ADDRESS", default_value_t = 20)]
    pub login_failures_per_address: u32,

    /// The window, in seconds, over which failed logins are counted.
    #[arg(long, env = "EAGERQL_LOGIN_WINDOW_SECS", default_value_t = 300)]
    pub login_window_secs: u64,
}

/// How tokens are signed and how long they live (shared by `serve` and `token`). `Debug`
/// says whether a secret is set, never the secret.
#[derive(Clone, Args)]
#[command(next_help_heading = "Tokens")]
pub struct AuthConfig {
    /// Secret that signs access tokens (HS256). Unset: a secret is generated on first start
    /// and kept in the database, so every instance on it accepts the same tokens.
    #[arg(long, env = "EAGERQL_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Seconds an access token is valid. It stays valid until then, even after logout.
    #[arg(long, env = "EAGERQL_ACCESS_TOKEN_TTL_SECS", default_value_t = 900)]
    pub access_token_ttl_secs: u64,

    /// Seconds a refresh token is valid (each refresh issues a new one).
    #[arg(long, env = "EAGERQL_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 24 * 3600)]
    pub refresh_token_ttl_secs: u64,

    /// Seconds of clock difference allowed when checking a token's `exp` and `nbf` (the
    /// server's own tokens and an identity provider's).
    #[arg(long, env = "EAGERQL_JWT_LEEWAY_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub jwt_leeway_secs: u64,

    /// An identity provider whose tokens are accepted too.
    #[command(flatten)]
    pub external: ExternalAuthConfig,
}

/// Tokens signed by an external identity provider (RS256/384/512, PS256/384/512,
/// ES256/384, EdDSA), accepted beside the server's own. Off unless a key or a JWKS URL is set.
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Identity provider")]
pub struct ExternalAuthConfig {
    /// The provider's public key: a PEM `PUBLIC KEY` (RSA, EC P-256/P-384 or Ed25519), or
    /// the path of a file holding one.
    #[arg(long, env = "EAGERQL_JWT_PUBLIC_KEY", allow_hyphen_values = true)]
    pub jwt_public_key: Option<String>,

    /// The provider's key set (JWKS), fetched over HTTP(S) at start-up, refreshed every
    /// EAGERQL_JWKS_REFRESH_SECS, and again when a token names a key (`kid`) it lacks.
    #[arg(long, env = "EAGERQL_JWKS_URL")]
    pub jwks_url: Option<String>,

    /// Seconds between two fetches of the key set caused by tokens naming unknown keys: a
    /// rotation is picked up at once, a flood of forged `kid`s costs the provider one fetch
    /// per period.
    #[arg(long, env = "EAGERQL_JWKS_REFETCH_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub jwks_refetch_secs: u64,

    /// Seconds between two background fetches of the key set (retired keys are dropped).
    #[arg(long, env = "EAGERQL_JWKS_REFRESH_SECS", default_value_t = 600)]
    pub jwks_refresh_secs: u64,

    /// PEM certificates trusted for EAGERQL_JWKS_URL besides the Mozilla roots (a provider
    /// behind a private certificate authority).
    #[arg(long, env = "EAGERQL_JWKS_CA_FILE")]
    pub jwks_ca_file: Option<std::path::PathBuf>,

    /// The issuer (`iss`) the provider's tokens must name (required with a provider's key).
    #[arg(long, env = "EAGERQL_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The audiences (`aud`, comma-separated) a token must name one of (required with a
    /// provider's key; `*`: any, not recommended).
    #[arg(long, env = "EAGERQL_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,

    /// The algorithms accepted from the provider (comma-separated).
    #[arg(
        long,
        env = "EAGERQL_JWT_ALGORITHMS",
        value_delimiter = ',',
        default_value = "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384,EdDSA"
    )]
    pub jwt_algorithms: Vec<String>,

    /// Where the subject is in a token: a claim name, a JSON path (`$.a.b`,
    /// `$['https://example.com/claims'].id`) or a JSON pointer (`/a/b`).
    #[arg(long, env = "EAGERQL_JWT_USER_CLAIM", default_value = "sub")]
    pub jwt_user_claim: String,

    /// Which column of `users` the subject is: `external-id` (the provider's subject, kept
    /// in `users.external_id`), `email` (the token's e-mail claim, which must not be marked
    /// unverified) or `id` (the account id itself).
    #[arg(long, env = "EAGERQL_JWT_USER_MATCH", value_enum, default_value_t = UserMatch::ExternalId)]
    pub jwt_user_match: UserMatch,

    /// Where the e-mail address is in a token (same forms as EAGERQL_JWT_USER_CLAIM).
    #[arg(long, env = "EAGERQL_JWT_EMAIL_CLAIM", default_value = "email")]
    pub jwt_email_claim: String,

    /// Where the provider says it verified the e-mail address (`true` or `"true"`): an
    /// address not marked verified names no account and makes none.
    #[arg(
        long,
        env = "EAGERQL_JWT_EMAIL_VERIFIED_CLAIM",
        default_value = "email_verified"
    )]
    pub jwt_email_verified_claim: String,

    /// Where the role is in a token (a string or an array of strings; same forms as
    /// EAGERQL_JWT_USER_CLAIM). Unset: the role is the account's (`users.role`).
    #[arg(long, env = "EAGERQL_JWT_ROLE_CLAIM")]
    pub jwt_role_claim: Option<String>,

    /// The role values that make a viewer an administrator (comma-separated); any other is
    /// a customer.
    #[arg(
        long,
        env = "EAGERQL_JWT_ADMIN_ROLES",
        value_delimiter = ',',
        default_value = "admin"
    )]
    pub jwt_admin_roles: Vec<String>,

    /// Creates the account of a subject seen for the first time (from its verified e-mail
    /// address).
    #[arg(long, env = "EAGERQL_JWT_CREATE_USERS", default_value_t = false, action = clap::ArgAction::Set)]
    pub jwt_create_users: bool,

    /// With EAGERQL_JWT_CREATE_USERS: a new subject whose verified address belongs to a
    /// customer's password account (not yet linked) is linked to it instead of refused.
    /// Administrators' accounts are never linked this way.
    #[arg(long, env = "EAGERQL_JWT_LINK_BY_EMAIL", default_value_t = false, action = clap::ArgAction::Set)]
    pub jwt_link_by_email: bool,
}

/// Which column of `users` an external token's subject names.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum UserMatch {
    /// `users.external_id`.
    ExternalId,
    /// `users.email`.
    Email,
    /// `users.id`.
    Id,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| REDACTED))
            .field("access_token_ttl_secs", &self.access_token_ttl_secs)
            .field("refresh_token_ttl_secs", &self.refresh_token_ttl_secs)
            .field("jwt_leeway_secs", &self.jwt_leeway_secs)
            .field("external", &self.external)
            .finish()
    }
}

/// The longest duration setting taken as given.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A duration: a number with `ms`, `s`, `m` or `h` (`500ms`, `10s`, `2m`), or a bare number
/// of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit `{other}` (ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{text}`: {e}"))
}

/// What `Debug` shows instead of a secret.
const REDACTED: &str = "<redacted>";

/// `url` without its password: the user info's (`postgres://user:PASSWORD@host`) and a
/// `password=` parameter's.
pub fn redacted_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                out.replace_range(authority_start + colon + 1..authority_start + at, REDACTED);
            }
        }
    }
    if let Some(query) = out.find('?') {
        let (head, tail) = out.split_at(query + 1);
        let params: Vec<String> = tail
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={REDACTED}"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
}

impl AuthConfig {
    /// The token lifetimes.
    pub fn tokens(&self) -> crate::auth::TokenConfig {
        crate::auth::TokenConfig {
            access_ttl: Duration::from_secs(self.access_token_ttl_secs.max(1)),
            refresh_ttl: Duration::from_secs(self.refresh_token_ttl_secs.max(1)),
            leeway_secs: self.jwt_leeway_secs,
        }
    }
}

/// How relationships are loaded (`EAGERQL_PLAN`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlanMode {
    /// Planned before any SQL runs (the default).
    Eager,
    /// Loaded as resolved, through a per-request DataLoader.
    Lazy,
}

impl ServeConfig {
    /// The planner's limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_page_size: self.limits.max_page_size,
        }
    }

    /// The size of the prepared-document cache.
    pub fn document_cache(&self) -> crate::graphql::operation::CacheSize {
        crate::graphql::operation::CacheSize {
            entries: self.documents.document_cache,
            bytes: self.documents.document_cache.saturating_mul(16 << 10),
        }
    }

    /// The trusted-document manifests given (empty entries of the list dropped).
    pub fn trusted_manifests(&self) -> Vec<std::path::PathBuf> {
        self.documents
            .trusted_documents
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .collect()
    }

    /// The limits on a document, checked before it is planned.
    pub fn document_limits(&self) -> DocumentLimits {
        DocumentLimits {
            max_tokens: self.limits.max_tokens,
            max_aliases: self.limits.max_aliases,
            max_directives: self.limits.max_directives,
            max_depth: self.limits.max_depth,
            max_fields: self.limits.max_fields,
            max_complexity: self.limits.max_complexity,
            ..DocumentLimits::default()
        }
    }

    /// The row budget, `None` when unlimited.
    pub fn row_budget(&self) -> Option<usize> {
        (self.limits.max_rows > 0).then_some(self.limits.max_rows)
    }

    /// The response size cap (`usize::MAX` when unlimited).
    pub fn response_cap(&self) -> usize {
        if self.limits.max_response_bytes == 0 {
            usize::MAX
        } else {
            self.limits.max_response_bytes
        }
    }

    /// The statement budget, `None` when unlimited.
    pub fn budget(&self) -> Option<usize> {
        (self.limits.statement_budget > 0).then_some(self.limits.statement_budget)
    }

    /// Whether clients may see the SQL of their requests.
    pub fn debug_sql_allowed(&self) -> bool {
        match self.observe.debug_sql {
            DebugSql::On => true,
            DebugSql::Off => false,
            DebugSql::Auto => self.db.backend() == Backend::Sqlite,
        }
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.request_timeout_secs)
    }

    /// The failed-login limiter these settings describe.
    pub fn login_limiter(&self) -> crate::auth::LoginLimiter {
        crate::auth::LoginLimiter::new(
            self.login.login_failures_per_account.max(1),
            self.login.login_failures_per_address.max(1),
            Duration::from_secs(self.login.login_window_secs.max(1)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeConfig,
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redacted_url("postgres://app:s3cr3t@db:5432/shop?sslmode=require"),
            "postgres://app:<redacted>@db:5432/shop?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgresql://db/shop?user=app&password=s3cr3t"),
            "postgresql://db/shop?user=app&password=<redacted>"
        );
        assert_eq!(
            redacted_url("postgres://app@db/shop"),
            "postgres://app@db/shop"
        );
        assert_eq!(redacted_url("sqlite:eagerql.db"), "sqlite:eagerql.db");
    }

    #[test]
    fn debug_never_prints_a_secret() {
        let cli = Cli::try_parse_from([
            "eagerql",
            "--database-url",
            "postgres://app:db-pass-1@db/shop",
            "--replica-urls",
            "postgres://ro:db-pass-2@replica/shop?password=db-pass-3",
            "--jwt-secret",
            "jwt-secret-4",
        ])
        .unwrap();
        let shown = format!("{:?}", cli.serve);
        for secret in ["db-pass-1", "db-pass-2", "db-pass-3", "jwt-secret-4"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("postgres://app:<redacted>@db/shop"),
            "{shown}"
        );
        assert!(
            shown.contains("jwt_secret: Some(\"<redacted>\")"),
            "{shown}"
        );
    }
}
