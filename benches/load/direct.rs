//! The database's own work: the statements one GraphQL request ran (as reported under
//! `x-eagerql-debug: sql`), replayed through sqlx with the same SQL and parameters, without
//! GraphQL, HTTP or JSON in between.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Postgres, Sqlite};

use super::Res;
use super::client::{Plan, Stats, Worker, closed_loop};

/// One statement of a request: SQL text with `$n` placeholders and its parameters.
#[derive(Clone, Debug)]
pub struct Statement {
    pub name: String,
    pub sql: Arc<str>,
    pub params: Vec<Value>,
}

/// Reads `extensions.sql.statements` of a debug response.
pub fn statements_of(response: &Value) -> Res<Vec<Statement>> {
    let list = response
        .pointer("/extensions/sql/statements")
        .and_then(Value::as_array)
        .ok_or("the response has no extensions.sql.statements (is EAGERQL_DEBUG_SQL=on?)")?;
    list.iter()
        .map(|s| {
            let sql = s
                .get("sql")
                .and_then(Value::as_str)
                .ok_or("a statement without SQL text")?;
            let params = s
                .get("params")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let name = s
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            Ok(Statement {
                name,
                sql: Arc::from(sql),
                params,
            })
        })
        .collect()
}

/// A pool opened like the server opens its own.
#[derive(Clone, Debug)]
pub enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl Pool {
    pub async fn connect(url: &str, max_connections: u32) -> Res<Pool> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(PgConnectOptions::from_str(url)?)
                .await?;
            Ok(Pool::Postgres(pool))
        } else {
            let path = url
                .strip_prefix("sqlite://")
                .or_else(|| url.strip_prefix("sqlite:"))
                .unwrap_or(url);
            // The server's settings (src/db/mod.rs): WAL, synchronous=NORMAL, foreign keys.
            let opts = SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(opts)
                .await?;
            Ok(Pool::Sqlite(pool))
        }
    }

    pub async fn close(&self) {
        match self {
            Pool::Postgres(p) => p.close().await,
            Pool::Sqlite(p) => p.close().await,
        }
    }

    /// Runs one statement with `fetch_all`; returns the number of rows.
    pub async fn run(&self, stmt: &Statement) -> Res<usize> {
        match self {
            Pool::Postgres(pool) => {
                let q = sqlx::query(AssertSqlSafe(stmt.sql.clone()));
                let q = stmt.params.iter().try_fold(q, bind_pg)?;
                Ok(q.fetch_all(pool).await?.len())
            }
            Pool::Sqlite(pool) => {
                let q = sqlx::query(AssertSqlSafe(stmt.sql.clone()));
                let q = stmt.params.iter().try_fold(q, bind_sqlite)?;
                Ok(q.fetch_all(pool).await?.len())
            }
        }
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;
type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments>;

/// A timestamp parameter: the statement log shows timestamps as RFC 3339 strings.
fn as_timestamp(s: &str) -> Option<DateTime<Utc>> {
    // Cheap pre-check so that ordinary text is not parsed as a date.
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn id_list(items: &[Value]) -> Res<Vec<i64>> {
    items
        .iter()
        .map(|v| {
            v.as_i64()
                .ok_or_else(|| format!("a key list with a non-integer element: {v}").into())
        })
        .collect()
}

/// PostgreSQL: key lists as `bigint[]` (`= any($n)`), timestamps as `timestamptz`.
fn bind_pg<'q>(q: PgQuery<'q>, v: &Value) -> Res<PgQuery<'q>> {
    Ok(match v {
        Value::Null => q.bind(None::<i64>),
        Value::Bool(b) => q.bind(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => q.bind(i),
            None => q.bind(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => match as_timestamp(s) {
            Some(ts) => q.bind(ts),
            None => q.bind(s.clone()),
        },
        Value::Array(items) => q.bind(id_list(items)?),
        Value::Object(_) => return Err(format!("unexpected object parameter {v}").into()),
    })
}

/// SQLite: key lists as JSON text (`json_each($n)`), timestamps as the ISO text the columns
/// store (milliseconds, `Z`).
fn bind_sqlite<'q>(q: SqliteQuery<'q>, v: &Value) -> Res<SqliteQuery<'q>> {
    Ok(match v {
        Value::Null => q.bind(None::<i64>),
        Value::Bool(b) => q.bind(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => q.bind(i),
            None => q.bind(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => match as_timestamp(s) {
            Some(ts) => q.bind(eagerql::db::session::sqlite_ts(ts)),
            None => q.bind(s.clone()),
        },
        Value::Array(items) => {
            id_list(items)?;
            q.bind(v.to_string())
        }
        Value::Object(_) => return Err(format!("unexpected object parameter {v}").into()),
    })
}

/// A task of [`run_direct`]: replays the statements in order on the shared pool.
struct Replayer {
    pool: Pool,
    statements: Arc<Vec<Statement>>,
}

impl Worker for Replayer {
    /// Rows returned by the sequence.
    type Outcome = usize;

    async fn step(&mut self) -> Res<usize> {
        let mut rows = 0usize;
        for s in self.statements.iter() {
            rows += self.pool.run(s).await?;
        }
        Ok(rows)
    }

    fn record(stats: &mut Stats, latency: Duration, rows: usize) {
        stats.ok += 1;
        stats.bytes += rows as u64;
        stats.latencies_us.push(latency.as_micros() as u64);
    }
}

/// Replays `statements` in order, as one "request", from `plan.clients` tasks in a closed loop
/// (see [`closed_loop`]). Fails on the first database error.
pub async fn run_direct(pool: &Pool, plan: Plan, statements: Vec<Statement>) -> Res<Stats> {
    let statements = Arc::new(statements);
    // Once outside the clock, so that a statement that cannot be replayed fails clearly.
    for s in statements.iter() {
        pool.run(s)
            .await
            .map_err(|e| format!("replaying {}: {e}", s.name))?;
    }
    let replayers = (0..plan.clients.max(1))
        .map(|_| Replayer {
            pool: pool.clone(),
            statements: statements.clone(),
        })
        .collect();
    let mut stats = closed_loop(plan, replayers).await?;
    let per = statements.len() as u64;
    stats.statements = stats.ok * per;
    stats.statements_min = per;
    stats.statements_max = per;
    Ok(stats)
}
