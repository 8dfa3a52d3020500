//! The statement-counting wrapper: every SQL statement of the server passes through
//! [`Session`], which needs a [`StatementLog`] to run anything. No code path can reach the pool
//! without it, so every statement of a request, also those run on tasks that loaders spawn,
//! is counted, timed, traced and checked against the request's budget.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, Row};
use tracing::Instrument;

use super::{Backend, Db};
use crate::error::{AppError, AppResult};
use crate::model::Viewer;

/// One executed statement, as reported in the response's `extensions`.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatementRecord {
    /// The access path that ran it, e.g. `orders.by_user_ids`.
    pub name: &'static str,
    /// The SQL text.
    pub sql: Arc<str>,
    /// The bound parameters (key lists as arrays).
    pub params: Vec<serde_json::Value>,
    /// Rows returned (or affected, for writes).
    pub rows: u64,
    /// Wall time in microseconds.
    pub duration_us: u64,
}

/// Called after every statement with its name: a seam for tests and diagnostics (pausing a
/// request between two statements, injecting a failure).
pub type StatementHook = Arc<
    dyn Fn(&'static str) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        + Send
        + Sync,
>;

/// The statements of one request (or one command), and its budget.
#[derive(Default)]
pub struct StatementLog {
    records: Mutex<Vec<StatementRecord>>,
    control: Mutex<Vec<&'static str>>,
    reserved: Mutex<usize>,
    budget: Option<usize>,
    /// Keep SQL text and parameters (for `x-eagerql-debug: sql`); otherwise only names,
    /// row counts and durations are kept, which costs no copies.
    capture: bool,
    hook: Option<StatementHook>,
    /// Rows read by the request so far, and the most it may read.
    rows: std::sync::atomic::AtomicUsize,
    max_rows: Option<usize>,
    /// Set when a statement stopped because the row budget ran out.
    rows_exceeded: std::sync::atomic::AtomicBool,
    /// Planning only: statements are reserved (predicted) but none runs.
    planning_only: bool,
    /// What each reservation planned (planning-only logs keep them).
    plans: Mutex<Vec<serde_json::Value>>,
    /// The PostgreSQL server the request's transaction ran on (`primary`, `replica-N`).
    server: std::sync::OnceLock<Arc<str>>,
    /// Microseconds spent waiting for a connection (the pool, or the request's one
    /// connection while another of its statements used it): apart from database time.
    wait_us: std::sync::atomic::AtomicU64,
    /// What a live subscriber's statements read (kept by shared sessions only).
    reads: Mutex<super::changes::Reads>,
}

impl std::fmt::Debug for StatementLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatementLog")
            .field("count", &self.count())
            .field("budget", &self.budget)
            .finish()
    }
}

impl StatementLog {
    /// A log that allows at most `budget` statements (`None`: unlimited).
    pub fn new(budget: Option<usize>) -> Self {
        StatementLog {
            budget,
            ..Default::default()
        }
    }

    /// What the statements of a live subscriber's execution read (see
    /// [`super::changes::Reads`]).
    pub fn take_reads(&self) -> super::changes::Reads {
        std::mem::take(&mut *self.reads.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A log that only plans: every load reserves its statements as usual and is told
    /// ([`Reserved::PlanOnly`]) to answer without running them, so [`StatementLog::reserved`]
    /// is what the request's plans predict, and nothing touches the database. A statement
    /// that runs anyway (outside any plan) is refused as an internal error.
    pub fn planning_only() -> Self {
        StatementLog {
            planning_only: true,
            ..Default::default()
        }
    }

    /// Reserves `statements` for the plan of response key `field`, and, in a planning-only
    /// log, keeps what it planned (`plan`, built only then) for `extensions.plan`. What the
    /// caller does next: run its statements, or (planning only) answer without them.
    pub fn reserve_plan(
        &self,
        field: &str,
        statements: usize,
        plan: impl FnOnce() -> serde_json::Value,
    ) -> AppResult<Reserved> {
        self.reserve(statements)?;
        // Onto the root field's `plan` span when traces are exported (a span without the
        // field, as when they are not, ignores it).
        tracing::Span::current().record("eagerql.statements", statements);
        if self.planning_only {
            let entry = serde_json::json!({
                "field": field,
                "statements": statements,
                "plan": plan(),
            });
            self.plans
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(entry);
            return Ok(Reserved::PlanOnly);
        }
        Ok(Reserved::Run)
    }

    /// What the reservations of a planning-only log planned, in order.
    pub fn plans(&self) -> Vec<serde_json::Value> {
        self.plans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Statements the request's plans have reserved so far (predicted before they run).
    pub fn reserved(&self) -> usize {
        *self.reserved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The same log, keeping SQL text and parameters of each statement.
    pub fn capturing(mut self) -> Self {
        self.capture = true;
        self
    }

    /// The same log, refusing to read more than `max_rows` rows in all (`None`: no limit).
    pub fn with_row_budget(mut self, max_rows: Option<usize>) -> Self {
        self.max_rows = max_rows;
        self
    }

    /// Rows read so far.
    pub fn rows(&self) -> usize {
        self.rows.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a statement of this request stopped at the row budget.
    pub fn rows_exceeded(&self) -> bool {
        self.rows_exceeded
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts one row read; `false` once the budget is spent (the statement then stops
    /// reading, and its rows are dropped).
    fn take_row(&self) -> bool {
        use std::sync::atomic::Ordering;
        let n = self.rows.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_rows.is_some_and(|max| n > max) {
            self.rows_exceeded.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// The same log, calling `hook` after every statement.
    pub fn with_hook(mut self, hook: Option<StatementHook>) -> Self {
        self.hook = hook;
        self
    }

    /// Statements executed so far.
    pub fn count(&self) -> usize {
        self.lock_records().len()
    }

    /// A copy of the records so far.
    pub fn records(&self) -> Vec<StatementRecord> {
        self.lock_records().clone()
    }

    /// Total database time so far: each statement from when it had its connection, so the
    /// sum never counts one statement's wait for another.
    pub fn total_duration(&self) -> Duration {
        Duration::from_micros(self.lock_records().iter().map(|r| r.duration_us).sum())
    }

    /// Time spent waiting for a connection so far (see [`StatementLog::total_duration`]).
    pub fn total_wait(&self) -> Duration {
        Duration::from_micros(self.wait_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn add_wait(&self, since: Instant) -> u64 {
        let us = u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.wait_us
            .fetch_add(us, std::sync::atomic::Ordering::Relaxed);
        us
    }

    /// Reserves `predicted` statements of the budget before any of them runs, so that a plan
    /// that would exceed the budget is rejected without touching the database.
    pub fn reserve(&self, predicted: usize) -> AppResult<()> {
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let total = *reserved + predicted;
        if let Some(budget) = self.budget
            && total > budget
        {
            return Err(AppError::LimitExceeded(format!(
                "this request needs {total} SQL statements, more than the budget of {budget}"
            )));
        }
        *reserved = total;
        Ok(())
    }

    fn lock_records(&self) -> std::sync::MutexGuard<'_, Vec<StatementRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checked before each statement: a request can never run more than its budget, whatever
    /// its plan predicted.
    fn admit(&self) -> AppResult<()> {
        if self.planning_only {
            return Err(AppError::internal(
                "a statement outside any plan ran while planning only",
            ));
        }
        let done = self.count();
        match self.budget {
            Some(budget) if done >= budget => Err(AppError::LimitExceeded(format!(
                "this request reached its budget of {budget} SQL statements"
            ))),
            _ => Ok(()),
        }
    }

    /// Transaction control statements (`begin`, `commit` once it succeeded, `rollback`) run so
    /// far: shown apart from the data statements, which are what [`StatementLog::count`]
    /// counts.
    pub fn control(&self) -> Vec<&'static str> {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The PostgreSQL server the request's transaction ran on: `primary` or `replica-N`
    /// (`None` on SQLite, or before any transaction).
    pub fn server(&self) -> Option<&str> {
        self.server.get().map(|s| &**s)
    }

    fn set_server(&self, server: Arc<str>) {
        let _ = self.server.set(server);
    }

    fn push_control(&self, what: &'static str) {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    fn push(&self, record: StatementRecord) {
        self.lock_records().push(record);
    }
}

/// What a reservation tells the plan that made it.
#[must_use = "a planning-only run must not run the plan's statements"]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// Run the statements.
    Run,
    /// Planning only: the statements are counted; answer without them (empty rows).
    PlanOnly,
}

/// A value bound to a statement parameter.
#[derive(Clone, Debug)]
pub enum Arg {
    /// An integer.
    I64(i64),
    /// An optional integer.
    OptI64(Option<i64>),
    /// Text.
    Text(String),
    /// Optional text.
    OptText(Option<String>),
    /// A boolean.
    Bool(bool),
    /// A timestamp.
    Ts(DateTime<Utc>),
    /// A key list: ONE parameter whatever its length (PostgreSQL `bigint[]`, SQLite JSON text
    /// read with `json_each`), so the statement text is the same for any number of keys.
    Ids(Vec<i64>),
    /// A text list: ONE parameter (PostgreSQL `text[]`, SQLite JSON text).
    Texts(Vec<String>),
    /// Text bound like [`Arg::Text`] but never shown: the statement log (and so
    /// `extensions.sql`) lists it as `"<redacted>"` (password hashes).
    Secret(String),
}

impl Arg {
    /// The value as JSON, for the statement log.
    fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Arg::I64(v) => Value::from(*v),
            Arg::OptI64(v) => v.map(Value::from).unwrap_or(Value::Null),
            Arg::Text(v) => Value::from(v.as_str()),
            Arg::OptText(v) => v.as_deref().map(Value::from).unwrap_or(Value::Null),
            Arg::Bool(v) => Value::from(*v),
            Arg::Ts(v) => Value::from(v.to_rfc3339()),
            Arg::Ids(v) => Value::from(v.clone()),
            Arg::Texts(v) => Value::from(v.clone()),
            Arg::Secret(_) => Value::from("<redacted>"),
        }
    }
}

/// Typed access to a result row by column index, the same for both backends.
pub trait DbRow {
    /// An integer column.
    fn i64(&self, i: usize) -> Result<i64, sqlx::Error>;
    /// A nullable integer column.
    fn opt_i64(&self, i: usize) -> Result<Option<i64>, sqlx::Error>;
    /// A text column.
    fn text(&self, i: usize) -> Result<String, sqlx::Error>;
    /// A nullable text column.
    fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error>;
    /// A boolean column.
    fn bool(&self, i: usize) -> Result<bool, sqlx::Error>;
    /// A timestamp column.
    fn ts(&self, i: usize) -> Result<DateTime<Utc>, sqlx::Error>;
    /// A nullable timestamp column.
    fn opt_ts(&self, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error>;
    /// A nullable double column.
    fn opt_f64(&self, i: usize) -> Result<Option<f64>, sqlx::Error>;
}

macro_rules! impl_db_row {
    ($row:ty, $get:ident, $int:ident, $opt_int:ident) => {
        impl DbRow for $row {
            fn i64(&self, i: usize) -> Result<i64, sqlx::Error> {
                $int(self, i)
            }
            fn opt_i64(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
                $opt_int(self, i)
            }
            fn text(&self, i: usize) -> Result<String, sqlx::Error> {
                self.$get(i)
            }
            fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
                self.$get(i)
            }
            fn bool(&self, i: usize) -> Result<bool, sqlx::Error> {
                self.$get(i)
            }
            fn ts(&self, i: usize) -> Result<DateTime<Utc>, sqlx::Error> {
                self.$get(i)
            }
            fn opt_ts(&self, i: usize) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
                self.$get(i)
            }
            fn opt_f64(&self, i: usize) -> Result<Option<f64>, sqlx::Error> {
                self.$get(i)
            }
        }
    };
}
// PostgreSQL: every statement here casts its columns to the types read (`::int8`), and the
// decoders check the value's size and encoding anyway, so the per-value type-name check of
// `try_get` is skipped (it was a measurable share of decoding). SQLite's dynamic typing keeps
// the checked path.
impl_db_row!(PgRow, try_get_unchecked, pg_int, pg_opt_int);
impl_db_row!(SqliteRow, try_get, sqlite_int, sqlite_opt_int);

/// A PostgreSQL `int8` in binary format read straight from its eight bytes: the driver's
/// general integer decoder (any width, text or binary) was the largest part of reading a
/// row. Anything else (NULL, another width) takes the driver's checked path and its error.
fn pg_int(row: &PgRow, i: usize) -> Result<i64, sqlx::Error> {
    match pg_int8(&row.try_get_raw(i)?) {
        Some(n) => Ok(n),
        None => row.try_get_unchecked(i),
    }
}

fn pg_opt_int(row: &PgRow, i: usize) -> Result<Option<i64>, sqlx::Error> {
    use sqlx::ValueRef as _;
    let value = row.try_get_raw(i)?;
    if value.is_null() {
        return Ok(None);
    }
    match pg_int8(&value) {
        Some(n) => Ok(Some(n)),
        None => row.try_get_unchecked(i),
    }
}

fn pg_int8(value: &sqlx::postgres::PgValueRef<'_>) -> Option<i64> {
    if value.format() != sqlx::postgres::PgValueFormat::Binary {
        return None;
    }
    let bytes = <[u8; 8]>::try_from(value.as_bytes().ok()?).ok()?;
    Some(i64::from_be_bytes(bytes))
}

fn sqlite_int(row: &SqliteRow, i: usize) -> Result<i64, sqlx::Error> {
    row.try_get(i)
}

fn sqlite_opt_int(row: &SqliteRow, i: usize) -> Result<Option<i64>, sqlx::Error> {
    row.try_get(i)
}

/// Runs the statements of many sessions together (see [`super::multiplex`]).
pub trait Shared: Send + Sync + std::fmt::Debug {
    /// The pool.
    fn db(&self) -> &Db;

    /// Hands a statement over and waits for its rows.
    fn fetch(
        &self,
        name: &'static str,
        sql: String,
        args: Vec<Arg>,
    ) -> futures_util::future::BoxFuture<'_, AppResult<Vec<RawRow>>>;
}

/// A row as the database returned it, decoded later (see [`super::multiplex`]).
pub enum RawRow {
    /// A PostgreSQL row.
    Pg(PgRow),
    /// A SQLite row.
    Sqlite(SqliteRow),
}

impl RawRow {
    /// The row, read by column index.
    pub fn get(&self) -> &dyn DbRow {
        match self {
            RawRow::Pg(r) => r,
            RawRow::Sqlite(r) => r,
        }
    }

    /// Its last column, an integer: whose row it is in a shared statement.
    pub fn tag(&self) -> Option<i64> {
        let last = match self {
            RawRow::Pg(r) => r.len().checked_sub(1)?,
            RawRow::Sqlite(r) => r.len().checked_sub(1)?,
        };
        self.get().i64(last).ok()
    }
}

/// Decodes rows as they stream in, counting each against the request's row budget: past it
/// the statement stops (its stream is dropped, so the rest is never read) and the caller sees
/// [`StatementLog::rows_exceeded`].
async fn decode_all<R: Into<RawRow> + DbRow, T>(
    mut rows: futures_util::stream::BoxStream<'_, Result<R, sqlx::Error>>,
    decode: &impl Decode<T>,
    log: &StatementLog,
) -> Result<Vec<T>, sqlx::Error> {
    use futures_util::TryStreamExt as _;
    let mut out = Vec::new();
    while let Some(row) = rows.try_next().await? {
        if !log.take_row() {
            return Err(sqlx::Error::RowNotFound);
        }
        out.push(decode.decode(row)?);
    }
    Ok(out)
}

/// How a statement's rows become values: decoded one by one as they arrive, or kept whole.
trait Decode<T> {
    fn decode<R: Into<RawRow> + DbRow>(&self, row: R) -> Result<T, sqlx::Error>;
}

/// Decodes each row by reference with the function.
struct ByRef<F>(F);

impl<T, F: Fn(&dyn DbRow) -> Result<T, sqlx::Error>> Decode<T> for ByRef<F> {
    fn decode<R: Into<RawRow> + DbRow>(&self, row: R) -> Result<T, sqlx::Error> {
        (self.0)(&row)
    }
}

/// Keeps each row undecoded.
struct Undecoded;

impl Decode<RawRow> for Undecoded {
    fn decode<R: Into<RawRow> + DbRow>(&self, row: R) -> Result<RawRow, sqlx::Error> {
        Ok(row.into())
    }
}

impl From<PgRow> for RawRow {
    fn from(r: PgRow) -> RawRow {
        RawRow::Pg(r)
    }
}

impl From<SqliteRow> for RawRow {
    fn from(r: SqliteRow) -> RawRow {
        RawRow::Sqlite(r)
    }
}

/// Formats a timestamp the way SQLite columns store it (ISO-8601 UTC, milliseconds, `Z`), so
/// that text comparison is chronological.
pub fn sqlite_ts(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A statement with its arguments bound, on one backend.
type Bound<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>;

/// The arguments each backend binds in its own way.
enum Special {
    Ts(DateTime<Utc>),
    Ids(Vec<i64>),
    Texts(Vec<String>),
}

/// Binds `args` in order: the plain values the same way on every backend, the rest
/// (timestamps and lists) by `dialect`.
fn bind_with<'q, DB>(
    sql: &'q str,
    args: Vec<Arg>,
    dialect: impl Fn(Bound<'q, DB>, Special) -> Bound<'q, DB>,
) -> Bound<'q, DB>
where
    DB: sqlx::Database,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for arg in args {
        q = match arg {
            Arg::I64(v) => q.bind(v),
            Arg::OptI64(v) => q.bind(v),
            Arg::Text(v) | Arg::Secret(v) => q.bind(v),
            Arg::OptText(v) => q.bind(v),
            Arg::Bool(v) => q.bind(v),
            Arg::Ts(v) => dialect(q, Special::Ts(v)),
            Arg::Ids(v) => dialect(q, Special::Ids(v)),
            Arg::Texts(v) => dialect(q, Special::Texts(v)),
        };
    }
    q
}

fn bind_pg(sql: &str, args: Vec<Arg>) -> Bound<'_, sqlx::Postgres> {
    bind_with(sql, args, |q, arg| match arg {
        Special::Ts(v) => q.bind(v),
        Special::Ids(v) => q.bind(v),
        Special::Texts(v) => q.bind(v),
    })
}

fn bind_sqlite(sql: &str, args: Vec<Arg>) -> Bound<'_, sqlx::Sqlite> {
    bind_with(sql, args, |q, arg| match arg {
        Special::Ts(v) => q.bind(sqlite_ts(v)),
        Special::Ids(v) => q.bind(ids_json(&v)),
        Special::Texts(v) => q.bind(serde_json::Value::from(v).to_string()),
    })
}

/// A key list as the JSON array text that SQLite's `json_each` reads.
fn ids_json(ids: &[i64]) -> String {
    let mut out = String::with_capacity(ids.len() * 8 + 2);
    out.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&id.to_string());
    }
    out.push(']');
    out
}

/// An open transaction, shared by the clones of a [`Session`]. Dropped without a commit, it
/// rolls back.
enum Tx {
    /// A read snapshot not begun yet: it begins with the first statement, so a request that
    /// runs no SQL costs no round trip.
    PendingRead,
    /// [`Tx::PendingRead`] on the primary, never a replica.
    PendingPrimaryRead,
    Postgres(Option<sqlx::Transaction<'static, sqlx::Postgres>>),
    Sqlite(Option<sqlx::Transaction<'static, sqlx::Sqlite>>),
}

impl Tx {
    /// Commits (`commit`) or rolls back a begun transaction, once; a second end, or the end of
    /// a snapshot never begun, does nothing.
    async fn end(&mut self, commit: bool) -> Result<(), sqlx::Error> {
        match self {
            Tx::PendingRead | Tx::PendingPrimaryRead => Ok(()),
            Tx::Postgres(t) => match t.take() {
                Some(t) if commit => t.commit().await,
                Some(t) => t.rollback().await,
                None => Ok(()),
            },
            Tx::Sqlite(t) => match t.take() {
                Some(t) if commit => t.commit().await,
                Some(t) => t.rollback().await,
                None => Ok(()),
            },
        }
    }
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tx")
    }
}

/// Where statements run: on any pooled connection, or inside one transaction.
#[derive(Clone, Debug)]
enum Exec {
    Pool,
    Tx(Arc<tokio::sync::Mutex<Tx>>),
    /// Handed to a multiplexer that runs them together with other executions' (reads only).
    Shared(Arc<dyn Shared>),
}

/// A database handle bound to one request's [`StatementLog`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Session {
    db: Db,
    log: Arc<StatementLog>,
    exec: Exec,
    /// Whose rows the loads may read (see [`crate::entities::Visibility`]).
    viewer: Viewer,
}

/// Locks the session's transaction, beginning a pending read snapshot.
async fn lock_open<'a>(
    session: &Session,
    tx: &'a tokio::sync::Mutex<Tx>,
    waited_us: &std::sync::atomic::AtomicU64,
) -> Result<tokio::sync::MutexGuard<'a, Tx>, sqlx::Error> {
    let since = Instant::now();
    let mut guard = tx.lock().await;
    if matches!(*guard, Tx::PendingRead | Tx::PendingPrimaryRead) {
        // Boxed: the pool's acquire and the BEGIN are a large future, and this is the rare
        // path (a request opens its snapshot up front), so every statement's future stays
        // small.
        Box::pin(session.open_read(&mut guard)).await?;
    }
    let us = session.log.add_wait(since);
    waited_us.store(us, std::sync::atomic::Ordering::Relaxed);
    Ok(guard)
}

/// Rolls a transaction back on an error path; sqlx would also do it when the transaction is
/// dropped, this makes it explicit and logged.
async fn rollback(tx: &mut Tx) {
    if let Err(err) = tx.end(false).await {
        tracing::warn!(error = %err, "rollback failed");
    }
}

/// How long a commit waits for its write's position to be announced (see
/// [`super::replicas`]).
const ANNOUNCE_WAIT: Duration = Duration::from_millis(200);

impl Session {
    /// Binds `db` to `log`, for an anonymous viewer (see [`Session::as_viewer`]).
    pub fn new(db: Db, log: Arc<StatementLog>) -> Self {
        Session {
            db,
            log,
            exec: Exec::Pool,
            viewer: Viewer::Anonymous,
        }
    }

    /// The same session (connection, transaction, log), loading what `viewer` may see.
    pub fn as_viewer(&self, viewer: Viewer) -> Session {
        Session {
            viewer,
            ..self.clone()
        }
    }

    /// Whose rows the loads of this session may read.
    pub fn viewer(&self) -> Viewer {
        self.viewer
    }

    /// Opens a write transaction on one connection; the returned session runs every statement
    /// inside it until [`Session::commit`]. On SQLite it is `BEGIN IMMEDIATE`, so concurrent
    /// writers queue for the write lock (up to the busy timeout) instead of failing half-way;
    /// on PostgreSQL it is `READ COMMITTED`, with row locks taken by the statements that need
    /// them.
    pub async fn begin_write(&self) -> AppResult<Session> {
        let since = Instant::now();
        let waiting = super::Waiting::start();
        let tx = match &self.db {
            Db::Postgres(pg) => {
                let tx = pg.begin_write().await?;
                self.log.set_server(pg.replicas().primary_label());
                Tx::Postgres(Some(tx))
            }
            Db::Sqlite(pool) => Tx::Sqlite(Some(pool.begin_with("BEGIN IMMEDIATE").await?)),
        };
        drop(waiting);
        self.log.add_wait(since);
        self.log.push_control("begin");
        Ok(Session {
            db: self.db.clone(),
            log: self.log.clone(),
            exec: Exec::Tx(Arc::new(tokio::sync::Mutex::new(tx))),
            viewer: self.viewer,
        })
    }

    /// Ends a read snapshot ([`Session::begin_read`]; otherwise the same as
    /// [`Session::commit`]). On PostgreSQL the read-only transaction is not committed with a
    /// round trip of its own: its end is sent with the pool's check of the connection as it
    /// goes back (sqlx queues a `ROLLBACK`, which for a read-only transaction is the same as
    /// `COMMIT`), so the answer does not wait for it and the connection makes one round trip
    /// fewer.
    pub async fn end_read(&self) -> AppResult<()> {
        let Exec::Tx(tx) = &self.exec else {
            return Ok(());
        };
        let mut guard = tx.lock().await;
        match &mut *guard {
            Tx::PendingRead | Tx::PendingPrimaryRead => return Ok(()),
            Tx::Postgres(t) => drop(t.take()),
            Tx::Sqlite(t) => {
                if let Some(t) = t.take() {
                    t.commit().await?;
                }
            }
        }
        self.log.push_control("end read");
        Ok(())
    }

    /// Commits the transaction this session runs in (no-op outside one).
    pub async fn commit(&self) -> AppResult<()> {
        let Exec::Tx(tx) = &self.exec else {
            return Ok(());
        };
        let mut guard = tx.lock().await;
        if matches!(*guard, Tx::PendingRead | Tx::PendingPrimaryRead) {
            return Ok(());
        }
        guard.end(true).await?;
        drop(guard);
        // Listed only once it happened: a request with no `commit` wrote nothing.
        self.log.push_control("commit");
        // With read replicas, the writer's next reads must see this write.
        if let Db::Postgres(pg) = &self.db
            && pg.replicas().follows_writes()
            && let Some(user) = self.viewer.user_id().filter(|id| *id > 0)
        {
            // On its own task, so a request given up meanwhile still leaves the note; waited
            // for briefly, so a busy pool never turns a committed write into a failed request
            // (the viewer then reads from the primary for the period).
            let replicas = pg.replicas_shared();
            let announced = tokio::spawn(async move { replicas.announce_write(user).await });
            if tokio::time::timeout(ANNOUNCE_WAIT, announced)
                .await
                .is_err()
            {
                pg.replicas().note_write(user, u64::MAX);
            }
            self.log.push_control("announce write");
        }
        Ok(())
    }

    /// A session whose statements all read one consistent snapshot: a read-only transaction on
    /// one connection, held until [`Session::commit`] (PostgreSQL `REPEATABLE READ READ ONLY`;
    /// SQLite a deferred transaction, whose first read fixes the snapshot in WAL mode). It
    /// begins lazily, with the first statement.
    pub fn begin_read(&self) -> Session {
        Session {
            db: self.db.clone(),
            log: self.log.clone(),
            exec: Exec::Tx(Arc::new(tokio::sync::Mutex::new(Tx::PendingRead))),
            viewer: self.viewer,
        }
    }

    /// [`Session::begin_read`] on the primary: what reads it sees every write committed
    /// before it began (a replica may lag).
    pub fn begin_read_primary(&self) -> Session {
        Session {
            db: self.db.clone(),
            log: self.log.clone(),
            exec: Exec::Tx(Arc::new(tokio::sync::Mutex::new(Tx::PendingPrimaryRead))),
            viewer: self.viewer,
        }
    }

    /// A session whose statements are run by `mux` together with other executions' (see
    /// [`super::multiplex`]), recorded in `log`; it only reads.
    pub fn shared(mux: Arc<dyn Shared>, log: Arc<StatementLog>) -> Session {
        Session {
            db: mux.db().clone(),
            log,
            exec: Exec::Shared(mux),
            viewer: Viewer::Anonymous,
        }
    }

    /// Opens a pending read snapshot now, taking its connection from the pool: a request
    /// takes its connection once, up front, and fails as a whole when none is free in time,
    /// instead of answering half its fields.
    pub async fn open(&self) -> AppResult<()> {
        if let Exec::Tx(tx) = &self.exec {
            let mut guard = tx.lock().await;
            self.open_read(&mut guard).await?;
        }
        Ok(())
    }

    /// Opens a pending read snapshot on first use.
    async fn open_read(&self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        if matches!(tx, Tx::PendingRead | Tx::PendingPrimaryRead) {
            let waiting = super::Waiting::start();
            *tx = match &self.db {
                Db::Postgres(pg) if matches!(tx, Tx::PendingPrimaryRead) => {
                    let sql = AssertSqlSafe(pg.begin_read_sql().to_owned());
                    let t = pg.primary().begin_with(sql).await?;
                    self.log.set_server(pg.replicas().primary_read());
                    Tx::Postgres(Some(t))
                }
                Db::Postgres(pg) => Tx::Postgres(Some(self.begin_snapshot(pg).await?)),
                // SQLite announces a write from its commit hook, while the writer still holds
                // the write lock and before its commit is visible: taking and giving back the
                // lock waits for that commit to end, so what follows reads it.
                Db::Sqlite(pool) if matches!(tx, Tx::PendingPrimaryRead) => {
                    pool.begin_with("BEGIN IMMEDIATE").await?.commit().await?;
                    Tx::Sqlite(Some(pool.begin().await?))
                }
                Db::Sqlite(pool) => Tx::Sqlite(Some(pool.begin().await?)),
            };
            drop(waiting);
            self.log.push_control("begin read");
        }
        Ok(())
    }

    /// Begins a read snapshot on the next healthy replica, or on the primary when none is
    /// (or when each one tried fails to begin: it is then out of rotation until its health
    /// check passes).
    async fn begin_snapshot(
        &self,
        pg: &super::Pg,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        let sql = pg.begin_read_sql();
        // Each replica at most once: a health check may put one back meanwhile.
        // A viewer who wrote recently reads only what has replayed its write.
        let min = pg.replicas().required_lsn(self.viewer.user_id());
        for _ in 0..pg.replicas().list().len() {
            let Some(replica) = pg.replicas().pick(min) else {
                break;
            };
            match replica.pool.begin_with(AssertSqlSafe(sql.to_owned())).await {
                Ok(tx) => {
                    replica.count_read();
                    self.log.set_server(replica.label.clone());
                    return Ok(tx);
                }
                // Busy, not down: every connection of its pool is in use. This request reads
                // on the next one (or the primary); the replica stays in rotation.
                Err(sqlx::Error::PoolTimedOut) => {}
                Err(err) => pg.replicas().mark_down(replica, &err),
            }
        }
        let tx = pg
            .primary()
            .begin_with(AssertSqlSafe(sql.to_owned()))
            .await?;
        self.log.set_server(pg.replicas().primary_read());
        Ok(tx)
    }

    /// Rolls the transaction back (no-op outside one, or after a commit).
    pub async fn rollback(&self) {
        if let Exec::Tx(tx) = &self.exec {
            rollback(&mut *tx.lock().await).await;
            self.log.push_control("rollback");
        }
    }

    /// A session with its own unlimited log, for commands and background work: it sees
    /// every row ([`Viewer::OPERATOR`]).
    pub fn unmetered(db: Db) -> Self {
        Session::new(db, Arc::new(StatementLog::new(None))).as_viewer(Viewer::OPERATOR)
    }

    /// Whether statements may be named prepared statements (not behind a transaction
    /// pooler).
    fn named_statements(&self) -> bool {
        match &self.db {
            Db::Postgres(pg) => !pg.pooled(),
            Db::Sqlite(_) => true,
        }
    }

    /// The backend, which decides the dialect.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// The pool.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The request's statement log.
    pub fn log(&self) -> &Arc<StatementLog> {
        &self.log
    }

    /// Runs a query and decodes each row with `decode`. The statement is prepared once per
    /// connection and its plan cached (on PostgreSQL, one generic plan: see [`super::Db::connect`]).
    pub async fn fetch<T>(
        &self,
        name: &'static str,
        sql: String,
        args: Vec<Arg>,
        decode: impl Fn(&dyn DbRow) -> Result<T, sqlx::Error>,
    ) -> AppResult<Vec<T>> {
        self.fetch_as(name, sql, args, decode, true).await
    }

    /// [`Session::fetch`] for a statement that reads of the table `key.0` only the row
    /// `key.1` (by its id), or only rows an earlier statement of the same answer read (`None`):
    /// a live subscriber's answer depends on those rows of it, and on every row of the other
    /// tables the statement names.
    pub async fn fetch_keyed<T>(
        &self,
        name: &'static str,
        sql: String,
        args: Vec<Arg>,
        key: (&'static str, Option<i64>),
        decode: impl Fn(&dyn DbRow) -> Result<T, sqlx::Error>,
    ) -> AppResult<Vec<T>> {
        if let Exec::Shared(mux) = &self.exec {
            return Box::pin(self.fetch_shared(&**mux, name, sql, args, Some(key), decode)).await;
        }
        self.fetch_as(name, sql, args, decode, true).await
    }

    /// Runs a query for at most one row: the first, decoded, or `None`.
    pub async fn fetch_first<T>(
        &self,
        name: &'static str,
        sql: &str,
        args: Vec<Arg>,
        decode: impl Fn(&dyn DbRow) -> Result<T, sqlx::Error>,
    ) -> AppResult<Option<T>> {
        let rows = self.fetch(name, sql.to_owned(), args, decode).await?;
        Ok(rows.into_iter().next())
    }

    /// Runs a query without caching its prepared statement: for statements whose text carries
    /// their values (analytics), planned afresh for those values on every run.
    pub async fn fetch_unprepared<T>(
        &self,
        name: &'static str,
        sql: String,
        decode: impl Fn(&dyn DbRow) -> Result<T, sqlx::Error>,
    ) -> AppResult<Vec<T>> {
        self.fetch_as(name, sql, Vec::new(), decode, false).await
    }

    async fn fetch_as<T>(
        &self,
        name: &'static str,
        sql: String,
        args: Vec<Arg>,
        decode: impl Fn(&dyn DbRow) -> Result<T, sqlx::Error>,
        prepared: bool,
    ) -> AppResult<Vec<T>> {
        if let Exec::Shared(mux) = &self.exec {
            return Box::pin(self.fetch_shared(&**mux, name, sql, args, None, decode)).await;
        }
        self.run_fetch(name, sql, args, ByRef(decode), prepared)
            .await
    }

    async fn run_fetch<T>(
        &self,
        name: &'static str,
        sql: String,
        args: Vec<Arg>,
        decode: impl Decode<T>,
        prepared: bool,
    ) -> AppResult<Vec<T>> {
        self.log.admit()?;
        let span = tracing::debug_span!("sql", statement = name, rows = tracing::field::Empty);
        let params = self.params_of(&args);
        let started = Instant::now();
        let waited_us = std::sync::atomic::AtomicU64::new(0);
        let out: Result<Vec<T>, sqlx::Error> = async {
            // Rows are decoded as they arrive and dropped at once, so a large result is never
            // held twice (raw rows and decoded values).
            match (&self.exec, &self.db) {
                // Statements outside a transaction (writes' reads, commands) are boxed: each
                // arm's future holds a pool acquire, and an unboxed one would make the future
                // of every statement in a read snapshot (the hot path) as large.
                (Exec::Pool, Db::Postgres(pg)) if pg.pooled() => {
                    Box::pin(async {
                        // Behind a transaction pooler a statement outside a transaction may
                        // have its parse and its execution land on different server
                        // connections: it gets one of its own.
                        let mut tx = pg.begin_write().await?;
                        let out = decode_all(
                            bind_pg(&sql, args).persistent(false).fetch(&mut *tx),
                            &decode,
                            &self.log,
                        )
                        .await?;
                        tx.commit().await?;
                        Ok(out)
                    })
                    .await
                }
                (Exec::Pool, Db::Postgres(pg)) => {
                    Box::pin(decode_all(
                        bind_pg(&sql, args).persistent(prepared).fetch(pg.primary()),
                        &decode,
                        &self.log,
                    ))
                    .await
                }
                (Exec::Pool, Db::Sqlite(pool)) => {
                    Box::pin(decode_all(
                        bind_sqlite(&sql, args).persistent(prepared).fetch(&**pool),
                        &decode,
                        &self.log,
                    ))
                    .await
                }
                (Exec::Tx(tx), _) => match &mut *lock_open(self, tx, &waited_us).await? {
                    Tx::Postgres(Some(t)) => {
                        decode_all(
                            bind_pg(&sql, args)
                                .persistent(prepared && self.named_statements())
                                .fetch(&mut **t),
                            &decode,
                            &self.log,
                        )
                        .await
                    }
                    Tx::Sqlite(Some(t)) => {
                        decode_all(
                            bind_sqlite(&sql, args).persistent(prepared).fetch(&mut **t),
                            &decode,
                            &self.log,
                        )
                        .await
                    }
                    _ => Err(sqlx::Error::Protocol(
                        "the transaction is already closed".into(),
                    )),
                },
                (Exec::Shared(_), _) => Err(sqlx::Error::Protocol(
                    "a shared session only reads through its multiplexer".into(),
                )),
            }
        }
        .instrument(span.clone())
        .await;
        let rows = out.as_ref().map(|v| v.len() as u64).unwrap_or(0);
        span.record("rows", rows);
        self.record(name, sql, params, rows, started, waited_us.into_inner());
        self.after(name).await;
        if out.is_err() && self.log.rows_exceeded() {
            return Err(AppError::LimitExceeded(format!(
                "this request reads more than {} rows (EAGERQL_MAX_ROWS); select less, or page \
                 with `first`",
                self.log.max_rows.unwrap_or(0)
            )));
        }
        Ok(out?)
    }

    /// [`Session::fetch`] through a multiplexer: the statement runs with the other waiting
    /// executions' (it is recorded here as this execution's part), and its rows are decoded
    /// here, each counted against this execution's row budget.
    async fn fetch_shared<T>(
        &self,
        mux: &dyn Shared,
        name: &'static str,
        sql: String,
        args: Vec<Arg>,
        key: Option<(&'static str, Option<i64>)>,
        decode: impl Fn(&dyn DbRow) -> Result<T, sqlx::Error>,
    ) -> AppResult<Vec<T>> {
        self.log.admit()?;
        self.log
            .reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add_statement(&sql, key);
        let params = self.params_of(&args);
        let started = Instant::now();
        let text = if self.log.capture {
            sql.clone()
        } else {
            String::new()
        };
        let rows = mux.fetch(name, sql, args).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            if !self.log.take_row() {
                return Err(AppError::LimitExceeded(format!(
                    "this request reads more than {} rows (EAGERQL_MAX_ROWS); select less, or \
                     page with `first`",
                    self.log.max_rows.unwrap_or(0)
                )));
            }
            out.push(decode(row.get())?);
        }
        self.record(name, text, params, out.len() as u64, started, 0);
        Ok(out)
    }

    /// Runs a query and gives its rows undecoded (see [`super::multiplex`]); `prepared`: its
    /// statement may be kept prepared. Counted and checked against the budget like any other.
    pub(super) async fn fetch_rows(
        &self,
        name: &'static str,
        sql: String,
        args: Vec<Arg>,
        prepared: bool,
    ) -> AppResult<Vec<RawRow>> {
        self.run_fetch(name, sql, args, Undecoded, prepared).await
    }

    /// Runs a statement that returns no rows; gives the number of rows affected.
    pub async fn execute(&self, name: &'static str, sql: String, args: Vec<Arg>) -> AppResult<u64> {
        self.log.admit()?;
        let span = tracing::debug_span!("sql", statement = name, rows = tracing::field::Empty);
        let params = self.params_of(&args);
        let started = Instant::now();
        let waited_us = std::sync::atomic::AtomicU64::new(0);
        let out: Result<u64, sqlx::Error> = async {
            match (&self.exec, &self.db) {
                (Exec::Pool, Db::Postgres(pg)) if pg.pooled() => {
                    async {
                        let mut tx = pg.begin_write().await?;
                        let n = bind_pg(&sql, args)
                            .persistent(false)
                            .execute(&mut *tx)
                            .await?
                            .rows_affected();
                        tx.commit().await?;
                        Ok(n)
                    }
                    .await
                }
                (Exec::Pool, Db::Postgres(pg)) => bind_pg(&sql, args)
                    .execute(pg.primary())
                    .await
                    .map(|r| r.rows_affected()),
                (Exec::Pool, Db::Sqlite(pool)) => bind_sqlite(&sql, args)
                    .execute(&**pool)
                    .await
                    .map(|r| r.rows_affected()),
                (Exec::Tx(tx), _) => match &mut *lock_open(self, tx, &waited_us).await? {
                    Tx::Postgres(Some(t)) => bind_pg(&sql, args)
                        .persistent(self.named_statements())
                        .execute(&mut **t)
                        .await
                        .map(|r| r.rows_affected()),
                    Tx::Sqlite(Some(t)) => bind_sqlite(&sql, args)
                        .execute(&mut **t)
                        .await
                        .map(|r| r.rows_affected()),
                    _ => Err(sqlx::Error::Protocol(
                        "the transaction is already closed".into(),
                    )),
                },
                (Exec::Shared(_), _) => Err(sqlx::Error::Protocol(
                    "a shared session only reads through its multiplexer".into(),
                )),
            }
        }
        .instrument(span.clone())
        .await;
        span.record("rows", *out.as_ref().unwrap_or(&0));
        self.record(
            name,
            sql,
            params,
            *out.as_ref().unwrap_or(&0),
            started,
            waited_us.into_inner(),
        );
        self.after(name).await;
        Ok(out?)
    }

    /// Bulk-loads rows with PostgreSQL `COPY ... FROM STDIN` (text format). `statement` is the
    /// `COPY` statement, `data` the rows in COPY text format. PostgreSQL only.
    pub async fn copy_in(
        &self,
        name: &'static str,
        statement: String,
        data: Vec<u8>,
    ) -> AppResult<u64> {
        use sqlx::postgres::PgPoolCopyExt;
        self.log.admit()?;
        let started = Instant::now();
        let Db::Postgres(pg) = &self.db else {
            return Err(AppError::internal("COPY is only available on PostgreSQL"));
        };
        let pool = pg.primary();
        let out: Result<u64, sqlx::Error> = async {
            let mut copy = pool.copy_in_raw(&statement).await?;
            copy.send(data).await?;
            copy.finish().await
        }
        .await;
        self.record(
            name,
            statement,
            Vec::new(),
            *out.as_ref().unwrap_or(&0),
            started,
            0,
        );
        Ok(out?)
    }

    async fn after(&self, name: &'static str) {
        if let Some(hook) = &self.log.hook {
            hook(name).await;
        }
    }

    fn params_of(&self, args: &[Arg]) -> Vec<serde_json::Value> {
        if self.log.capture {
            args.iter().map(Arg::to_json).collect()
        } else {
            Vec::new()
        }
    }

    fn record(
        &self,
        name: &'static str,
        sql: String,
        params: Vec<serde_json::Value>,
        rows: u64,
        started: Instant,
        waited_us: u64,
    ) {
        let duration_us = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .saturating_sub(waited_us);
        tracing::debug!(statement = name, rows, duration_us, "sql");
        let sql: Arc<str> = if self.log.capture {
            Arc::from(sql)
        } else {
            Arc::from("")
        };
        self.log.push(StatementRecord {
            name,
            sql,
            params,
            rows,
            duration_us,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_are_one_json_parameter() {
        assert_eq!(ids_json(&[]), "[]");
        assert_eq!(ids_json(&[1, 22, 333]), "[1,22,333]");
    }

    #[test]
    fn budget_rejects_predictions_over_it() {
        let log = StatementLog::new(Some(3));
        assert!(log.reserve(2).is_ok());
        assert!(matches!(log.reserve(2), Err(AppError::LimitExceeded(_))));
        assert!(log.reserve(1).is_ok());
    }
}
