//! PostgreSQL read replicas (`EAGERQL_REPLICA_URLS`): query operations read their snapshot
//! from one of them, round-robin over the healthy ones; mutations, and the reads that return
//! their results, use the primary. A replica that fails a request's `BEGIN` is skipped at
//! once (that request begins on the next one, or on the primary) until a health check,
//! every [`CHECK_EVERY`], finds it answering again. With every replica down, reads use the
//! primary and `/readyz` says "degraded".
//!
//! **Lag.** The same check samples the primary's WAL position (`pg_current_wal_lsn()`) and
//! each replica's replayed position (`pg_last_wal_replay_lsn()`). A replica's lag is how long
//! ago the primary was first seen past what the replica has replayed (zero when it has
//! replayed every sample): measured from the WAL, so an idle primary never makes a replica
//! look behind, and a replica whose replay is paused or whose stream is cut does. A replica
//! further behind than `EAGERQL_REPLICA_MAX_LAG` is not used for reads until it catches up.
//!
//! **Read-your-writes.** After a viewer's write commits, its position on the primary is
//! noted for that viewer (and sent to the other instances on the channel [`WRITES_CHANNEL`]):
//! for `EAGERQL_READ_YOUR_WRITES` that viewer's reads use only replicas known to have
//! replayed it, else the primary. So a client never reads its own write as missing, on any
//! instance, while everyone else keeps reading from the replicas.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use foldhash::HashMap;

use sqlx::postgres::PgPool;

/// How long a request waits for a busy replica's connection before it reads from the next
/// one (or the primary); the busy replica stays in rotation.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often each replica is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest a health check waits for its answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The channel an instance announces its viewers' writes on (`<user id> <LSN> <echo>`; the
/// echo, which other instances ignore, tells the announcing one it was heard).
pub const WRITES_CHANNEL: &str = "eagerql_writes";

/// How long a write's announcement waits to be heard back by its own instance's listener.
/// PostgreSQL signals every listener of the channel at the same commit, so once the
/// announcing instance hears it, the others have been handed it too: the writer's answer
/// then goes out, and its next read, on whichever instance, finds the write noted (on an
/// instance whose listener is slower still by more than a client's round trip, the read can
/// still miss it on a replica; a lost listener makes every read there require the primary's
/// position, see [`Replicas::listening`]).
const ECHO_WAIT: Duration = Duration::from_millis(100);

/// This process's mark on its announcements' echoes (random, so two instances never share
/// one).
static ECHO_TAG: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
});

/// Samples of the primary's WAL position kept (one per check): lag is measured up to this
/// many checks back, and "at least that" beyond.
const SAMPLES: usize = 600;

/// Viewers with a recent write remembered, at most; past it every read uses the primary
/// for the read-your-writes period.
const MAX_WRITERS: usize = 100_000;

/// How replicas are kept consistent enough for reads.
#[derive(Clone, Copy, Debug)]
pub struct Consistency {
    /// A replica further behind than this is not read from (`None`: no limit).
    pub max_lag: Option<Duration>,
    /// How long after a write its viewer reads only what has replayed it (zero: off).
    pub read_your_writes: Duration,
}

impl Default for Consistency {
    fn default() -> Self {
        Consistency {
            max_lag: Some(Duration::from_secs(10)),
            read_your_writes: Duration::from_secs(30),
        }
    }
}

/// A WAL position (`16/B374D848`) as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// One read replica.
#[derive(Debug)]
pub struct Replica {
    /// `replica-N`, N counting from 1 in `EAGERQL_REPLICA_URLS` order: what metrics and
    /// `extensions.sql.server` call it.
    pub label: Arc<str>,
    /// Host and port, for logs (never the password).
    pub host: String,
    pub(crate) pool: PgPool,
    healthy: AtomicBool,
    /// Read snapshots begun on it.
    reads: AtomicU64,
    /// The WAL position it had replayed at its last check (0: unknown; `u64::MAX`: it is
    /// not replaying, e.g. a primary).
    replayed: AtomicU64,
    /// Its lag at the last check, in milliseconds.
    lag_ms: AtomicU64,
    /// Further behind than the maximum lag (out of rotation until it catches up).
    lagging: AtomicBool,
}

impl Replica {
    /// The `n`-th replica, at `url`, with its (lazily connecting) pool.
    pub fn new(n: usize, url: &str, pool: PgPool) -> Replica {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        let host = authority
            .rsplit_once('@')
            .map_or(authority, |(_, h)| h)
            .to_owned();
        Replica {
            label: Arc::from(format!("replica-{n}")),
            host,
            pool,
            healthy: AtomicBool::new(false),
            reads: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            lag_ms: AtomicU64::new(0),
            lagging: AtomicBool::new(false),
        }
    }

    /// Whether reads may use it: it answers and is not too far behind.
    pub fn in_rotation(&self) -> bool {
        self.is_healthy() && !self.is_lagging()
    }

    /// Whether it is further behind than the maximum lag.
    pub fn is_lagging(&self) -> bool {
        self.lagging.load(Ordering::Relaxed)
    }

    /// Its lag at the last check.
    pub fn lag(&self) -> Duration {
        Duration::from_millis(self.lag_ms.load(Ordering::Relaxed))
    }

    /// The WAL position it had replayed at its last check.
    fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    /// Whether reads may use it now.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Read snapshots begun on it so far.
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Counts a read snapshot begun on it.
    pub(crate) fn count_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    fn set_healthy(&self, healthy: bool, why: Option<&dyn std::fmt::Display>) {
        let was = self.healthy.swap(healthy, Ordering::Relaxed);
        match (was, healthy) {
            (false, true) => tracing::info!(replica = %self.label, host = %self.host,
                "read replica is answering: reads use it"),
            (true, false) => tracing::warn!(replica = %self.label, host = %self.host,
                error = %why.map(|e| e.to_string()).unwrap_or_default(),
                "read replica is unreachable: reads skip it until it answers again"),
            _ => {}
        }
    }

    fn set_lag(&self, lag: Duration, max: Option<Duration>) {
        self.lag_ms.store(
            u64::try_from(lag.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let lagging = max.is_some_and(|max| lag > max);
        match (self.lagging.swap(lagging, Ordering::Relaxed), lagging) {
            (false, true) => tracing::warn!(replica = %self.label, host = %self.host,
                lag_ms = lag.as_millis(), "read replica is behind: reads skip it until it catches up"),
            (true, false) => tracing::info!(replica = %self.label, host = %self.host,
                "read replica caught up: reads use it"),
            _ => {}
        }
    }

    /// One health check: a simple-protocol `select` of its replayed WAL position (it passes
    /// any pooler) within [`CHECK_TIMEOUT`]. `Some(replayed)` when it answers (the caller
    /// sets its lag, then puts it back in rotation); `None` when it is out.
    async fn check(&self) -> Option<u64> {
        let ping = sqlx::raw_sql("select pg_last_wal_replay_lsn()::text").fetch_one(&self.pool);
        match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
            Ok(Ok(row)) => {
                use sqlx::Row as _;
                let replayed = match row.try_get::<Option<String>, _>(0) {
                    Ok(Some(lsn)) => parse_lsn(&lsn).unwrap_or(0),
                    // Not in recovery: it is a primary, with everything.
                    Ok(None) => u64::MAX,
                    Err(_) => 0,
                };
                return Some(replayed);
            }
            // Every connection of its pool is serving reads (busy, not down), or none can be
            // opened (down: the pool retries a refused connection until its acquire timeout,
            // so a stopped replica looks busy): a connection of the check's own tells which.
            Ok(Err(sqlx::Error::PoolTimedOut)) => {
                let opts = self.pool.connect_options();
                let own = sqlx::ConnectOptions::connect(&*opts);
                match tokio::time::timeout(CHECK_TIMEOUT, own).await {
                    Ok(Ok(conn)) => drop(sqlx::Connection::close(conn).await),
                    Ok(Err(e)) => self.set_healthy(false, Some(&e)),
                    Err(_) => self.set_healthy(false, Some(&"no connection in time")),
                }
            }
            Ok(Err(e)) => self.set_healthy(false, Some(&e)),
            Err(_) => self.set_healthy(false, Some(&"no answer to the health check in time")),
        }
        None
    }
}

/// The read replicas of a primary, and the task that checks them.
#[derive(Debug, Default)]
pub struct Replicas {
    list: Vec<Replica>,
    next: AtomicUsize,
    /// Read snapshots begun on the primary.
    primary_reads: AtomicU64,
    primary_label: Option<Arc<str>>,
    /// The primary, whose WAL position is sampled with each check.
    primary: Option<PgPool>,
    consistency: Consistency,
    /// The primary's WAL position at each check, oldest first.
    samples: Mutex<VecDeque<(Instant, u64)>>,
    /// Viewers' recent writes: user id -> (WAL position, until when it binds).
    writes: Mutex<HashMap<i64, (u64, Instant)>>,
    /// A position every read must see, until when: what may have been written unheard (the
    /// listener was away), or everything (too many writers to remember).
    floor: Mutex<Option<(u64, Instant)>>,
    /// This instance's announcements not heard back yet, by echo number.
    echoes: Mutex<HashMap<u64, tokio::sync::oneshot::Sender<()>>>,
    /// The next echo number.
    next_echo: AtomicU64,
    /// Whether this instance's listener is hearing the channel now (only then is an echo
    /// waited for).
    hearing: AtomicBool,
}

impl Replicas {
    /// Checks each replica once, then every [`CHECK_EVERY`] for as long as the pool lives.
    pub async fn start(
        list: Vec<Replica>,
        primary: PgPool,
        consistency: Consistency,
    ) -> Arc<Replicas> {
        let replicas = Arc::new(Replicas {
            list,
            primary_label: Some(Arc::from("primary")),
            primary: Some(primary),
            consistency,
            ..Default::default()
        });
        if replicas.list.is_empty() {
            return replicas;
        }
        replicas.check_all().await;
        // A new instance (a restart, one more behind the balancer) has heard of no write
        // other instances announced: every read needs what the primary had now, which the
        // replicas just checked have mostly replayed already.
        if replicas.follows_writes() {
            let now = replicas
                .samples
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .back()
                .map(|(_, lsn)| *lsn);
            replicas.require_everywhere(now.unwrap_or(u64::MAX));
            // A replica a moment behind that position would send every read to the primary
            // until the next check: check again, briefly, until they have it.
            if let Some(now) = now {
                replicas.until_replayed(now).await;
            }
        }
        for r in replicas.list.iter().filter(|r| !r.is_healthy()) {
            tracing::warn!(replica = %r.label, host = %r.host,
                "read replica is not answering at start: reads use the others or the primary");
        }
        let weak: Weak<Replicas> = Arc::downgrade(&replicas);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(replicas) = weak.upgrade() else {
                    break;
                };
                if replicas.list.iter().all(|r| r.pool.is_closed()) {
                    break;
                }
                replicas.check_all().await;
            }
        });
        replicas
    }

    async fn check_all(&self) {
        // The primary's position first: what a replica has replayed is compared with
        // positions the primary had before the replica was asked.
        if let Some(primary) = &self.primary {
            let sample = sqlx::raw_sql("select pg_current_wal_lsn()::text").fetch_one(primary);
            if let Ok(Ok(row)) = tokio::time::timeout(CHECK_TIMEOUT, sample).await {
                use sqlx::Row as _;
                if let Some(lsn) = row.try_get::<String, _>(0).ok().and_then(|t| parse_lsn(&t)) {
                    self.sample(Instant::now(), lsn);
                }
            }
        }
        let checked = futures_util::future::join_all(self.list.iter().map(Replica::check)).await;
        for (r, checked) in self.list.iter().zip(checked) {
            // Its lag first: a replica that answers again is not in rotation while behind.
            if let Some(replayed) = checked {
                r.replayed.store(replayed, Ordering::Relaxed);
                r.set_lag(self.lag_of(replayed), self.consistency.max_lag);
                r.set_healthy(true, None);
            }
        }
    }

    /// Checks the replicas again, every 50 ms for at most a second, until each one in
    /// rotation has replayed `lsn`.
    async fn until_replayed(&self, lsn: u64) {
        for _ in 0..20 {
            let behind = self
                .list
                .iter()
                .any(|r| r.in_rotation() && r.replayed() < lsn);
            if !behind {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            futures_util::future::join_all(self.list.iter().map(|r| async move {
                if let Some(replayed) = r.check().await {
                    r.replayed.fetch_max(replayed, Ordering::Relaxed);
                }
            }))
            .await;
        }
    }

    /// Records the primary's WAL position `lsn` at `at`.
    fn sample(&self, at: Instant, lsn: u64) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() >= SAMPLES {
            samples.pop_front();
        }
        samples.push_back((at, lsn));
    }

    /// How far behind a replica that has replayed up to `replayed` is: since when the
    /// primary has been past it (zero when it has replayed every sample). Behind even the
    /// oldest sample, it is at least that old: an instance that has just started learns a
    /// replica's full lag over its first checks, and meanwhile its reads require what the
    /// primary had at its start (see [`Replicas::start`]), which such a replica lacks.
    fn lag_of(&self, replayed: u64) -> Duration {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .iter()
            .find(|(_, lsn)| *lsn > replayed)
            .map_or(Duration::ZERO, |(at, _)| at.elapsed())
    }

    /// Notes that viewer `user` wrote, the primary being at `lsn` after its commit: for the
    /// read-your-writes period its reads use only what has replayed `lsn`.
    pub fn note_write(&self, user: i64, lsn: u64) {
        let window = self.consistency.read_your_writes;
        if window.is_zero() || self.list.is_empty() {
            return;
        }
        let now = Instant::now();
        let until = now + window;
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if writes.len() >= MAX_WRITERS && !writes.contains_key(&user) {
            writes.retain(|_, (_, until)| *until > now);
            if writes.len() >= MAX_WRITERS {
                writes.clear();
                self.require_everywhere(u64::MAX);
            }
        }
        let entry = writes.entry(user).or_insert((lsn, until));
        // An expired entry binds nothing any more: the new write replaces it.
        let lsn = if entry.1 > now { entry.0.max(lsn) } else { lsn };
        *entry = (lsn, until);
    }

    /// Requires `lsn` of every read for the read-your-writes period: writes may have been
    /// made that this instance did not hear of.
    fn require_everywhere(&self, lsn: u64) {
        let until = Instant::now() + self.consistency.read_your_writes;
        let mut floor = self.floor.lock().unwrap_or_else(|e| e.into_inner());
        let lsn = match *floor {
            Some((old, old_until)) if old_until > Instant::now() => old.max(lsn),
            _ => lsn,
        };
        *floor = Some((lsn, until));
    }

    /// Called when the change feed (re)starts listening: writes announced while it was not
    /// are unknown, so every read requires the primary's position of now for the period
    /// (every read uses the primary when that position cannot be read).
    pub(crate) async fn listening(&self) {
        if !self.follows_writes() {
            return;
        }
        let lsn = match &self.primary {
            Some(primary) => {
                let now =
                    sqlx::raw_sql("select pg_current_wal_insert_lsn()::text").fetch_one(primary);
                match tokio::time::timeout(CHECK_TIMEOUT, now).await {
                    Ok(Ok(row)) => {
                        use sqlx::Row as _;
                        row.try_get::<String, _>(0).ok().and_then(|t| parse_lsn(&t))
                    }
                    _ => None,
                }
            }
            None => None,
        };
        self.require_everywhere(lsn.unwrap_or(u64::MAX));
        // What the replicas have replayed, now rather than at the next check.
        if let Some(lsn) = lsn {
            self.until_replayed(lsn).await;
        }
    }

    /// The WAL position a read by `user` must see, if it wrote recently.
    pub(crate) fn required_lsn(&self, user: Option<i64>) -> Option<u64> {
        if !self.follows_writes() {
            return None;
        }
        let now = Instant::now();
        let floor = *self.floor.lock().unwrap_or_else(|e| e.into_inner());
        let floor = floor.filter(|(_, until)| *until > now).map(|(lsn, _)| lsn);
        let own = user.and_then(|user| {
            let writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
            writes
                .get(&user)
                .filter(|(_, until)| *until > now)
                .map(|(lsn, _)| *lsn)
        });
        floor.max(own)
    }

    /// The read-your-writes announcement of `payload` (`<user id> <LSN> <echo>`), from any
    /// instance; this instance's own one is its echo (see [`ECHO_WAIT`]).
    pub(crate) fn heard_write(&self, payload: &str) {
        let mut parts = payload.split(' ');
        if let (Some(user), Some(lsn)) = (
            parts.next().and_then(|u| u.parse::<i64>().ok()),
            parts.next().and_then(parse_lsn),
        ) {
            self.note_write(user, lsn);
        }
        let own = parts
            .next()
            .and_then(|echo| echo.split_once('.'))
            .filter(|(tag, _)| u64::from_str_radix(tag, 16).ok() == Some(*ECHO_TAG))
            .and_then(|(_, n)| n.parse::<u64>().ok());
        if let Some(n) = own {
            let waiting = self
                .echoes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&n);
            if let Some(heard) = waiting {
                let _ = heard.send(());
            }
        }
    }

    /// Announces that viewer `user`'s write has committed: the primary's WAL insert position
    /// now (past the commit record) is noted for it here and sent to every instance. When
    /// that fails, the viewer reads from the primary for the period.
    pub(crate) async fn announce_write(&self, user: i64) {
        let Some(primary) = &self.primary else {
            return;
        };
        let n = self.next_echo.fetch_add(1, Ordering::Relaxed);
        let (heard, echo) = tokio::sync::oneshot::channel();
        self.echoes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(n, heard);
        let tag = *ECHO_TAG;
        let sql = format!(
            "with l as (select pg_current_wal_insert_lsn()::text as lsn) \
             select lsn, pg_notify('{WRITES_CHANNEL}', '{user} ' || lsn || ' {tag:x}.{n}') from l"
        );
        let announced = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_one(primary);
        let lsn = match tokio::time::timeout(CHECK_TIMEOUT, announced).await {
            Ok(Ok(row)) => {
                use sqlx::Row as _;
                row.try_get::<String, _>(0).ok().and_then(|t| parse_lsn(&t))
            }
            _ => None,
        };
        if lsn.is_none() {
            tracing::warn!(
                user,
                "a write's WAL position is unknown: its viewer reads from the primary for a while"
            );
        }
        self.note_write(user, lsn.unwrap_or(u64::MAX));
        if lsn.is_some() && self.hearing.load(Ordering::Relaxed) {
            let _ = tokio::time::timeout(ECHO_WAIT, echo).await;
        }
        self.echoes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&n);
    }

    /// Notes whether this instance's listener is hearing [`WRITES_CHANNEL`] (from when it
    /// listens until its connection is lost).
    pub(crate) fn set_hearing(&self, hearing: bool) {
        self.hearing.store(hearing, Ordering::Relaxed);
    }

    /// Whether viewers' writes are announced (replicas to keep them from).
    pub(crate) fn follows_writes(&self) -> bool {
        !self.list.is_empty() && !self.consistency.read_your_writes.is_zero()
    }

    /// The replicas, in configuration order.
    pub fn list(&self) -> &[Replica] {
        &self.list
    }

    /// The next replica in rotation that has replayed `min` (when given), round-robin;
    /// `None` when there is none (reads use the primary).
    pub(crate) fn pick(&self, min: Option<u64>) -> Option<&Replica> {
        let usable = |r: &&Replica| r.in_rotation() && min.is_none_or(|m| r.replayed() >= m);
        // The k-th usable one, so each gets an even share.
        let n = self.list.iter().filter(usable).count();
        if n == 0 {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed) % n;
        self.list
            .iter()
            .filter(usable)
            .nth(k)
            .or_else(|| self.list.iter().find(usable))
    }

    /// Takes a replica out of rotation after `err` (until a health check passes).
    pub(crate) fn mark_down(&self, replica: &Replica, err: &sqlx::Error) {
        replica.set_healthy(false, Some(err));
    }

    /// What the primary is called in `extensions.sql.server`, counting a read begun on it.
    pub(crate) fn primary_read(&self) -> Arc<str> {
        self.primary_reads.fetch_add(1, Ordering::Relaxed);
        self.primary_label
            .clone()
            .unwrap_or_else(|| Arc::from("primary"))
    }

    /// What the primary is called in `extensions.sql.server` (a write, not counted as a read).
    pub(crate) fn primary_label(&self) -> Arc<str> {
        self.primary_label
            .clone()
            .unwrap_or_else(|| Arc::from("primary"))
    }

    /// Read snapshots begun on the primary so far.
    pub fn primary_reads(&self) -> u64 {
        self.primary_reads.load(Ordering::Relaxed)
    }

    /// `(in rotation, behind, configured)` replicas.
    pub fn health(&self) -> (usize, usize, usize) {
        (
            self.list.iter().filter(|r| r.in_rotation()).count(),
            self.list
                .iter()
                .filter(|r| r.is_healthy() && r.is_lagging())
                .count(),
            self.list.len(),
        )
    }

    /// Closes every replica's pool.
    pub async fn close(&self) {
        for r in &self.list {
            r.pool.close().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(n: usize, url: &str) -> Replica {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy(url)
            .expect("a URL");
        Replica::new(n, url, pool)
    }

    #[tokio::test]
    async fn picks_healthy_replicas_in_turn_and_none_when_all_are_down() {
        let replicas = Replicas {
            list: vec![
                replica(1, "postgres://u:secret@db1:5433/x"),
                replica(2, "postgres://db2/x?sslmode=disable"),
                replica(3, "postgres://db3:6000"),
            ],
            ..Default::default()
        };
        assert_eq!(replicas.list[0].host, "db1:5433");
        assert_eq!(replicas.list[1].host, "db2");
        assert_eq!(replicas.list[2].host, "db3:6000");
        assert!(replicas.pick(None).is_none());
        for r in &replicas.list {
            r.set_healthy(true, None);
        }
        // In turn: each of the three once in every three picks.
        let picked: Vec<&str> = (0..6)
            .map(|_| &*replicas.pick(None).expect("one").label)
            .collect();
        assert_eq!(picked[..3], picked[3..]);
        let mut first = picked[..3].to_vec();
        first.sort_unstable();
        assert_eq!(first, ["replica-1", "replica-2", "replica-3"]);
        replicas.mark_down(&replicas.list[1], &sqlx::Error::PoolTimedOut);
        let picked: Vec<&str> = (0..4)
            .map(|_| &*replicas.pick(None).expect("one").label)
            .collect();
        assert!(!picked.contains(&"replica-2"), "{picked:?}");
        assert_eq!(replicas.health(), (2, 0, 3));
        replicas.list[0].set_healthy(false, None);
        replicas.list[2].set_healthy(false, None);
        assert!(replicas.pick(None).is_none());
    }

    #[test]
    fn lag_is_how_long_the_primary_has_been_past_what_a_replica_replayed() {
        assert_eq!(parse_lsn("16/B374D848"), Some((0x16 << 32) | 0xB374_D848));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("nonsense"), None);
        let replicas = Replicas::default();
        let now = Instant::now();
        replicas.sample(now - Duration::from_secs(5), 100);
        replicas.sample(now - Duration::from_secs(3), 200);
        replicas.sample(now - Duration::from_secs(1), 200);
        replicas.sample(now, 300);
        // Everything replayed: no lag, however long ago the primary last wrote.
        assert_eq!(replicas.lag_of(300), Duration::ZERO);
        // Behind the last sample only: as old as that sample.
        assert!(replicas.lag_of(250) < Duration::from_secs(1));
        // Behind since the primary reached 200, three seconds ago.
        let lag = replicas.lag_of(150);
        assert!(
            lag >= Duration::from_secs(3) && lag < Duration::from_secs(4),
            "{lag:?}"
        );
        // Behind every sample: at least as old as the oldest.
        assert!(replicas.lag_of(50) >= Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_writer_reads_only_replicas_that_replayed_its_write_for_a_while() {
        let replicas = Replicas {
            list: vec![
                replica(1, "postgres://db1/x"),
                replica(2, "postgres://db2/x"),
            ],
            consistency: Consistency {
                max_lag: Some(Duration::from_secs(1)),
                read_your_writes: Duration::from_millis(200),
            },
            ..Default::default()
        };
        for r in &replicas.list {
            r.set_healthy(true, None);
        }
        replicas.list[0].replayed.store(500, Ordering::Relaxed);
        replicas.list[1].replayed.store(400, Ordering::Relaxed);
        replicas.heard_write("7 0/1C2");
        assert_eq!(replicas.required_lsn(Some(7)), Some(450));
        assert_eq!(replicas.required_lsn(Some(8)), None, "another viewer");
        for _ in 0..4 {
            assert_eq!(
                replicas.pick(Some(450)).map(|r| &*r.label),
                Some("replica-1")
            );
        }
        assert!(
            replicas.pick(Some(600)).is_none(),
            "none has it: the primary"
        );
        // A replica too far behind leaves the rotation.
        replicas.list[0].set_lag(Duration::from_secs(2), replicas.consistency.max_lag);
        assert!(replicas.pick(Some(450)).is_none());
        assert_eq!(replicas.health(), (1, 1, 2));
        replicas.list[0].set_lag(Duration::ZERO, replicas.consistency.max_lag);
        // The period ends.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(replicas.required_lsn(Some(7)), None);
        // Writes this instance may not have heard of: every read needs the floor.
        replicas.require_everywhere(420);
        assert_eq!(replicas.required_lsn(None), Some(420));
        replicas.heard_write("7 0/1F4");
        assert_eq!(replicas.required_lsn(Some(7)), Some(500));
        tokio::time::sleep(Duration::from_millis(250)).await;
        // An expired write is replaced, not kept as a maximum.
        replicas.note_write(7, 10);
        assert_eq!(replicas.required_lsn(Some(7)), Some(10));
        replicas.heard_write("garbage");
        replicas.heard_write("1 nonsense");
        assert_eq!(replicas.required_lsn(Some(1)), None);
    }

    #[tokio::test]
    async fn an_announcement_is_heard_back_by_its_own_echo_only() {
        let replicas = Replicas {
            list: vec![replica(1, "postgres://db1/x")],
            consistency: Consistency {
                max_lag: None,
                read_your_writes: Duration::from_secs(5),
            },
            ..Default::default()
        };
        let mut waiting = Vec::new();
        for n in 0..2 {
            let (heard, echo) = tokio::sync::oneshot::channel();
            replicas.echoes.lock().unwrap().insert(n, heard);
            waiting.push(echo);
        }
        let own = *ECHO_TAG;
        // Another instance's announcement with the same number is not this one's echo, and
        // an announcement without an echo (an older instance's) is still a write.
        replicas.heard_write(&format!("3 0/10 {:x}.0", own.wrapping_add(1)));
        replicas.heard_write("4 0/20");
        assert_eq!(replicas.required_lsn(Some(3)), Some(0x10));
        assert_eq!(replicas.required_lsn(Some(4)), Some(0x20));
        replicas.heard_write(&format!("5 0/30 {own:x}.1"));
        assert_eq!(replicas.required_lsn(Some(5)), Some(0x30));
        let second = waiting.pop().expect("two waiting");
        let mut first = waiting.pop().expect("two waiting");
        assert!(second.await.is_ok(), "echo 1 heard");
        assert!(first.try_recv().is_err(), "echo 0 not heard");
        assert_eq!(replicas.echoes.lock().unwrap().len(), 1);
    }
}
