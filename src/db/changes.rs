//! The change feed: every committed write to the model's tables, as sets of changed rows by
//! table, coalesced over a short window, for whatever must follow the data (live queries).
//!
//! Where changes come from:
//! - PostgreSQL: statement-level triggers (migration `0009_change_notifications`) announce
//!   every committed write on the channel [`CHANNEL`], whoever made it (this instance,
//!   another one, or plain SQL from outside); one dedicated connection per instance listens.
//!   LISTEN needs a session of its own: behind a transaction-mode pooler it takes a direct
//!   URL (`EAGERQL_LISTEN_URL`). When that connection is lost, it is opened again and an
//!   [`ChangeSet::everything`] set is sent: what happened meanwhile is not known.
//! - SQLite: the server's own writes, seen by SQLite's update hook on every connection of the
//!   pool and sent when their transaction commits (a rolled-back write is never sent); the
//!   link table `order_products` (WITHOUT ROWID, unseen by the hook) is told by the orders
//!   written in the same transaction, the only way its rows are written.
//!
//! Raw changes go through a bounded queue to one task that gathers them for the window and
//! broadcasts one [`ChangeSet`]; a full queue or a lagging receiver is told "everything".

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

/// The PostgreSQL notification channel the triggers send on.
pub const CHANNEL: &str = "eagerql_changes";

/// The tables whose writes are announced.
pub const TABLES: [&str; 6] = [
    "users",
    "orders",
    "order_items",
    "products",
    "order_products",
    "order_events",
];

/// Raw changes waiting for the coalescing task, at most.
const QUEUE: usize = 4096;

/// Which rows of a table changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rows {
    /// Any row may have changed (a bulk write).
    All,
    /// These rows (their `id`; `order_id` for `order_products`).
    Ids(BTreeSet<i64>),
}

/// The changes of one window.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeSet {
    /// Anything may have changed (changes were lost: a reconnection, an overflow).
    pub everything: bool,
    /// The changed rows, by table.
    pub tables: BTreeMap<&'static str, Rows>,
    /// Its number: sets are numbered from 1 in the order they are handed on.
    pub seq: u64,
    /// When its first change arrived (what a delivery's delay is measured from).
    pub since: Option<std::time::Instant>,
}

impl ChangeSet {
    /// Whether rows of `table` may have changed.
    pub fn touches(&self, table: &str) -> bool {
        self.everything || self.tables.contains_key(table)
    }

    fn add(&mut self, raw: Raw) {
        match raw {
            Raw::Everything => self.everything = true,
            Raw::Table(t) => {
                self.tables.insert(t, Rows::All);
            }
            Raw::Rows(t, ids) => match self.tables.entry(t).or_insert(Rows::Ids(BTreeSet::new())) {
                Rows::All => {}
                Rows::Ids(set) => set.extend(ids),
            },
        }
    }
}

/// What an answer read: for each table, the rows it depends on (by id, when only those rows
/// can change it), or every row (a list, a batch of children, an aggregate, a filter: a new or
/// changed row anywhere may enter it).
///
/// Kept by every live subscriber between refreshes, so kept small: a short list of tables,
/// each with every row or a sorted list of ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    tables: Vec<(&'static str, Read)>,
}

/// The rows of one table an answer read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Read {
    All,
    /// Sorted, without repeats.
    Ids(Vec<i64>),
}

impl Reads {
    /// Adds rows of `table`.
    pub fn add(&mut self, table: &'static str, rows: Rows) {
        let at = match self.tables.iter().position(|(t, _)| *t == table) {
            Some(at) => at,
            None => {
                self.tables.push((table, Read::Ids(Vec::new())));
                self.tables.len() - 1
            }
        };
        match (&mut self.tables[at].1, rows) {
            (Read::All, _) => {}
            (mine @ Read::Ids(_), Rows::All) => *mine = Read::All,
            (Read::Ids(mine), Rows::Ids(ids)) => {
                mine.extend(ids);
                mine.sort_unstable();
                mine.dedup();
            }
        }
    }

    /// Adds what a statement reads: every table of [`TABLES`] its text names, all rows, but
    /// of the table `key.0` only the rows `key.1` (none: rows another statement of the same
    /// answer read already, and depends on).
    pub fn add_statement(&mut self, sql: &str, key: Option<(&'static str, Option<i64>)>) {
        for table in tables_named(sql) {
            let rows = match key {
                Some((t, id)) if t == table => Rows::Ids(id.into_iter().collect()),
                _ => Rows::All,
            };
            self.add(table, rows);
        }
    }

    /// The same, holding no spare capacity (what a subscriber keeps).
    pub fn compact(mut self) -> Self {
        for (_, read) in &mut self.tables {
            if let Read::Ids(ids) = read {
                ids.shrink_to_fit();
            }
        }
        self.tables.shrink_to_fit();
        self
    }

    /// Whether `set` may change an answer that read these rows.
    pub fn may_change(&self, set: &ChangeSet) -> bool {
        set.everything
            || self
                .tables
                .iter()
                .any(|(t, mine)| match (set.tables.get(t), mine) {
                    (None, _) => false,
                    (Some(_), Read::All) | (Some(Rows::All), _) => true,
                    (Some(Rows::Ids(ids)), Read::Ids(mine)) => mine.iter().any(|i| ids.contains(i)),
                })
    }
}

/// The tables of [`TABLES`] that `sql` names (as whole words).
pub fn tables_named(sql: &str) -> impl Iterator<Item = &'static str> + '_ {
    TABLES.into_iter().filter(move |t| {
        sql.match_indices(t).any(|(at, _)| {
            let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
            !word(sql[..at].chars().next_back()) && !word(sql[at + t.len()..].chars().next())
        })
    })
}

/// One change as it arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Raw {
    /// Rows of a table.
    Rows(&'static str, Vec<i64>),
    /// Any row of a table.
    Table(&'static str),
    /// Anything.
    Everything,
}

/// The table of [`TABLES`] named `name`.
pub(crate) fn table(name: &str) -> Option<&'static str> {
    TABLES.into_iter().find(|t| *t == name)
}

/// A trigger's notification payload (`{"t":"orders","ids":[1,2]}` or `{"t":"orders"}`); `None`
/// for anything else.
pub(crate) fn parse(payload: &str) -> Option<Raw> {
    #[derive(serde::Deserialize)]
    struct Payload<'a> {
        t: &'a str,
        ids: Option<Vec<i64>>,
    }
    let p: Payload<'_> = serde_json::from_str(payload).ok()?;
    let t = table(p.t)?;
    Some(match p.ids {
        Some(ids) => Raw::Rows(t, ids),
        None => Raw::Table(t),
    })
}

/// The feed: a handle to send raw changes into, and to subscribe to the coalesced sets.
/// Cloned with every session: one reference count, not one per part.
#[derive(Clone, Debug)]
pub struct Changes(Arc<Feed>);

impl std::ops::Deref for Changes {
    type Target = Feed;

    fn deref(&self) -> &Feed {
        &self.0
    }
}

/// The parts of [`Changes`].
#[derive(Debug)]
pub struct Feed {
    raw: mpsc::Sender<Raw>,
    overflow: Arc<AtomicBool>,
    out: broadcast::Sender<Arc<ChangeSet>>,
    counts: Arc<Counts>,
    /// The tables this instance follows (PostgreSQL sends nothing for the others).
    followed: Arc<std::sync::Mutex<BTreeSet<&'static str>>>,
    /// This instance, in `change_followers`.
    instance: Arc<str>,
}

/// What the feed has seen, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counts {
    /// Raw changes received.
    pub received: AtomicU64,
    /// Sets broadcast.
    pub sets: AtomicU64,
    /// Times the listening connection was (re)opened.
    pub connects: AtomicU64,
}

impl Changes {
    /// A feed gathering changes for `window` before each set; its task runs on the current
    /// Tokio runtime (without one, as for a planning-only pool, nothing is ever sent).
    pub fn new(window: Duration) -> Changes {
        let (raw, rx) = mpsc::channel(QUEUE);
        let (out, _) = broadcast::channel(256);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let changes = Changes(Arc::new(Feed {
            raw,
            overflow: Arc::new(AtomicBool::new(false)),
            out,
            counts: Arc::new(Counts::default()),
            followed: Arc::default(),
            instance: format!("{}-{nanos:x}", std::process::id()).into(),
        }));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(coalesce(rx, window, changes.weak()));
        }
        changes
    }

    /// The coalesced sets from now on. A receiver that falls behind gets
    /// `RecvError::Lagged`: it must treat that as "everything changed".
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeSet>> {
        self.out.subscribe()
    }

    /// The feed's counters.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Adds `tables` to those this instance follows.
    pub(crate) fn add_followed(&self, tables: &[&'static str]) {
        let mut followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        followed.extend(tables);
    }

    fn followed(&self) -> Vec<String> {
        let followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        followed.iter().map(|t| (*t).to_owned()).collect()
    }

    /// Queues a raw change; when the queue is full the next set says "everything".
    pub(crate) fn send(&self, raw: Raw) {
        self.counts.received.fetch_add(1, Ordering::Relaxed);
        if self.raw.try_send(raw).is_err() {
            self.overflow.store(true, Ordering::Relaxed);
            // Wake the task with something it can merge, if there is room by now.
            let _ = self.raw.try_send(Raw::Everything);
        }
    }

    fn weak(&self) -> Outlet {
        Outlet {
            overflow: self.overflow.clone(),
            out: self.out.clone(),
            counts: self.counts.clone(),
        }
    }
}

/// What the coalescing task sends through (it holds no sender of raw changes, so it ends
/// when every [`Changes`] is dropped).
struct Outlet {
    overflow: Arc<AtomicBool>,
    out: broadcast::Sender<Arc<ChangeSet>>,
    counts: Arc<Counts>,
}

async fn coalesce(mut rx: mpsc::Receiver<Raw>, window: Duration, outlet: Outlet) {
    while let Some(first) = rx.recv().await {
        let mut set = ChangeSet {
            since: Some(std::time::Instant::now()),
            ..ChangeSet::default()
        };
        set.add(first);
        let deadline = tokio::time::Instant::now() + window;
        loop {
            tokio::select! {
                raw = rx.recv() => match raw {
                    Some(raw) => set.add(raw),
                    None => break,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if outlet.overflow.swap(false, Ordering::Relaxed) {
            set.everything = true;
        }
        set.seq = outlet.counts.sets.fetch_add(1, Ordering::Relaxed) + 1;
        // No receiver: nobody follows the data now.
        let _ = outlet.out.send(Arc::new(set));
    }
}

/// Listens on [`CHANNEL`] through `pool` (one connection of its own) for as long as the feed
/// lives, opening the connection again after it is lost (backing off up to 30 s) and sending
/// "everything" each time it is (re)opened.
pub(crate) async fn listen(
    pool: sqlx::PgPool,
    changes: Changes,
    replicas: Arc<super::replicas::Replicas>,
) {
    let mut backoff = Duration::from_millis(100);
    while !pool.is_closed() {
        let mut listener = match open(&pool, &changes, replicas.follows_writes()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "change feed: cannot listen; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        changes.counts.connects.fetch_add(1, Ordering::Relaxed);
        // Viewers' writes announced while the connection was lost are unknown (those before
        // the first connection are covered at start, see `Replicas::start`).
        if changes.counts.connects.load(Ordering::Relaxed) > 1 {
            replicas.listening().await;
        }
        // Listening, and registered as a follower: from here on nothing committed is missed,
        // and what happened before is unknown.
        changes.send(Raw::Everything);
        replicas.set_hearing(replicas.follows_writes());
        let since = std::time::Instant::now();
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) if n.channel() == super::replicas::WRITES_CHANNEL => {
                    replicas.heard_write(n.payload());
                }
                Ok(Some(n)) => match parse(n.payload()) {
                    Some(raw) => changes.send(raw),
                    None => tracing::warn!(payload = n.payload(), "change feed: unknown payload"),
                },
                Ok(None) => {
                    tracing::warn!("change feed: the listening connection was lost; reopening");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change feed: listening failed; reopening");
                    break;
                }
            }
        }
        replicas.set_hearing(false);
        // A connection that stayed up starts the backoff afresh; one dropped at once (a
        // proxy, a loop of terminations) keeps backing off.
        if since.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

/// A listening connection: LISTEN, then this instance's followed tables registered again (they
/// may have lapsed while the database was away).
async fn open(
    pool: &sqlx::PgPool,
    changes: &Changes,
    writes: bool,
) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    // Other instances' viewers' writes, for read-your-writes on the replicas.
    if writes {
        listener.listen(super::replicas::WRITES_CHANNEL).await?;
    }
    register(&mut listener, changes).await?;
    Ok(listener)
}

/// How often an instance renews the tables it follows; each renewal holds for [`FOLLOW_FOR`].
const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How long a renewal of a followed table holds (an instance that stops is forgotten then).
pub(crate) const FOLLOW_FOR: &str = "60 seconds";

/// Writes that this instance follows its tables for [`FOLLOW_FOR`] more.
pub(crate) async fn register<'e, E>(db: E, changes: &Changes) -> Result<(), sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let tables = changes.followed();
    if tables.is_empty() {
        return Ok(());
    }
    // Rows of instances gone for a while are removed on the way.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "with gone as (delete from change_followers where until < now() - interval '1 hour') \
         insert into change_followers (table_name, instance, until) \
         select t, $1, now() + interval '{FOLLOW_FOR}' from unnest($2::text[]) t \
         on conflict (table_name, instance) do update set until = excluded.until"
    )))
    .bind(&*changes.instance)
    .bind(tables)
    .execute(db)
    .await
    .map(|_| ())
}

/// Renews the tables this instance follows every [`RENEW_EVERY`] through `pool` (not the
/// listening connection, whose reads are never interrupted), until the pool is closed.
pub(crate) async fn renew(pool: sqlx::PgPool, changes: Changes) {
    let mut tick = tokio::time::interval(RENEW_EVERY);
    let mut renewed = std::time::Instant::now();
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        match tokio::time::timeout(RENEW_EVERY / 2, register(&pool, &changes)).await {
            Ok(Ok(())) => {
                // Past FOLLOW_FOR without a renewal, writes may have gone unannounced.
                if renewed.elapsed() > FOLLOW_LAPSES_AFTER {
                    changes.send(Raw::Everything);
                }
                renewed = std::time::Instant::now();
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "change feed: cannot renew the followed tables")
            }
            Err(_) => tracing::warn!("change feed: renewing the followed tables timed out"),
        }
    }
}

/// Waits (up to 10 s) until the writing transactions of this database that began before now
/// have ended: they checked `change_followers` before this instance's rows were there, so
/// their writes are not announced, and a read made after this returns sees them.
pub(crate) async fn settle(pool: &sqlx::PgPool) -> Result<(), sqlx::Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let before: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select clock_timestamp()")
        .fetch_one(pool)
        .await?;
    loop {
        let running: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() \
             and pid <> pg_backend_pid() and backend_xid is not null and xact_start < $1",
        )
        .bind(before)
        .fetch_one(pool)
        .await?;
        if running == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                running,
                "change feed: writes begun before following a table are still running"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`FOLLOW_FOR`], less a margin.
const FOLLOW_LAPSES_AFTER: Duration = Duration::from_secs(50);

/// The hooks of one SQLite connection: rows written by its open transaction, sent when it
/// commits and forgotten when it rolls back.
pub(crate) async fn hook_sqlite(
    conn: &mut sqlx::SqliteConnection,
    changes: &Changes,
) -> Result<(), sqlx::Error> {
    use std::sync::Mutex;
    let pending: Arc<Mutex<Vec<(&'static str, i64)>>> = Arc::default();
    let mut handle = conn.lock_handle().await?;
    let written = pending.clone();
    handle.set_update_hook(move |u| {
        if let Some(t) = table(u.table)
            && let Ok(mut w) = written.lock()
        {
            w.push((t, u.rowid));
        }
    });
    let committed = pending.clone();
    let feed = changes.clone();
    handle.set_commit_hook(move || {
        if let Ok(mut w) = committed.lock() {
            let mut by_table: BTreeMap<&'static str, Vec<i64>> = BTreeMap::new();
            for (t, id) in w.drain(..) {
                by_table.entry(t).or_default().push(id);
            }
            // `order_products` is a WITHOUT ROWID table, which the hook does not see; its rows
            // are only written with their order, so an order written tells its links too.
            if let Some(orders) = by_table.get("orders") {
                let orders = orders.clone();
                by_table.insert("order_products", orders);
            }
            for (t, ids) in by_table {
                feed.send(Raw::Rows(t, ids));
            }
        }
        true
    });
    handle.set_rollback_hook(move || {
        if let Ok(mut w) = pending.lock() {
            w.clear();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_read_and_unknown_ones_ignored() {
        assert_eq!(
            parse(r#"{"t" : "orders", "ids" : [3,1]}"#),
            Some(Raw::Rows("orders", vec![3, 1]))
        );
        assert_eq!(parse(r#"{"t":"products"}"#), Some(Raw::Table("products")));
        assert_eq!(parse(r#"{"t":"refresh_tokens","ids":[1]}"#), None);
        assert_eq!(parse("not json"), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_set_and_a_table_wide_change_absorbs_rows() {
        let changes = Changes::new(Duration::from_millis(20));
        let mut rx = changes.subscribe();
        changes.send(Raw::Rows("orders", vec![1, 2]));
        changes.send(Raw::Rows("orders", vec![2, 3]));
        changes.send(Raw::Rows("products", vec![9]));
        changes.send(Raw::Table("products"));
        changes.send(Raw::Rows("products", vec![10]));
        let set = rx.recv().await.expect("a set");
        assert!(!set.everything);
        assert_eq!(set.tables["orders"], Rows::Ids(BTreeSet::from([1, 2, 3])));
        assert_eq!(set.tables["products"], Rows::All);
        assert!(set.touches("orders") && !set.touches("users"));
        // After the window, the next change is a set of its own.
        tokio::time::sleep(Duration::from_millis(50)).await;
        changes.send(Raw::Rows("users", vec![4]));
        let next = rx.recv().await.expect("a set");
        assert_eq!(next.tables.keys().copied().collect::<Vec<_>>(), ["users"]);
        assert_eq!(changes.counts().sets.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_is_told_as_everything() {
        let changes = Changes::new(Duration::from_millis(20));
        let mut rx = changes.subscribe();
        for i in 0..(QUEUE as i64 + 10) {
            changes.send(Raw::Rows("orders", vec![i]));
        }
        let set = rx.recv().await.expect("a set");
        assert!(set.everything || set.touches("orders"));
        let mut saw_everything = set.everything;
        while let Ok(Ok(set)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            saw_everything |= set.everything;
        }
        assert!(saw_everything, "an overflow is reported");
    }
}
