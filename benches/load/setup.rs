//! Fresh databases (a temp SQLite file, or a PostgreSQL database created from scratch),
//! seeding with `eagerql seed`, and the server process under test.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper::Method;
use hyper::body::Bytes;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::Res;
use super::client::Conn;

/// The default PostgreSQL server (overridable with `BENCH_DATABASE_URL`).
/// Loopback, so without TLS (`sslmode=disable`): encryption would only add CPU to both sides.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable";

/// Which database the benchmark runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// `eagerql seed` arguments.
#[derive(Clone, Copy, Debug)]
pub struct SeedSize {
    pub users: u64,
    pub orders_per_user: u64,
    pub items_per_order: u64,
    pub products: u64,
}

impl SeedSize {
    pub fn orders(&self) -> u64 {
        self.users * self.orders_per_user
    }

    /// `1k`, `10k`, `500k`...: part of the database name.
    pub fn label(&self) -> String {
        let u = self.users;
        if u >= 1_000_000 && u.is_multiple_of(1_000_000) {
            format!("{}m", u / 1_000_000)
        } else if u >= 1000 && u.is_multiple_of(1000) {
            format!("{}k", u / 1000)
        } else {
            u.to_string()
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} users, {} orders, {} items, {} products",
            thousands(self.users),
            thousands(self.orders()),
            thousands(self.orders() * self.items_per_order),
            thousands(self.products)
        )
    }
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A database made for one run; removed (file) or dropped (PostgreSQL) on [`Database::remove`].
pub struct Database {
    pub backend: Backend,
    pub url: String,
    sqlite_path: Option<PathBuf>,
    pg_admin: Option<(String, String)>,
}

fn pg_admin_url() -> String {
    std::env::var("BENCH_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> Res<String> {
    let scheme_end = url.find("://").ok_or("database URL without scheme")? + 3;
    let (base, query) = match url.find('?') {
        Some(q) => (&url[..q], &url[q..]),
        None => (url, ""),
    };
    let authority_end = base[scheme_end..]
        .find('/')
        .map(|i| scheme_end + i)
        .unwrap_or(base.len());
    Ok(format!("{}/{name}{query}", &base[..authority_end]))
}

/// Refuses database servers that are not on this machine.
fn check_loopback_url(url: &str) -> Res<()> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let hostport = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    let host = if let Some(stripped) = hostport.strip_prefix('[') {
        stripped.split(']').next().unwrap_or("")
    } else {
        hostport.split(':').next().unwrap_or("")
    };
    let ok = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if ok {
        Ok(())
    } else {
        Err(format!("only loopback database servers are benchmarked, not {host:?}").into())
    }
}

impl Database {
    /// An empty database for `size`: a new temp file, or `eagerql_bench_<size>_<pid>` dropped and
    /// created again.
    pub async fn create(backend: Backend, size: &SeedSize) -> Res<Database> {
        match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!(
                    "eagerql_bench_{}_{}.db",
                    size.label(),
                    std::process::id()
                ));
                remove_sqlite_files(&path);
                Ok(Database {
                    backend,
                    url: format!("sqlite:{}", path.display()),
                    sqlite_path: Some(path),
                    pg_admin: None,
                })
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                check_loopback_url(&admin)?;
                let name = format!("eagerql_bench_{}_{}", size.label(), std::process::id());
                let mut conn = PgConnection::connect(&admin).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "drop database if exists {name} with (force)"
                )))
                .execute(&mut conn)
                .await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("create database {name}")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await?;
                Ok(Database {
                    backend,
                    url: with_database(&admin, &name)?,
                    sqlite_path: None,
                    pg_admin: Some((admin, name)),
                })
            }
        }
    }

    /// Deletes the database.
    pub async fn remove(self) -> Res<()> {
        if let Some(path) = &self.sqlite_path {
            remove_sqlite_files(path);
        }
        if let Some((admin, name)) = &self.pg_admin {
            let mut conn = PgConnection::connect(admin).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "drop database if exists {name} with (force)"
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await?;
        }
        Ok(())
    }
}

fn remove_sqlite_files(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = fs::remove_file(PathBuf::from(p));
    }
}

/// The server binary: `EAGERQL_BIN`, else `eagerql` next to this benchmark's `deps/` folder
/// (`target/release/eagerql`, which `scripts/bench` builds first).
pub fn server_binary() -> Res<PathBuf> {
    if let Ok(p) = std::env::var("EAGERQL_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    let candidate = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("eagerql"))
        .ok_or("cannot locate the target directory")?;
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} not found: run `cargo build --release --bin eagerql` (scripts/bench does) \
             or set EAGERQL_BIN",
            candidate.display()
        )
        .into())
    }
}

/// Runs `eagerql seed` into the database at `url`; returns its own report line and the wall time.
pub fn seed(bin: &Path, url: &str, size: &SeedSize) -> Res<(String, Duration)> {
    let started = Instant::now();
    let out = Command::new(bin)
        .arg("seed")
        .args(["--users", &size.users.to_string()])
        .args(["--orders-per-user", &size.orders_per_user.to_string()])
        .args(["--items-per-order", &size.items_per_order.to_string()])
        .args(["--products", &size.products.to_string()])
        .env("DATABASE_URL", url)
        .env("EAGERQL_LOG", "warn")
        .stdin(Stdio::null())
        .output()?;
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if !out.status.success() {
        return Err(format!(
            "eagerql seed failed ({}): {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
        .into());
    }
    Ok((stdout, elapsed))
}

/// An access token for user `user` of the seeded database (user 1 is the demo administrator,
/// users 2 and 3 customers), from `eagerql token`; `None` for a server without accounts.
pub fn token(bin: &Path, url: &str, user: u64) -> Option<String> {
    let out = Command::new(bin)
        .args(["token", "--user", &user.to_string()])
        .env("DATABASE_URL", url)
        .env("EAGERQL_LOG", "warn")
        .env("EAGERQL_ACCESS_TOKEN_TTL_SECS", "86400")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !token.is_empty()).then_some(token)
}

/// Settings of the server under test.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub pool_size: u32,
    pub max_page_size: u64,
    /// Settings over the benchmark's own (e.g. `EAGERQL_LOG=info`).
    pub env: Vec<(&'static str, String)>,
}

/// The running server; killed (by its own pid) when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log_path: PathBuf,
}

impl Server {
    /// Starts `eagerql serve` on a free loopback port and waits until `/readyz` answers 200.
    pub async fn start(bin: &Path, db: &Database, cfg: &ServerConfig) -> Res<Server> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log_path = std::env::temp_dir().join(format!(
            "eagerql_bench_server_{}_{port}.log",
            std::process::id()
        ));
        let log = fs::File::create(&log_path)?;
        let child = Command::new(bin)
            .arg("serve")
            .env("DATABASE_URL", &db.url)
            .env("EAGERQL_BIND", addr.to_string())
            .env("EAGERQL_DEMO_DATA", "false")
            .env("EAGERQL_DEBUG_SQL", "on")
            .env("EAGERQL_STATEMENT_BUDGET", "0")
            .env("EAGERQL_LOG", "warn")
            .env("EAGERQL_POOL_SIZE", cfg.pool_size.to_string())
            .env("EAGERQL_MAX_PAGE_SIZE", cfg.max_page_size.to_string())
            // The scale shapes select far more than the interactive defaults allow.
            .env("EAGERQL_MAX_COMPLEXITY", "100000000")
            .env("EAGERQL_MAX_BODY_BYTES", (64u64 << 20).to_string())
            .env("EAGERQL_REQUEST_TIMEOUT_SECS", "600")
            .envs(cfg.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = Server {
            child,
            addr,
            log_path,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn wait_ready(&mut self) -> Res<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("server exited ({status}): {}", self.log_tail()).into());
            }
            if let Ok(mut conn) = Conn::connect(self.addr).await
                && let Ok(reply) = conn.send(Method::GET, "/readyz", Bytes::new(), false).await
                && reply.status.is_success()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("server not ready after 60 s: {}", self.log_tail()).into())
    }

    /// The end of the server's log (last 3 lines, each cut to 300 characters).
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(3)..]
            .iter()
            .map(|l| match l.char_indices().nth(300) {
                Some((cut, _)) => format!("{}…", &l[..cut]),
                None => (*l).to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Lines the server logged (at `warn` and above).
    pub fn log_lines(&self) -> usize {
        fs::read_to_string(&self.log_path)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// `VmHWM` (peak resident set) in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// `VmRSS` (current resident set) in KiB.
    /// CPU time the server has used so far (user + system, all threads), from
    /// `/proc/PID/stat`.
    /// User and system CPU time of the server so far.
    pub fn cpu_times(&self) -> Option<(Duration, Duration)> {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // Fields after the command name (which may hold spaces) in parentheses.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let user: u64 = fields.get(11)?.parse().ok()?;
        let sys: u64 = fields.get(12)?.parse().ok()?;
        // USER_HZ is 100 on Linux.
        Some((
            Duration::from_millis(user * 10),
            Duration::from_millis(sys * 10),
        ))
    }

    /// CPU time of every `postgres` process on this machine (the server's backends with
    /// the rest): what a workload cost the database, as a difference.
    pub fn postgres_cpu() -> Option<Duration> {
        let mut ticks = 0u64;
        for entry in fs::read_dir("/proc").ok()?.flatten() {
            let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            if !head.ends_with("(postgres") {
                continue;
            }
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            ticks += field(11).unwrap_or(0) + field(12).unwrap_or(0);
        }
        Some(Duration::from_millis(ticks * 10))
    }

    pub fn cpu_time(&self) -> Option<Duration> {
        self.cpu_times().map(|(user, sys)| user + sys)
    }

    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Resets the peak to the current RSS (`/proc/PID/clear_refs` 5), so each workload
    /// reports its own peak. Returns whether that worked.
    pub fn reset_peak(&self) -> bool {
        fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log_path);
    }
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
