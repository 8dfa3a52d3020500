//! The only place SQL is written.
//!
//! Two backends share one schema and one API: PostgreSQL (production) and an embedded SQLite
//! file (zero-setup default). Each module is named after a table and holds that table's row
//! struct and access paths; [`load`] builds the statements of an eager-loading plan, and
//! [`session`] is the one wrapper every statement passes through, so that each is counted.

pub mod analytics;
pub mod auth;
pub mod changes;
pub mod columns;
pub mod load;
pub mod login_attempts;
pub use crate::money;
pub mod multiplex;
pub mod order_items;
pub mod orders;
pub mod persisted_queries;
pub mod products;
pub mod replicas;
pub mod seed;
pub mod session;
pub mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::AssertSqlSafe;
use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use session::{DbRow, Reserved, Session, StatementHook, StatementLog, StatementRecord};

/// Which database a pool talks to; decides the SQL dialect.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL: `numeric` money, `= any($1)` key lists.
    Postgres,
    /// SQLite: integer-cent money, `in (select value from json_each($1))` key lists.
    Sqlite,
}

impl Backend {
    /// A short name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }

    /// The current time as the dialect writes it into a timestamp column (SQLite stores
    /// ISO-8601 UTC text with milliseconds, which sorts chronologically).
    pub fn now(self) -> &'static str {
        self.pick("now()", "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
    }

    /// The dialect's own variant of a statement (or part of one).
    pub fn pick<T>(self, postgres: T, sqlite: T) -> T {
        match self {
            Backend::Postgres => postgres,
            Backend::Sqlite => sqlite,
        }
    }
}

/// A PostgreSQL connection idle for at least this long is pinged before a request uses it; one
/// used more recently is trusted, as pools such as HikariCP do. Pinging on every checkout cost
/// one more round trip per request, a fifth of a small query's.
pub const PING_AFTER_IDLE: Duration = Duration::from_millis(500);

/// Requests of this process waiting for a pooled connection (the pool does not count them).
static WAITING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts one waiter for as long as it lives (so a request given up while waiting is no
/// longer counted).
pub(crate) struct Waiting(());

impl Waiting {
    pub(crate) fn start() -> Waiting {
        WAITING.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Waiting(())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Requests of this process waiting for a pooled connection now.
pub fn waiting_for_connection() -> usize {
    WAITING.load(std::sync::atomic::Ordering::Relaxed)
}

/// A connection pool to one of the two backends.
#[derive(Clone, Debug)]
pub enum Db {
    /// PostgreSQL: the primary's pool, and the read replicas'.
    Postgres(Pg),
    /// SQLite pool.
    Sqlite(Lite),
}

/// The SQLite pool, and the feed its connections' commits are sent to.
#[derive(Clone, Debug)]
pub struct Lite {
    pool: SqlitePool,
    changes: changes::Changes,
}

impl std::ops::Deref for Lite {
    type Target = SqlitePool;
    fn deref(&self) -> &SqlitePool {
        &self.pool
    }
}

/// How eagerql reaches PostgreSQL.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Pooler {
    /// Directly, or through a session-mode pooler: one server connection per pooled
    /// connection, so session settings and prepared statements stay on it.
    #[default]
    None,
    /// Through a transaction-mode pooler (PgBouncer `pool_mode = transaction`): a server
    /// connection is ours only inside a transaction. Settings travel with each `BEGIN`
    /// (`SET LOCAL`), every statement runs inside a transaction and none is a named
    /// prepared statement.
    Transaction,
}

/// A PostgreSQL primary's pool, how it is reached, and its read replicas.
/// Cloned with every session: one reference count, not one per part.
#[derive(Clone, Debug)]
pub struct Pg(Arc<PgParts>);

impl std::ops::Deref for Pg {
    type Target = PgParts;

    fn deref(&self) -> &PgParts {
        &self.0
    }
}

/// The parts of [`Pg`].
#[derive(Debug)]
pub struct PgParts {
    pool: PgPool,
    /// The `BEGIN` of read snapshots and of writes (with `SET LOCAL` settings behind a
    /// transaction pooler).
    begin: Arc<Begin>,
    replicas: Arc<replicas::Replicas>,
    changes: changes::Changes,
    /// The change feed's listening connection (closed with the pool).
    listen_pool: Option<PgPool>,
}

#[derive(Debug)]
struct Begin {
    read: String,
    write: Option<String>,
    /// Behind a transaction pooler: statements are unnamed, and run inside a transaction.
    pooled: bool,
}

impl Begin {
    fn new(pooler: Pooler, statement_timeout: Option<Duration>) -> Begin {
        const READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
        match pooler {
            Pooler::None => Begin {
                read: READ.to_owned(),
                write: None,
                pooled: false,
            },
            Pooler::Transaction => {
                // One simple-query message, so one round trip, as the plain BEGIN.
                let set = match statement_timeout {
                    Some(t) => format!("; SET LOCAL statement_timeout = {}", t.as_millis()),
                    None => String::new(),
                };
                Begin {
                    read: format!("{READ}{set}"),
                    write: Some(format!("BEGIN{set}")),
                    pooled: true,
                }
            }
        }
    }
}

impl Pg {
    /// The primary's pool.
    pub(crate) fn primary(&self) -> &PgPool {
        &self.pool
    }

    /// The statement that begins a read snapshot.
    pub(crate) fn begin_read_sql(&self) -> &str {
        &self.begin.read
    }

    /// The statement that begins a write transaction (`None`: sqlx's plain `BEGIN`).
    pub(crate) fn begin_write_sql(&self) -> Option<&str> {
        self.begin.write.as_deref()
    }

    /// Behind a transaction pooler: no named prepared statements, and no statement outside
    /// a transaction.
    pub(crate) fn pooled(&self) -> bool {
        self.begin.pooled
    }

    /// The read replicas.
    pub(crate) fn replicas(&self) -> &replicas::Replicas {
        &self.replicas
    }

    /// The read replicas, shared (for work that outlives a request).
    pub(crate) fn replicas_shared(&self) -> Arc<replicas::Replicas> {
        self.replicas.clone()
    }

    /// Begins a write transaction on the primary.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        match self.begin_write_sql() {
            Some(sql) => self.pool.begin_with(AssertSqlSafe(sql.to_owned())).await,
            None => self.pool.begin().await,
        }
    }
}

/// How to open the pool.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    /// Maximum connections.
    pub max_connections: u32,
    /// How long a request waits for a free connection before `SERVICE_UNAVAILABLE`.
    pub acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout` of every connection.
    pub statement_timeout: Option<Duration>,
    /// Statements slower than this are logged at WARN (`None`: never).
    pub slow_statement: Option<Duration>,
    /// PostgreSQL: how the database URL reaches the server.
    pub pooler: Pooler,
    /// PostgreSQL read replicas (their URLs): query operations read from them.
    pub replica_urls: Vec<String>,
    /// PostgreSQL: where the change feed listens (`None`: `DATABASE_URL`, unless it leads to
    /// a transaction-mode pooler, where LISTEN cannot work and the feed hears nothing).
    pub listen_url: Option<String>,
    /// How long the change feed gathers changes before it sends them as one set.
    pub change_window: Duration,
    /// How far replicas may lag, and how long a writer reads its own writes.
    pub consistency: replicas::Consistency,
}

impl PoolConfig {
    /// The driver's slow-statement log setting.
    fn slow_log(&self) -> (log::LevelFilter, Duration) {
        match self.slow_statement {
            Some(d) => (log::LevelFilter::Warn, d),
            None => (log::LevelFilter::Off, Duration::MAX),
        }
    }
}

/// The `application_name` of the change feed's listening connection (the pools' other
/// connections are `eagerql`).
pub const CHANGES_APPLICATION: &str = "eagerql-changes";

/// A pool of connections to the PostgreSQL server at `url` (`lazy`: connects on first use).
/// Whether `url` names a server on this machine and says nothing of TLS: the driver's
/// default (`prefer`) would then encrypt traffic that never leaves the machine, at a cost on
/// every statement. An `sslmode` in the URL or in `PGSSLMODE` always wins.
fn loopback_without_sslmode(url: &str, host: &str) -> bool {
    let asked = url.split_once('?').is_some_and(|(_, q)| {
        q.split('&')
            .any(|kv| kv.to_ascii_lowercase().starts_with("sslmode="))
    }) || std::env::var_os("PGSSLMODE").is_some();
    let local =
        matches!(host, "127.0.0.1" | "::1" | "[::1]" | "localhost") || host.starts_with('/');
    !asked && local
}

async fn pg_pool(
    url: &str,
    cfg: &PoolConfig,
    acquire_timeout: Duration,
    lazy: bool,
    application_name: &str,
) -> Result<PgPool, sqlx::Error> {
    let mut opts = PgConnectOptions::from_str(url)?;
    // How an operator tells the connections apart in `pg_stat_activity` (unless the URL
    // names them itself).
    if opts.get_application_name().is_none() {
        opts = opts.application_name(application_name);
    }
    if loopback_without_sslmode(url, opts.get_host()) {
        opts = opts.ssl_mode(PgSslMode::Disable);
    }
    match cfg.pooler {
        Pooler::None => {
            // Every statement with parameters is one of the planner's key lookups (`= any($1)`
            // batches, pages, by-id loads) or a write: one generic plan per prepared statement
            // serves them all, and planning them afresh on each run cost more than running
            // them. Analytics, whose best plan depends on the window, carry their values as
            // literals and are not cached (`Session::fetch_unprepared`).
            opts = opts.options([("plan_cache_mode", "force_generic_plan")]);
            if let Some(t) = cfg.statement_timeout {
                opts = opts.options([("statement_timeout", format!("{}ms", t.as_millis()))]);
            }
        }
        Pooler::Transaction => {
            // A transaction pooler refuses startup `options` and parameters it does not
            // know: the statement timeout travels with each BEGIN instead, and statements are
            // unnamed, so no prepared-statement cache.
            opts = opts.extra_float_digits(None).statement_cache_capacity(0);
        }
    }
    let (level, after) = cfg.slow_log();
    let opts = opts.log_slow_statements(level, after);
    let options = PgPoolOptions::new()
        .max_connections(cfg.max_connections)
        .acquire_timeout(acquire_timeout)
        // The lesson's pool_pre_ping: a connection broken by a database restart is
        // replaced instead of failing a request. Only connections idle for a while are
        // pinged (see PING_AFTER_IDLE); a failed ping discards the connection and the
        // pool hands out or opens another.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < PING_AFTER_IDLE {
                    return Ok(true);
                }
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        });
    if lazy {
        return Ok(options.connect_lazy_with(opts));
    }
    options.connect_with(opts).await.map_err(|e| match e {
        sqlx::Error::Database(ref d) if d.message().contains("unsupported startup parameter") => {
            sqlx::Error::Configuration(
                format!(
                    "{}: the database URL leads to a transaction-mode pooler; set \
                     EAGERQL_POOLER=transaction",
                    d.message()
                )
                .into(),
            )
        }
        e => e,
    })
}

impl Db {
    /// Opens a pool for `url`: `postgres://...`/`postgresql://...`, or `sqlite:PATH`/a plain file
    /// path, created if missing.
    pub async fn connect(url: &str, cfg: &PoolConfig) -> Result<Db, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = pg_pool(url, cfg, cfg.acquire_timeout, false, "eagerql").await?;
            let mut replicas = Vec::with_capacity(cfg.replica_urls.len());
            for (i, replica) in cfg.replica_urls.iter().enumerate() {
                // A replica may be down at start: its pool connects when first used, and
                // reads use the primary until its health check passes.
                let pool =
                    pg_pool(replica, cfg, replicas::ACQUIRE_TIMEOUT, true, "eagerql").await?;
                replicas.push(replicas::Replica::new(i + 1, replica, pool));
            }
            let replicas = replicas::Replicas::start(replicas, pool.clone(), cfg.consistency).await;
            let changes = changes::Changes::new(cfg.change_window);
            let listen_url = match (&cfg.listen_url, cfg.pooler) {
                (Some(u), _) => Some(u.as_str()),
                (None, Pooler::None) => Some(url),
                (None, Pooler::Transaction) => {
                    tracing::warn!(
                        "the change feed does not listen: DATABASE_URL leads to a \
                         transaction-mode pooler, where LISTEN cannot work; set \
                         EAGERQL_LISTEN_URL to a direct (or session-mode) URL"
                    );
                    None
                }
            };
            if listen_url.is_none() && replicas.follows_writes() {
                tracing::warn!(
                    "read-your-writes covers only this instance's viewers: without a \
                     listening connection it does not hear other instances' writes; set \
                     EAGERQL_LISTEN_URL"
                );
            }
            let listen_pool = if let Some(listen_url) = listen_url {
                let listen_cfg = PoolConfig {
                    max_connections: 1,
                    pooler: Pooler::None,
                    statement_timeout: None,
                    ..cfg.clone()
                };
                let listen_pool = pg_pool(
                    listen_url,
                    &listen_cfg,
                    cfg.acquire_timeout,
                    true,
                    CHANGES_APPLICATION,
                )
                .await?;
                tokio::spawn(changes::listen(
                    listen_pool.clone(),
                    changes.clone(),
                    replicas.clone(),
                ));
                Some(listen_pool)
            } else {
                None
            };
            tokio::spawn(changes::renew(pool.clone(), changes.clone()));
            Ok(Db::Postgres(Pg(Arc::new(PgParts {
                pool,
                begin: Arc::new(Begin::new(cfg.pooler, cfg.statement_timeout)),
                replicas,
                changes,
                listen_pool,
            }))))
        } else {
            if !cfg.replica_urls.is_empty() {
                return Err(sqlx::Error::Configuration(
                    "EAGERQL_REPLICA_URLS needs a PostgreSQL primary (DATABASE_URL)".into(),
                ));
            }
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"));
            let opts = SqliteConnectOptions::new()
                .filename(path.unwrap_or(url))
                .create_if_missing(true)
                // WAL lets readers run beside one writer; foreign keys are off by default in SQLite.
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let (level, after) = cfg.slow_log();
            let opts = opts.log_slow_statements(level, after);
            let changes = changes::Changes::new(cfg.change_window);
            let feed = changes.clone();
            let pool = SqlitePoolOptions::new()
                .max_connections(cfg.max_connections)
                .acquire_timeout(cfg.acquire_timeout)
                .test_before_acquire(true)
                .after_connect(move |conn, _| {
                    let feed = feed.clone();
                    Box::pin(async move { changes::hook_sqlite(conn, &feed).await })
                })
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(Lite { pool, changes }))
        }
    }

    /// A pool that never connects: for planning-only runs (`eagerql check`), whose
    /// statement log admits no statement, so no connection is ever asked for.
    pub fn unconnected() -> Db {
        let opts = SqliteConnectOptions::new().filename(":memory:");
        Db::Sqlite(Lite {
            pool: SqlitePoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(opts),
            changes: changes::Changes::new(Duration::from_millis(20)),
        })
    }

    /// The change feed: every committed write to the model's tables, in coalesced sets.
    pub fn changes(&self) -> &changes::Changes {
        match self {
            Db::Postgres(pg) => &pg.changes,
            Db::Sqlite(lite) => &lite.changes,
        }
    }

    /// Follows `tables`: from now on, while this instance runs, PostgreSQL announces every
    /// committed write to them to the change feed (writes to tables no instance follows pay
    /// for no notification). On SQLite the server's own writes always reach the feed.
    pub async fn follow(&self, tables: &[&'static str]) -> Result<(), sqlx::Error> {
        let changes = self.changes();
        changes.add_followed(tables);
        match self {
            Db::Postgres(pg) => {
                changes::register(&pg.pool, changes).await?;
                changes::settle(&pg.pool).await
            }
            Db::Sqlite(_) => Ok(()),
        }
    }

    /// The backend this pool talks to.
    pub fn backend(&self) -> Backend {
        match self {
            Db::Postgres(_) => Backend::Postgres,
            Db::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        match self {
            Db::Postgres(pg) if pg.pooled() => pending_migrations(pg).await,
            Db::Postgres(pg) => {
                // A migration may rewrite a large table: it runs on a connection of its own,
                // without the pool's per-statement timeout, closed afterwards.
                use sqlx::migrate::MigrateError;
                let mut conn = pg
                    .pool
                    .acquire()
                    .await
                    .map_err(MigrateError::Execute)?
                    .detach();
                sqlx::query("set statement_timeout = 0")
                    .execute(&mut conn)
                    .await
                    .map_err(MigrateError::Execute)?;
                let result = sqlx::migrate!("sql/migrations/postgres")
                    .run(&mut conn)
                    .await;
                let _ = sqlx::Connection::close(conn).await;
                result
            }
            Db::Sqlite(lite) => {
                sqlx::migrate!("sql/migrations/sqlite")
                    .run(&lite.pool)
                    .await
            }
        }
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        match self {
            Db::Postgres(pg) => {
                pg.replicas.close().await;
                if let Some(listen) = &pg.listen_pool {
                    listen.close().await;
                }
                pg.pool.close().await;
            }
            Db::Sqlite(pool) => pool.close().await,
        }
    }

    /// Whether statements reach PostgreSQL through a transaction pooler
    /// (`EAGERQL_POOLER=transaction`).
    pub fn pooled(&self) -> bool {
        matches!(self, Db::Postgres(pg) if pg.pooled())
    }

    /// The read replicas (none on SQLite).
    pub fn replicas(&self) -> Option<&replicas::Replicas> {
        match self {
            Db::Postgres(pg) => Some(pg.replicas()),
            Db::Sqlite(_) => None,
        }
    }

    /// `(size, idle)` connections of the pool, for readiness and leak checks.
    pub fn pool_status(&self) -> (u32, usize) {
        match self {
            Db::Postgres(pg) => (pg.pool.size(), pg.pool.num_idle()),
            Db::Sqlite(pool) => (pool.size(), pool.num_idle()),
        }
    }
}

/// Behind a transaction pooler, migrations are not run: the migrator holds a session
/// advisory lock, which such a pooler cannot keep on one server connection. They are only
/// checked, and a database that lacks one is an error that says what to do.
async fn pending_migrations(pg: &Pg) -> Result<(), sqlx::migrate::MigrateError> {
    use sqlx::migrate::MigrateError;
    let mut tx = pg.begin_write().await.map_err(MigrateError::Execute)?;
    let applied: Vec<i64> =
        match sqlx::query_scalar::<_, i64>("select version from _sqlx_migrations where success")
            .persistent(false)
            .fetch_all(&mut *tx)
            .await
        {
            Ok(v) => v,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Vec::new(),
            Err(e) => return Err(MigrateError::Execute(e)),
        };
    let _ = tx.rollback().await;
    let missing: Vec<String> = sqlx::migrate!("sql/migrations/postgres")
        .iter()
        .filter(|m| m.migration_type.is_up_migration() && !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(MigrateError::Source(
        format!(
            "the database lacks migrations ({}), and they cannot run through a \
             transaction-mode pooler (EAGERQL_POOLER=transaction): run `eagerql migrate` \
             with DATABASE_URL naming PostgreSQL itself",
            missing.join(", ")
        )
        .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_goes_without_tls_unless_an_sslmode_is_given() {
        let local = "postgres://u@127.0.0.1:5432/db";
        assert!(loopback_without_sslmode(local, "127.0.0.1"));
        assert!(loopback_without_sslmode(
            "postgres://u@localhost/db",
            "localhost"
        ));
        assert!(loopback_without_sslmode(
            "postgres:///db",
            "/var/run/postgresql"
        ));
        assert!(!loopback_without_sslmode(
            "postgres://u@127.0.0.1/db?sslmode=require",
            "127.0.0.1"
        ));
        assert!(!loopback_without_sslmode(
            "postgres://u@db.internal/db",
            "db.internal"
        ));
    }

    #[test]
    fn slow_statement_logging_follows_the_setting() {
        let mut cfg = PoolConfig {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(1),
            statement_timeout: None,
            slow_statement: Some(Duration::from_millis(250)),
            pooler: Pooler::None,
            replica_urls: Vec::new(),
            listen_url: None,
            change_window: Duration::from_millis(20),
            consistency: replicas::Consistency::default(),
        };
        assert_eq!(
            cfg.slow_log(),
            (log::LevelFilter::Warn, Duration::from_millis(250))
        );
        cfg.slow_statement = None;
        assert_eq!(cfg.slow_log().0, log::LevelFilter::Off);
    }
}
