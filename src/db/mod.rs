//! The only place SQL is written.
//!
//! Two backends share one schema and one API: PostgreSQL (production) and an embedded SQLite
//! file (zero-setup default). Each module is named after a table and holds that table's row
//! struct and access paths; [`load`] builds the statements of an eager-loading plan, and
//! [`session`] is the one wrapper every statement passes through, so that each is counted.

pub mod analytics;
pub mod auth;
pub mod columns;
pub mod load;
pub use crate::money;
pub mod order_items;
pub mod orders;
pub mod products;
pub mod seed;
pub mod session;
pub mod users;

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

pub use session::{DbRow, Session, StatementHook, StatementLog, StatementRecord};

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
    /// PostgreSQL pool.
    Postgres(PgPool),
    /// SQLite pool.
    Sqlite(SqlitePool),
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

impl Db {
    /// Opens a pool for `url`: `postgres://...`/`postgresql://...`, or `sqlite:PATH`/a plain file
    /// path, created if missing.
    pub async fn connect(url: &str, cfg: &PoolConfig) -> Result<Db, sqlx::Error> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // Every statement with parameters is one of the planner's key lookups (`= any($1)`
            // batches, pages, by-id loads) or a write: one generic plan per prepared statement
            // serves them all, and planning them afresh on each run cost more than running
            // them. Analytics, whose best plan depends on the window, carry their values as
            // literals and are not cached (`Session::fetch_unprepared`).
            let mut opts = PgConnectOptions::from_str(url)?
                .options([("plan_cache_mode", "force_generic_plan")]);
            if let Some(t) = cfg.statement_timeout {
                opts = opts.options([("statement_timeout", format!("{}ms", t.as_millis()))]);
            }
            let (level, after) = cfg.slow_log();
            let opts = opts.log_slow_statements(level, after);
            let pool = PgPoolOptions::new()
                .max_connections(cfg.max_connections)
                .acquire_timeout(cfg.acquire_timeout)
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
                })
                .connect_with(opts)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
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
            let pool = SqlitePoolOptions::new()
                .max_connections(cfg.max_connections)
                .acquire_timeout(cfg.acquire_timeout)
                .test_before_acquire(true)
                .connect_with(opts)
                .await?;
            Ok(Db::Sqlite(pool))
        }
    }

    /// A pool that never connects: for planning-only runs (`eagerql check`), whose
    /// statement log admits no statement, so no connection is ever asked for.
    pub fn unconnected() -> Db {
        let opts = SqliteConnectOptions::new().filename(":memory:");
        Db::Sqlite(
            SqlitePoolOptions::new()
                .max_connections(1)
                .connect_lazy_with(opts),
        )
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
            Db::Postgres(pool) => {
                // A migration may rewrite a large table: it runs on a connection of its own,
                // without the pool's per-statement timeout, closed afterwards.
                use sqlx::migrate::MigrateError;
                let mut conn = pool
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
            Db::Sqlite(pool) => sqlx::migrate!("sql/migrations/sqlite").run(pool).await,
        }
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        match self {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }

    /// `(size, idle)` connections of the pool, for readiness and leak checks.
    pub fn pool_status(&self) -> (u32, usize) {
        match self {
            Db::Postgres(pool) => (pool.size(), pool.num_idle()),
            Db::Sqlite(pool) => (pool.size(), pool.num_idle()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_statement_logging_follows_the_setting() {
        let mut cfg = PoolConfig {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(1),
            statement_timeout: None,
            slow_statement: Some(Duration::from_millis(250)),
        };
        assert_eq!(
            cfg.slow_log(),
            (log::LevelFilter::Warn, Duration::from_millis(250))
        );
        cfg.slow_statement = None;
        assert_eq!(cfg.slow_log().0, log::LevelFilter::Off);
    }
}
