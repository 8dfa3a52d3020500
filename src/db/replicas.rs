//! PostgreSQL read replicas (`EAGERQL_REPLICA_URLS`): query operations read their snapshot
//! from one of them, round-robin over the healthy ones; mutations, and the reads that return
//! their results, use the primary. A replica that fails a request's `BEGIN` is skipped at
//! once (that request begins on the next one, or on the primary) until a health check,
//! every [`CHECK_EVERY`], finds it answering again. With every replica down, reads use the
//! primary and `/readyz` says "degraded".

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::postgres::PgPool;

/// How long a request waits for a busy replica's connection before it reads from the next
/// one (or the primary); the busy replica stays in rotation.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// How often each replica is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The longest a health check waits for its answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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
        }
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

    /// One health check: a simple-protocol `select` (it passes any pooler) within
    /// [`CHECK_TIMEOUT`].
    async fn check(&self) {
        let ping = sqlx::raw_sql("select 1").execute(&self.pool);
        match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
            Ok(Ok(_)) => self.set_healthy(true, None),
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
}

impl Replicas {
    /// Checks each replica once, then every [`CHECK_EVERY`] for as long as the pool lives.
    pub async fn start(list: Vec<Replica>) -> Arc<Replicas> {
        let replicas = Arc::new(Replicas {
            list,
            next: AtomicUsize::new(0),
            primary_reads: AtomicU64::new(0),
            primary_label: Some(Arc::from("primary")),
        });
        if replicas.list.is_empty() {
            return replicas;
        }
        replicas.check_all().await;
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
        futures_util::future::join_all(self.list.iter().map(Replica::check)).await;
    }

    /// The replicas, in configuration order.
    pub fn list(&self) -> &[Replica] {
        &self.list
    }

    /// The next healthy replica, round-robin; `None` when there is none (reads use the
    /// primary).
    pub(crate) fn pick(&self) -> Option<&Replica> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        // The k-th healthy one, so each healthy replica gets an even share.
        let healthy = self.list.iter().filter(|r| r.is_healthy()).count();
        if healthy == 0 {
            return None;
        }
        let k = self.next.fetch_add(1, Ordering::Relaxed) % healthy;
        self.list
            .iter()
            .filter(|r| r.is_healthy())
            .nth(k)
            .or_else(|| self.list.iter().find(|r| r.is_healthy()))
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

    /// `(healthy, configured)` replicas.
    pub fn health(&self) -> (usize, usize) {
        (
            self.list.iter().filter(|r| r.is_healthy()).count(),
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
        assert!(replicas.pick().is_none());
        for r in &replicas.list {
            r.set_healthy(true, None);
        }
        // In turn: each of the three once in every three picks.
        let picked: Vec<&str> = (0..6)
            .map(|_| &*replicas.pick().expect("one").label)
            .collect();
        assert_eq!(picked[..3], picked[3..]);
        let mut first = picked[..3].to_vec();
        first.sort_unstable();
        assert_eq!(first, ["replica-1", "replica-2", "replica-3"]);
        replicas.mark_down(&replicas.list[1], &sqlx::Error::PoolTimedOut);
        let picked: Vec<&str> = (0..4)
            .map(|_| &*replicas.pick().expect("one").label)
            .collect();
        assert!(!picked.contains(&"replica-2"), "{picked:?}");
        assert_eq!(replicas.health(), (2, 3));
        replicas.list[0].set_healthy(false, None);
        replicas.list[2].set_healthy(false, None);
        assert!(replicas.pick().is_none());
    }
}
