//! Many executions, one set of statements: the refresh of a live query's subscribers.
//!
//! Every subscriber of a live query runs the same operation through the same pipeline as a
//! query, each with its own variables and viewer, on a [`Session`] that does not reach the
//! database itself: each statement it would run is handed to a [`Multiplexer`] and waits.
//! [`Multiplexer::run_all`] drives all the executions in one task; when none of them can go on
//! without its rows, it sends the waiting statements, **one per distinct statement text**,
//! whatever the number of subscribers: every subscriber's parameters (its ids, its page, its
//! viewer's id for the owner-only rules) travel in one parameter, and each row comes back
//! tagged with the subscriber it belongs to (its last column).
//!
//! - PostgreSQL: `select q.*, m.i from jsonb_array_elements($1) with ordinality m(v, i) cross
//!   join lateral (<the statement, each $k read from m.v>) q`: the text is the same for any
//!   number of subscribers, so it is prepared once.
//! - SQLite (no LATERAL): `select *, 1 from (<statement>) union all select *, 2 from (...)`,
//!   each subscriber's parameters renumbered; one statement, run unprepared.
//!
//! Subscribers with the same plan and kind of viewer write the same texts, so a refresh costs
//! the plan's statement count whether one or ten thousand subscribers share it. All of them
//! read one snapshot, on the primary.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use tokio::sync::oneshot;
use tokio::task::Unconstrained;

use super::session::{Arg, RawRow, Session, Shared};
use super::{Backend, Db};
use crate::error::{AppError, AppResult};

/// A statement an execution waits to have run.
struct Waiting {
    name: &'static str,
    sql: String,
    args: Vec<Arg>,
    reply: oneshot::Sender<Result<Vec<RawRow>, AppError>>,
}

/// Gathers the statements of many executions and runs them together (see the module
/// documentation).
pub struct Multiplexer {
    session: Session,
    waiting: Mutex<Vec<Waiting>>,
    /// Statements sent to the database.
    statements: AtomicUsize,
    /// Rows they returned.
    rows: AtomicUsize,
    /// The tables they read.
    tables: Mutex<BTreeSet<&'static str>>,
}

impl std::fmt::Debug for Multiplexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multiplexer")
            .field("statements", &self.statements.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Multiplexer {
    /// Runs statements on `session`, which should read one snapshot (see
    /// [`Session::begin_read_primary`]).
    pub fn new(session: Session) -> Arc<Multiplexer> {
        Arc::new(Multiplexer {
            session,
            waiting: Mutex::new(Vec::new()),
            statements: AtomicUsize::new(0),
            rows: AtomicUsize::new(0),
            tables: Mutex::new(BTreeSet::new()),
        })
    }

    /// The statements sent to the database so far.
    pub fn statements(&self) -> usize {
        self.statements.load(Ordering::Relaxed)
    }

    /// The rows they returned.
    pub fn rows(&self) -> usize {
        self.rows.load(Ordering::Relaxed)
    }

    /// The tables the statements read (those of [`super::changes::TABLES`] they name).
    pub fn tables(&self) -> BTreeSet<&'static str> {
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The backend, which decides the dialect.
    pub fn backend(&self) -> Backend {
        self.session.backend()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drives `executions` to their ends in this task. Whenever none of them can go on, the
    /// statements they wait for are sent, one per distinct text; then they go on. Their
    /// outputs come back in their order.
    pub async fn run_all<F: Future>(&self, executions: Vec<F>) -> Vec<F::Output> {
        let parent = Arc::new(Mutex::new(None::<Waker>));
        let mut slots: Vec<Slot<Unconstrained<F>>> = executions
            .into_iter()
            .map(|f| Slot {
                // Out of the runtime's cooperative budget: a budget spent by the others
                // would defer an execution's wake past the moment all are found waiting, and
                // its statement would go out alone.
                future: Box::pin(tokio::task::unconstrained(f)),
                woken: Arc::new(Flag {
                    set: AtomicBool::new(true),
                    parent: parent.clone(),
                }),
                out: None,
            })
            .collect();
        let mut sending: Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
        std::future::poll_fn(|cx| {
            *parent.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
            loop {
                for slot in slots.iter_mut().filter(|s| s.out.is_none()) {
                    if slot.woken.set.swap(false, Ordering::AcqRel) {
                        let waker = Waker::from(slot.woken.clone());
                        if let Poll::Ready(out) =
                            slot.future.as_mut().poll(&mut Context::from_waker(&waker))
                        {
                            slot.out = Some(out);
                        }
                    }
                }
                if let Some(send) = sending.as_mut() {
                    match send.as_mut().poll(cx) {
                        Poll::Ready(()) => sending = None,
                        Poll::Pending => return Poll::Pending,
                    }
                }
                let runnable = slots
                    .iter()
                    .any(|s| s.out.is_none() && s.woken.set.load(Ordering::Acquire));
                if runnable {
                    continue;
                }
                if slots.iter().all(|s| s.out.is_some()) {
                    return Poll::Ready(());
                }
                let batch = std::mem::take(&mut *self.lock());
                if batch.is_empty() {
                    // Waiting on something else: its wake brings this back.
                    return Poll::Pending;
                }
                sending = Some(Box::pin(self.send(batch)));
            }
        })
        .await;
        slots.into_iter().filter_map(|s| s.out).collect()
    }

    /// Sends the waiting statements: those with the same text and kinds of parameters as one.
    async fn send(&self, batch: Vec<Waiting>) {
        let mut groups: Vec<Vec<Waiting>> = Vec::new();
        for w in batch {
            match groups
                .iter_mut()
                .find(|g| g[0].sql == w.sql && same_kinds(&g[0].args, &w.args))
            {
                Some(g) => g.push(w),
                None => groups.push(vec![w]),
            }
        }
        for group in groups {
            self.send_group(group).await;
        }
    }

    async fn send_group(&self, mut group: Vec<Waiting>) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(super::changes::tables_named(&group[0].sql));
        if group.len() == 1 {
            let Some(w) = group.pop() else { return };
            let rows = self.session.fetch_rows(w.name, w.sql, w.args, true).await;
            if let Ok(rows) = &rows {
                self.rows.fetch_add(rows.len(), Ordering::Relaxed);
            }
            let _ = w.reply.send(rows);
            return;
        }
        let name = group[0].name;
        let count = group.len();
        let (sql, args, prepared) = match self.backend() {
            Backend::Postgres => {
                let values: Vec<serde_json::Value> = group
                    .iter_mut()
                    .map(|w| serde_json::Value::Array(w.args.iter().map(pg_json).collect()))
                    .collect();
                let text = postgres_text(&group[0].sql, &group[0].args);
                let values = serde_json::Value::Array(values).to_string();
                (text, vec![Arg::Text(values)], true)
            }
            Backend::Sqlite => {
                let mut args = Vec::new();
                let members: Vec<String> = group
                    .iter_mut()
                    .enumerate()
                    .map(|(i, w)| {
                        let text = renumber(&w.sql, args.len());
                        args.append(&mut w.args);
                        format!("select *, {} from ({text})", i + 1)
                    })
                    .collect();
                (sqlite_union(&members), args, false)
            }
        };
        let result = self.session.fetch_rows(name, sql, args, prepared).await;
        match result {
            Ok(rows) => {
                self.rows.fetch_add(rows.len(), Ordering::Relaxed);
                let mut split: Vec<Vec<RawRow>> = (0..count).map(|_| Vec::new()).collect();
                for row in rows {
                    let tag = row.tag().unwrap_or(0);
                    if let Some(part) = usize::try_from(tag - 1).ok().and_then(|i| split.get_mut(i))
                    {
                        part.push(row);
                    }
                }
                for (w, rows) in group.into_iter().zip(split) {
                    let _ = w.reply.send(Ok(rows));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err.detail(), statement = name, subscribers = count, "a shared statement failed");
                for w in group {
                    let _ = w.reply.send(Err(copy(&err)));
                }
            }
        }
    }
}

/// The error of a statement shared by several executions, for each of them (the cause is
/// logged once, where it happened).
fn copy(err: &AppError) -> AppError {
    match err {
        AppError::BadInput(m) => AppError::BadInput(m.clone()),
        AppError::LimitExceeded(m) => AppError::LimitExceeded(m.clone()),
        AppError::Unavailable(_) | AppError::Busy(_) => AppError::Busy(err.message()),
        _ => AppError::internal(err.message()),
    }
}

impl Shared for Multiplexer {
    fn db(&self) -> &Db {
        self.session.db()
    }

    fn fetch(
        &self,
        name: &'static str,
        sql: String,
        args: Vec<Arg>,
    ) -> futures_util::future::BoxFuture<'_, AppResult<Vec<RawRow>>> {
        Box::pin(async move {
            let (reply, rows) = oneshot::channel();
            self.lock().push(Waiting {
                name,
                sql,
                args,
                reply,
            });
            rows.await
                .map_err(|_| AppError::internal("the refresh ended before its statements ran"))?
        })
    }
}

/// One execution of [`Multiplexer::run_all`].
struct Slot<F: Future> {
    future: Pin<Box<F>>,
    woken: Arc<Flag>,
    out: Option<F::Output>,
}

/// Set when an execution is woken (it can go on), waking the driving task too.
struct Flag {
    set: AtomicBool,
    parent: Arc<Mutex<Option<Waker>>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.set.store(true, Ordering::Release);
        if let Some(w) = &*self.parent.lock().unwrap_or_else(|e| e.into_inner()) {
            w.wake_by_ref();
        }
    }
}

/// Whether two statements bind the same kinds of values.
fn same_kinds(a: &[Arg], b: &[Arg]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| std::mem::discriminant(x) == std::mem::discriminant(y))
}

/// A value as the JSON the combined PostgreSQL statement reads it from.
fn pg_json(arg: &Arg) -> serde_json::Value {
    use serde_json::Value;
    match arg {
        Arg::I64(v) => Value::from(*v),
        Arg::OptI64(v) => v.map(Value::from).unwrap_or(Value::Null),
        Arg::Text(v) | Arg::Secret(v) => Value::from(v.as_str()),
        Arg::OptText(v) => v.as_deref().map(Value::from).unwrap_or(Value::Null),
        Arg::Bool(v) => Value::from(*v),
        // Microseconds, as the driver binds a timestamp.
        Arg::Ts(v) => Value::from(v.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        Arg::Ids(v) => Value::from(v.clone()),
        Arg::Texts(v) => Value::from(v.clone()),
    }
}

/// The SQL expression reading parameter `k` (0-based) of kind `arg` from a subscriber's
/// values `m.v`, with the type the driver binds it as.
fn pg_param(arg: &Arg, k: usize) -> String {
    match arg {
        Arg::I64(_) | Arg::OptI64(_) => format!("((eagerql_m.v->>{k})::int8)"),
        Arg::Text(_) | Arg::OptText(_) | Arg::Secret(_) => format!("((eagerql_m.v->>{k})::text)"),
        Arg::Bool(_) => format!("((eagerql_m.v->>{k})::bool)"),
        Arg::Ts(_) => format!("((eagerql_m.v->>{k})::timestamptz)"),
        Arg::Ids(_) => {
            format!("(array(select x::int8 from jsonb_array_elements_text(eagerql_m.v->{k}) x))")
        }
        Arg::Texts(_) => {
            format!("(array(select x from jsonb_array_elements_text(eagerql_m.v->{k}) x))")
        }
    }
}

/// The PostgreSQL statement running `sql` once per subscriber (see the module
/// documentation); `args`: one subscriber's values, for their kinds.
fn postgres_text(sql: &str, args: &[Arg]) -> String {
    let inner = replace_params(sql, |n| match n.checked_sub(1).and_then(|k| args.get(k)) {
        Some(arg) => pg_param(arg, n - 1),
        None => format!("${n}"),
    });
    format!(
        "select eagerql_q.*, eagerql_m.i from jsonb_array_elements($1::jsonb) with ordinality \
         as eagerql_m(v, i) cross join lateral ({inner}) as eagerql_q"
    )
}

/// SQLite's compound selects take at most 500 terms: members are gathered by
/// [`SQLITE_TERMS`] in subqueries, themselves joined by `union all`.
fn sqlite_union(members: &[String]) -> String {
    if members.len() <= SQLITE_TERMS {
        return members.join(" union all ");
    }
    members
        .chunks(SQLITE_TERMS)
        .map(|c| format!("select * from ({})", c.join(" union all ")))
        .collect::<Vec<_>>()
        .join(" union all ")
}

/// Terms of one SQLite compound select (its limit is 500).
const SQLITE_TERMS: usize = 250;

/// `sql` with every parameter `$n` numbered `$n + by`.
fn renumber(sql: &str, by: usize) -> String {
    replace_params(sql, |n| format!("${}", n + by))
}

/// `sql` with every parameter `$n` (outside quotes) replaced by `with(n)`.
fn replace_params(sql: &str, with: impl Fn(usize) -> String) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut quote: Option<char> = None;
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' => {
                let mut n = String::new();
                while let Some((_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_digit()) {
                    n.push(*d);
                    chars.next();
                }
                match n.parse::<usize>() {
                    Ok(n) => out.push_str(&with(n)),
                    Err(_) => {
                        out.push('$');
                        out.push_str(&n);
                    }
                }
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tables_a_statement_reads_are_the_words_it_names() {
        let sql = "select t0.user_id from order_products l join orders t0 on t0.id = l.order_id";
        let found: Vec<_> = super::super::changes::tables_named(sql).collect();
        assert_eq!(found, ["orders", "order_products"]);
    }

    #[test]
    fn parameters_are_replaced_outside_quotes_only() {
        let sql = r#"select t0.name collate "C" from t where a = $1 and b = '$2' and c = any($12)"#;
        assert_eq!(
            renumber(sql, 10),
            r#"select t0.name collate "C" from t where a = $11 and b = '$2' and c = any($22)"#
        );
    }

    #[test]
    fn a_postgres_statement_reads_each_subscribers_values_with_their_types() {
        let text = postgres_text(
            "select t0.id from orders t0 where t0.id = $1 and t0.user_id = any($2)",
            &[Arg::I64(1), Arg::Ids(vec![2])],
        );
        assert_eq!(
            text,
            "select eagerql_q.*, eagerql_m.i from jsonb_array_elements($1::jsonb) with \
             ordinality as eagerql_m(v, i) cross join lateral (select t0.id from orders t0 \
             where t0.id = ((eagerql_m.v->>0)::int8) and t0.user_id = any((array(select \
             x::int8 from jsonb_array_elements_text(eagerql_m.v->1) x)))) as eagerql_q"
        );
    }
}
