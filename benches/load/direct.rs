//! The database's own work: the statements one GraphQL request ran (as reported under
//! `x-eagerql-debug: sql`), replayed through sqlx with the same SQL and parameters, in the
//! same read transaction, without GraphQL, HTTP or JSON in between. Each client holds one
//! connection, as pgbench's do: what a bare Rust client on this driver can make of the
//! request, the ceiling of any server built on it.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
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

    /// A connection of the pool's settings, held by one replaying client for its whole run
    /// and closed with it: detached, so it neither waits for nor takes one of the pool's
    /// slots, and a connection left inside a failed transaction never goes back to the pool.
    async fn hold(&self) -> Res<Held> {
        Ok(match self {
            Pool::Postgres(p) => Held::Postgres(p.acquire().await?.detach()),
            Pool::Sqlite(p) => Held::Sqlite(p.acquire().await?.detach()),
        })
    }
}

/// A connection a replaying client holds.
enum Held {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

impl Held {
    /// Runs one statement with `fetch_all`; returns the number of rows.
    async fn run(&mut self, stmt: &Statement) -> Res<usize> {
        match self {
            Held::Postgres(c) => {
                let q = sqlx::query(AssertSqlSafe(stmt.sql.clone()));
                let q = stmt.params.iter().try_fold(q, bind_pg)?;
                Ok(q.fetch_all(&mut *c).await?.len())
            }
            Held::Sqlite(c) => {
                let q = sqlx::query(AssertSqlSafe(stmt.sql.clone()));
                let q = stmt.params.iter().try_fold(q, bind_sqlite)?;
                Ok(q.fetch_all(&mut *c).await?.len())
            }
        }
    }

    /// Sends transaction control (`begin ...`, `commit`) as a simple query, as the server sends
    /// its `begin`.
    async fn control(&mut self, sql: &'static str) -> Res<()> {
        match self {
            Held::Postgres(c) => {
                sqlx::raw_sql(sql).execute(&mut *c).await?;
            }
            Held::Sqlite(c) => {
                sqlx::raw_sql(sql).execute(&mut *c).await?;
            }
        }
        Ok(())
    }

    /// One request: the statements in order, inside `begin` and `commit` (as the floor's
    /// script) when the server opened a read snapshot for them.
    async fn request(
        &mut self,
        statements: &[Statement],
        begin: Option<&'static str>,
    ) -> Res<usize> {
        if let Some(begin) = begin {
            self.control(begin).await?;
        }
        let mut rows = 0;
        for s in statements {
            rows += self.run(s).await?;
        }
        if begin.is_some() {
            self.control("commit").await?;
        }
        Ok(rows)
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

/// A task of [`run_direct`]: replays the statements in order on its own connection.
struct Replayer {
    conn: Held,
    statements: Arc<Vec<Statement>>,
    begin: Option<&'static str>,
}

impl Worker for Replayer {
    /// Rows returned by the sequence.
    type Outcome = usize;

    async fn step(&mut self) -> Res<usize> {
        self.conn.request(&self.statements, self.begin).await
    }

    fn record(stats: &mut Stats, latency: Duration, rows: usize) {
        stats.ok += 1;
        stats.bytes += rows as u64;
        stats.latencies_us.push(latency.as_micros() as u64);
    }
}

/// Replays `statements` in order, as one "request" (inside `begin` and `commit` when `begin`
/// is given: the server's read snapshot), from `plan.clients` tasks in a closed loop (see
/// [`closed_loop`]), each on a connection of its own. Fails on the first database error.
pub async fn run_direct(
    pool: &Pool,
    plan: Plan,
    statements: Vec<Statement>,
    begin: Option<&'static str>,
) -> Res<Stats> {
    let statements = Arc::new(statements);
    // Once outside the clock, so that a statement that cannot be replayed fails clearly.
    let mut first = pool.hold().await?;
    for s in statements.iter() {
        first
            .run(s)
            .await
            .map_err(|e| format!("replaying {}: {e}", s.name))?;
    }
    let mut replayers = Vec::with_capacity(plan.clients.max(1));
    let mut conn = Some(first);
    for _ in 0..plan.clients.max(1) {
        let conn = match conn.take() {
            Some(c) => c,
            None => pool.hold().await?,
        };
        replayers.push(Replayer {
            conn,
            statements: statements.clone(),
            begin,
        });
    }
    let mut stats = closed_loop(plan, replayers).await?;
    let per = statements.len() as u64;
    stats.statements = stats.ok * per;
    stats.statements_min = per;
    stats.statements_max = per;
    Ok(stats)
}
