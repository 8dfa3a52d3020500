//! Load benchmark: seeds a fresh database with `eagerql seed`, starts the release server
//! against it, drives it over HTTP with concurrent clients, and prints per workload the
//! request rate, p50/p99 latency, SQL statements per request, response bytes and the server's
//! peak memory (VmHWM). Beside each read workload it replays the same SQL statements straight
//! through sqlx ("direct") to show how much the server adds on top of the database's work.
//!
//! Run it with `scripts/bench [--help]` (which builds `target/release/eagerql` first), or
//! `cargo bench --bench load -- [options]`.

#[path = "load/client.rs"]
mod client;
#[path = "load/direct.rs"]
mod direct;
#[path = "load/floor.rs"]
mod floor;
#[path = "load/setup.rs"]
mod setup;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hyper::body::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use client::{BodyFn, Conn, Plan, Stats, check_graphql, query_body, query_body_with};
use direct::Pool;
use setup::{Backend, Database, SeedSize, Server, ServerConfig, thousands};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

const USAGE_AFTER: &str = "\
Workloads (--workloads, comma-separated; default: all):
  dashboard        { users(first: 1000) { id username orders { id totalAmount } } }
  dashboard-counts { users(first: 1000) { id username ordersAggregate { count } } }
  deep             { users(first: 100) { id orders { id status totalAmount items { quantity unitPrice product { name sku price } } } } }
  detail           order(id: 1 + (i*7919 % orders)) { id user { email } items { quantity unitPrice product { name } } }
  top-customers    { analytics { topCustomers(days: 30, limit: 10) { user { id email } orderCount totalRevenue } } }
  fan-out          products(first: 20) { orders { products { orders { id } } } }: a large accepted request
  many-to-many     { products(first: 50) { id name orders { id user { email } } } }
  my-orders        as a customer (user 2): { me { username orders(first: 10) { id status totalAmount
                   createdAt items { quantity unitPrice product { name } } } } }
  create-order     createOrder with 3 items of quantity 1 (skipped when the schema has no such mutation)
  sign-ups         1,000 createUser calls (argon2id) from the clients; RSS after them
  import-products  importProducts of 10,000 products, timed alone, --import-runs times
  (also: reads, writes, all)

Every request carries an access token from `eagerql token`: the demo administrator's (user 1),
or a customer's (user 2) for my-orders.

Data: seed --users 1000 --orders-per-user 10 --items-per-order 3 --products 500, into a fresh
SQLite file in the temp directory, or a PostgreSQL database eagerql_bench_<size>_<pid> (dropped and
created again) on BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable).
--scale adds the dashboard and deep shapes on 10x and 100x the users (own databases);
--big adds top-customers and recent-completed (each of 100 users' 5 newest completed orders, a
per-parent connection page) on 500,000 users / 5,000,000 orders (PostgreSQL only; slow to seed).
Only loopback addresses are ever loaded. The server binary is target/release/eagerql, or
EAGERQL_BIN.";

/// Load benchmark of the eagerql server over HTTP, with the direct-SQL floor beside it.
#[derive(Debug, Parser)]
#[command(name = "scripts/bench", about, after_help = USAGE_AFTER)]
struct Opts {
    /// Which database backends to run.
    #[arg(long, value_enum, default_value_t = BackendSel::Both)]
    backend: BackendSel,
    /// Measured seconds per workload (and again for its direct replay).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds before each measurement (not recorded).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Concurrent clients (one keep-alive connection each).
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Server pool size (EAGERQL_POOL_SIZE), also used for the direct replay.
    #[arg(long, default_value_t = 10)]
    pool_size: u32,
    /// Workloads to run, comma-separated (see below).
    #[arg(long, value_delimiter = ',')]
    workloads: Option<Vec<String>>,
    /// Also run dashboard and deep on 10x and 100x the users.
    #[arg(long)]
    scale: bool,
    /// Concurrent clients for --scale and --big (1 shows per-request cost best).
    #[arg(long, default_value_t = 1)]
    scale_clients: usize,
    /// Also run top-customers on 500,000 users / 5,000,000 orders (PostgreSQL only).
    #[arg(long)]
    big: bool,
    /// How many times to run the 10,000-product import.
    #[arg(long, default_value_t = 3)]
    import_runs: usize,
    /// Instead of the workloads' table: what logging and metrics cost. Two servers on the
    /// same data, one quiet (`EAGERQL_LOG=off`, `EAGERQL_METRICS=false`) and one as in
    /// production (`EAGERQL_LOG=info` in JSON, metrics on and scraped every second), loaded
    /// in turn, --rounds times each, alternating which goes first.
    #[arg(long)]
    observability: bool,
    /// Rounds per server for --observability (each --duration / rounds seconds).
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Skip the direct sqlx replay.
    #[arg(long)]
    no_direct: bool,
    /// Seconds to wait after each read workload before reading the server's RSS again (does
    /// memory go back after load?); 0 skips it.
    #[arg(long, default_value_t = 0.0)]
    settle: f64,
    /// Keep the PostgreSQL databases after the run (SQLite files are always removed).
    #[arg(long)]
    keep_db: bool,
    /// Print the results as JSON on stdout (the tables then go to stderr).
    #[arg(long)]
    json: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendSel {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Workload {
    Dashboard,
    DashboardCounts,
    Deep,
    Detail,
    DetailVars,
    Typename,
    TopCustomers,
    ManyToMany,
    FanOut,
    MyOrders,
    Reports,
    CreateOrder,
    SignUps,
    ImportProducts,
}

impl Workload {
    const ALL: [Workload; 14] = [
        Workload::Dashboard,
        Workload::DashboardCounts,
        Workload::Deep,
        Workload::Detail,
        Workload::DetailVars,
        Workload::Typename,
        Workload::TopCustomers,
        Workload::ManyToMany,
        Workload::FanOut,
        Workload::MyOrders,
        Workload::Reports,
        Workload::CreateOrder,
        Workload::SignUps,
        Workload::ImportProducts,
    ];

    fn name(self) -> &'static str {
        match self {
            Workload::Dashboard => "dashboard",
            Workload::DashboardCounts => "dashboard-counts",
            Workload::Deep => "deep",
            Workload::Detail => "detail",
            Workload::DetailVars => "detail-vars",
            Workload::Typename => "typename",
            Workload::TopCustomers => "top-customers",
            Workload::ManyToMany => "many-to-many",
            Workload::FanOut => "fan-out",
            Workload::MyOrders => "my-orders",
            Workload::Reports => "reports",
            Workload::CreateOrder => "create-order",
            Workload::SignUps => "sign-ups",
            Workload::ImportProducts => "import-products",
        }
    }

    fn is_read(self) -> bool {
        !matches!(
            self,
            Workload::CreateOrder | Workload::SignUps | Workload::ImportProducts
        )
    }

    fn parse_list(names: &[String]) -> Res<Vec<Workload>> {
        let mut out = Vec::new();
        for raw in names {
            let key: String = raw
                .trim()
                .to_ascii_lowercase()
                .chars()
                .filter(|c| *c != '-' && *c != '_')
                .collect();
            let found: Vec<Workload> = match key.as_str() {
                "" => continue,
                "all" => Workload::ALL.to_vec(),
                "reads" | "read" => Workload::ALL.into_iter().filter(|w| w.is_read()).collect(),
                "writes" | "write" => Workload::ALL.into_iter().filter(|w| !w.is_read()).collect(),
                "m2m" | "manytomany" => vec![Workload::ManyToMany],
                "topcustomers" | "top" => vec![Workload::TopCustomers],
                _ => Workload::ALL
                    .into_iter()
                    .filter(|w| w.name().replace('-', "") == key)
                    .collect(),
            };
            if found.is_empty() {
                let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
                return Err(format!(
                    "unknown workload {raw:?}; known: {}, reads, writes, all",
                    names.join(", ")
                )
                .into());
            }
            for w in found {
                if !out.contains(&w) {
                    out.push(w);
                }
            }
        }
        // Reads first (writes change the data), in the canonical order.
        Ok(Workload::ALL
            .into_iter()
            .filter(|w| out.contains(w))
            .collect())
    }
}

const BASE: SeedSize = SeedSize {
    users: 1000,
    orders_per_user: 10,
    items_per_order: 3,
    products: 500,
};

const BIG: SeedSize = SeedSize {
    users: 500_000,
    orders_per_user: 10,
    items_per_order: 1,
    products: 1000,
};

fn dashboard_query(users: u64) -> String {
    format!("{{ users(first: {users}) {{ id username orders {{ id totalAmount }} }} }}")
}

fn deep_query(users: u64) -> String {
    format!(
        "{{ users(first: {users}) {{ id orders {{ id status totalAmount items {{ quantity unitPrice \
         product {{ name sku price }} }} }} }} }}"
    )
}

const TOP_CUSTOMERS: &str = "{ analytics { topCustomers(days: 30, limit: 10) { user { id email } orderCount totalRevenue } } }";
/// Each of 100 users' 5 newest completed orders, with the count: a per-parent page that the
/// index `orders (user_id, status, created_at desc)` serves (--big).
const RECENT_COMPLETED: &str = "{ users(first: 100) { ordersConnection(first: 5, orderBy: CREATED_AT_DESC, where: { status: { eq: COMPLETED } }) { totalCount edges { node { id totalAmount } } } } }";
const MANY_TO_MANY: &str = "{ products(first: 50) { id name orders { id user { email } } } }";
/// A large accepted request: a many-to-many round trip whose tree multiplies its rows (about
/// 30,000 rows and 3 MB on the default data set, under the default row and byte budgets).
const FAN_OUT: &str = "{ products(first: 20) { orders { products { orders { id } } } } }";

/// 25 aliases of the spending summary, 1,000 rows each with the user: 25 statements, 25,000
/// rows and about 2.9 MB of answer, within every limit (the heaviest accepted request mix
/// for memory).
fn reports_query() -> String {
    let aliases: Vec<String> = (0..25)
        .map(|i| {
            format!(
                "a{i}: spendingSummary(first: 1000) {{ orderCount totalRevenue \
                 user {{ id email username }} }}"
            )
        })
        .collect();
    format!("{{ analytics {{ {} }} }}", aliases.join(" "))
}

/// The lesson's puzzle as it is meant: each user's order count, without loading the orders.
const DASHBOARD_COUNTS: &str = "{ users(first: 1000) { id username ordersAggregate { count } } }";

/// A customer's "my recent orders with items" (run with a customer's token: user 2 of the
/// demo accounts), with the permission predicates inside its statements.
const MY_ORDERS: &str = "{ me { username orders(first: 10) { id status totalAmount createdAt \
                         items { quantity unitPrice product { name } } } } }";

/// The single-order detail as clients send it: one document, the id in a variable.
const DETAIL_VARS: &str = "query W3($id: ID!) { order(id: $id) { id user { email } items { \
                           quantity unitPrice product { name } } } }";

fn fixed(query: &str) -> BodyFn {
    let body = query_body(query);
    Arc::new(move |_| body.clone())
}

/// The request body of a read workload on a data set of `size`.
fn read_body(w: Workload, size: &SeedSize) -> BodyFn {
    match w {
        Workload::Dashboard => fixed(&dashboard_query(1000)),
        Workload::DashboardCounts => fixed(DASHBOARD_COUNTS),
        Workload::Deep => fixed(&deep_query(100)),
        Workload::TopCustomers => fixed(TOP_CUSTOMERS),
        Workload::ManyToMany => fixed(MANY_TO_MANY),
        Workload::FanOut => fixed(FAN_OUT),
        Workload::Reports => fixed(&reports_query()),
        Workload::MyOrders => fixed(MY_ORDERS),
        Workload::Typename => fixed("{ __typename }"),
        Workload::DetailVars => {
            let orders = size.orders().max(1);
            Arc::new(move |i| {
                let id = 1 + (i.wrapping_mul(7919) % orders);
                query_body_with(DETAIL_VARS, json!({ "id": id.to_string() }))
            })
        }
        Workload::Detail | Workload::CreateOrder | Workload::SignUps | Workload::ImportProducts => {
            let orders = size.orders().max(1);
            Arc::new(move |i| {
                let id = 1 + (i.wrapping_mul(7919) % orders);
                query_body(&format!(
                    "{{ order(id: \"{id}\") {{ id user {{ email }} items {{ quantity unitPrice \
                     product {{ name }} }} }} }}"
                ))
            })
        }
    }
}

/// One result line.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    backend: &'static str,
    dataset: String,
    section: &'static str,
    workload: String,
    clients: usize,
    requests: u64,
    errors: u64,
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    statements_per_request: f64,
    statements_min: u64,
    statements_max: u64,
    response_bytes: f64,
    peak_rss_mib: Option<f64>,
    /// RSS when the workload started.
    start_rss_mib: Option<f64>,
    /// RSS `--settle` seconds after the workload ended.
    settled_rss_mib: Option<f64>,
    direct: Option<DirectRow>,
    /// Server p50 latency over direct p50 latency.
    server_over_direct_p50: Option<f64>,
    /// The database's floor (PostgreSQL): pgbench's requests per second on the same SQL.
    floor_per_sec: Option<f64>,
    /// The server's CPU per request: user and system microseconds.
    cpu_us_per_req: Option<(f64, f64)>,
    /// Rows (scale shapes: parent users selected).
    parents: Option<u64>,
    note: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DirectRow {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    statements: u64,
    rows_per_request: f64,
}

impl Row {
    fn from_stats(stats: &Stats, clients: usize) -> Row {
        Row {
            clients,
            requests: stats.ok,
            errors: stats.errors,
            requests_per_sec: stats.rps(),
            p50_ms: stats.pct_ms(50.0),
            p99_ms: stats.pct_ms(99.0),
            statements_per_request: stats.mean_statements(),
            statements_min: stats.statements_min,
            statements_max: stats.statements_max,
            response_bytes: stats.mean_bytes(),
            note: stats
                .first_error
                .as_ref()
                .map(|e| format!("{} errors, first: {e}", stats.errors)),
            ..Row::default()
        }
    }
}

/// Where tables go: stdout, or stderr when stdout carries JSON.
struct Out {
    json: bool,
    rows: Vec<Row>,
    failures: Vec<String>,
}

impl Out {
    fn print(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    fn fail(&mut self, what: String) {
        eprintln!("!! {what}");
        self.failures.push(what);
    }
}

fn progress(msg: &str) {
    eprintln!("-- {msg}");
}

fn fmt_f(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".to_owned()
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| fmt_f(v, decimals))
        .unwrap_or_else(|| "-".to_owned())
}

fn fmt_stmts(r: &Row) -> String {
    if r.requests == 0 {
        "-".to_owned()
    } else if r.statements_min == r.statements_max {
        r.statements_min.to_string()
    } else {
        format!(
            "{:.1} ({}-{})",
            r.statements_per_request, r.statements_min, r.statements_max
        )
    }
}

fn fmt_bytes(v: f64) -> String {
    if v.is_finite() {
        thousands(v.round() as u64)
    } else {
        "-".to_owned()
    }
}

/// The main table: one line per workload.
fn print_table(out: &Out, title: &str, rows: &[&Row]) {
    let mut t = String::new();
    t.push_str(&format!("\n{title}\n"));
    t.push_str(&format!(
        "{:<16} {:>9} {:>8} {:>8} {:>10} {:>12} {:>9} {:>13} | {:>9} {:>8} {:>8} {:>9} | {:>9} {:>9}\n",
        "workload",
        "req/s",
        "p50 ms",
        "p99 ms",
        "stmts/req",
        "resp bytes",
        "peak MiB",
        "cpu us usr/sys",
        "direct/s",
        "p50 ms",
        "p99 ms",
        "srv/direct",
        "floor/s",
        "srv/floor"
    ));
    t.push_str(&format!("{}\n", "-".repeat(157)));
    for r in rows {
        let (drps, dp50, dp99) = match &r.direct {
            Some(d) => (
                fmt_f(d.requests_per_sec, 1),
                fmt_f(d.p50_ms, 2),
                fmt_f(d.p99_ms, 2),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        t.push_str(&format!(
            "{:<16} {:>9} {:>8} {:>8} {:>10} {:>12} {:>9} {:>13} | {:>9} {:>8} {:>8} {:>9} | {:>9} {:>9}\n",
            r.workload,
            fmt_f(r.requests_per_sec, 1),
            fmt_f(r.p50_ms, 2),
            fmt_f(r.p99_ms, 2),
            fmt_stmts(r),
            fmt_bytes(r.response_bytes),
            fmt_opt(r.peak_rss_mib, 1),
            r.cpu_us_per_req
                .map(|(u, s)| format!("{u:.0}/{s:.0}"))
                .unwrap_or_else(|| "-".into()),
            drps,
            dp50,
            dp99,
            r.server_over_direct_p50
                .map(|x| format!("{x:.2}x"))
                .unwrap_or_else(|| "-".into()),
            fmt_opt(r.floor_per_sec, 1),
            r.floor_per_sec
                .filter(|f| *f > 0.0)
                .map(|f| format!("{:.0}%", 100.0 * r.requests_per_sec / f))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    for r in rows {
        if let Some(note) = &r.note {
            t.push_str(&format!("  {}: {note}\n", r.workload));
        }
        if let Some(settled) = r.settled_rss_mib {
            t.push_str(&format!(
                "  {}: RSS {} MiB at the start, {} MiB at the peak, {settled:.1} MiB after settling\n",
                r.workload,
                fmt_opt(r.start_rss_mib, 1),
                fmt_opt(r.peak_rss_mib, 1)
            ));
        }
    }
    t.push_str(
        "  peak MiB: the server's VmHWM during the workload, reset to its RSS at the start \
         (the allocator keeps freed memory, so it never drops below earlier workloads' RSS);\n  \
         cpu us usr/sys: the server's user and system CPU per request;\n  \
         srv/direct: server p50 over the p50 of the same SQL replayed through sqlx;\n  \
         floor/s: pgbench on the same SQL in the same snapshot (PostgreSQL), srv/floor: req/s over it\n",
    );
    out.print(&t);
}

/// The scale table: the same shape on more rows; statements stay flat, cost grows linearly.
fn print_scale_table(out: &Out, title: &str, rows: &[&Row]) {
    let mut t = String::new();
    t.push_str(&format!("\n{title}\n"));
    t.push_str(&format!(
        "{:<10} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>13} {:>13} {:>9} | {:>9} {:>9}\n",
        "shape",
        "users",
        "data",
        "stmts/req",
        "req/s",
        "p50 ms",
        "p99 ms",
        "resp bytes",
        "ms/1k users",
        "peak MiB",
        "direct ms",
        "srv/direct"
    ));
    t.push_str(&format!("{}\n", "-".repeat(125)));
    for r in rows {
        let parents = r.parents.unwrap_or(0);
        let per_k = if parents > 0 {
            r.p50_ms / (parents as f64 / 1000.0)
        } else {
            f64::NAN
        };
        t.push_str(&format!(
            "{:<10} {:>9} {:>7} {:>10} {:>9} {:>9} {:>9} {:>13} {:>13} {:>9} | {:>9} {:>9}\n",
            r.workload,
            thousands(parents),
            r.dataset,
            fmt_stmts(r),
            fmt_f(r.requests_per_sec, 2),
            fmt_f(r.p50_ms, 1),
            fmt_f(r.p99_ms, 1),
            fmt_bytes(r.response_bytes),
            fmt_f(per_k, 1),
            fmt_opt(r.peak_rss_mib, 1),
            r.direct
                .as_ref()
                .map(|d| fmt_f(d.p50_ms, 1))
                .unwrap_or_else(|| "-".into()),
            r.server_over_direct_p50
                .map(|x| format!("{x:.2}x"))
                .unwrap_or_else(|| "-".into()),
        ));
    }
    for r in rows {
        if let Some(note) = &r.note {
            t.push_str(&format!("  {} {}: {note}\n", r.workload, r.dataset));
        }
    }
    out.print(&t);
}

/// A seeded database with the server running on it.
struct Env {
    backend: Backend,
    /// The server binary.
    bin: PathBuf,
    size: SeedSize,
    db: Option<Database>,
    server: Option<Server>,
    pool: Option<Pool>,
    seed_secs: f64,
    seed_report: String,
    /// `--settle`.
    settle: Duration,
}

impl Env {
    async fn start(
        opts: &Opts,
        bin: &Path,
        backend: Backend,
        size: SeedSize,
        max_page_size: u64,
    ) -> Res<Env> {
        progress(&format!(
            "{}: creating a fresh database and seeding {}",
            backend.name(),
            size.describe()
        ));
        let db = Database::create(backend, &size).await?;
        let mut env = Env {
            backend,
            bin: bin.to_owned(),
            size,
            db: Some(db),
            server: None,
            pool: None,
            seed_secs: 0.0,
            seed_report: String::new(),
            settle: Duration::from_secs_f64(opts.settle.max(0.0)),
        };
        match env.boot(opts, bin, max_page_size).await {
            Ok(()) => Ok(env),
            Err(e) => {
                env.stop(opts).await;
                Err(e)
            }
        }
    }

    async fn boot(&mut self, opts: &Opts, bin: &Path, max_page_size: u64) -> Res<()> {
        let db = self.db.as_ref().ok_or("no database")?;
        let seed_bin = bin.to_owned();
        let size = self.size;
        let url = db.url.clone();
        let (report, elapsed) =
            tokio::task::spawn_blocking(move || setup::seed(&seed_bin, &url, &size)).await??;
        self.seed_secs = elapsed.as_secs_f64();
        self.seed_report = report;
        let token_bin = bin.to_owned();
        let url = db.url.clone();
        let (admin, customer) = tokio::task::spawn_blocking(move || {
            (
                setup::token(&token_bin, &url, 1),
                setup::token(&token_bin, &url, 2),
            )
        })
        .await?;
        client::set_tokens(admin, customer);
        progress(&format!("{} ({:.1} s)", self.seed_report, self.seed_secs));
        let cfg = ServerConfig {
            pool_size: opts.pool_size,
            max_page_size,
            env: Vec::new(),
        };
        let server = Server::start(bin, db, &cfg).await?;
        progress(&format!(
            "server pid {} at http://{}/graphql, RSS {} MiB after start",
            server.pid(),
            server.addr,
            fmt_opt(server.rss_kib().map(|k| k as f64 / 1024.0), 1)
        ));
        self.server = Some(server);
        if !opts.no_direct {
            self.pool = Some(Pool::connect(&db.url, opts.pool_size).await?);
        }
        Ok(())
    }

    fn server(&self) -> Res<&Server> {
        self.server
            .as_ref()
            .ok_or_else(|| "server not running".into())
    }

    async fn stop(&mut self, opts: &Opts) {
        if let Some(pool) = self.pool.take() {
            pool.close().await;
        }
        if let Some(server) = self.server.take() {
            let lines = server.log_lines();
            if lines > 0 {
                progress(&format!(
                    "server logged {lines} warning/error lines; last ones:\n{}",
                    server.log_tail()
                ));
            }
            drop(server);
        }
        if let Some(db) = self.db.take() {
            if opts.keep_db && db.backend == Backend::Postgres {
                progress(&format!("kept database {}", db.url));
            } else {
                let url = db.url.clone();
                if let Err(e) = db.remove().await {
                    progress(&format!("could not remove the database {url}: {e}"));
                }
            }
        }
    }
}

fn plan_of(opts: &Opts, clients: usize) -> Plan {
    Plan {
        clients: clients.max(1),
        warmup: Duration::from_secs_f64(opts.warmup.max(0.0)),
        duration: Duration::from_secs_f64(opts.duration.max(0.1)),
    }
}

/// Loads the server with `body` over HTTP as `plan` says; the row has the server's peak RSS
/// during the run.
async fn load_server(env: &Env, name: &str, plan: Plan, body: BodyFn) -> Res<Row> {
    let server = env.server()?;
    progress(&format!(
        "{} {name}: {} clients, {:.1} s warm-up + {:.1} s",
        env.backend.name(),
        plan.clients,
        plan.warmup.as_secs_f64(),
        plan.duration.as_secs_f64()
    ));
    let start = server.rss_kib();
    let reset = server.reset_peak();
    let cpu_before = server.cpu_times();
    let stats = client::run_http(server.addr, plan, body).await?;
    let mut row = Row::from_stats(&stats, plan.clients);
    if let (Some((u0, s0)), Some((u1, s1))) = (cpu_before, server.cpu_times())
        && stats.ok > 0
    {
        // The warm-up's requests are not counted: its CPU share is taken out.
        let measured = plan.duration.as_secs_f64() / (plan.duration + plan.warmup).as_secs_f64();
        let per = |d: Duration| d.as_secs_f64() * measured * 1e6 / stats.ok as f64;
        row.cpu_us_per_req = Some((per(u1 - u0), per(s1 - s0)));
    }
    row.peak_rss_mib = server.peak_rss_kib().map(|k| k as f64 / 1024.0);
    row.start_rss_mib = start.map(|k| k as f64 / 1024.0);
    if env.settle > Duration::ZERO {
        tokio::time::sleep(env.settle).await;
        row.settled_rss_mib = server.rss_kib().map(|k| k as f64 / 1024.0);
    }
    if !reset {
        row.note = Some("peak RSS since server start (clear_refs not writable)".into());
    }
    Ok(row)
}

/// One read workload: check a response and fetch its statements, load the server, then
/// replay the statements directly.
async fn read_workload(env: &Env, opts: &Opts, name: &str, body: BodyFn, plan: Plan) -> Res<Row> {
    let server = env.server()?;
    let mut conn = Conn::connect(server.addr).await?;
    let reply = conn.graphql(body(0), true).await?;
    let json = check_graphql(&reply)?;
    let statements = direct::statements_of(&json)?;
    let begin_read = json
        .pointer("/extensions/sql/transactionControl")
        .and_then(Value::as_array)
        .is_some_and(|c| c.iter().any(|x| x == "begin read"))
        .then_some("begin isolation level repeatable read read only");
    drop(conn);

    let mut row = load_server(env, name, plan, body).await?;
    if env.backend == Backend::Postgres && !opts.no_direct && !statements.is_empty() {
        let db = env.db.as_ref().ok_or("no database")?;
        let script = floor::script(&statements, begin_read);
        let url = db.url.clone();
        let (clients, secs) = (plan.clients, plan.duration.as_secs_f64());
        progress(&format!(
            "postgres {name} floor: pgbench -c {clients}, {secs:.0} s"
        ));
        let tps = tokio::task::spawn_blocking(move || {
            floor::pgbench(&url, &script, clients, secs, &std::env::temp_dir())
        })
        .await?;
        match tps {
            Ok(tps) => row.floor_per_sec = Some(tps),
            Err(e) => progress(&format!("no floor for {name}: {e}")),
        }
    }
    if let Some(pool) = &env.pool
        && !opts.no_direct
        && !statements.is_empty()
    {
        progress(&format!(
            "{} {name} direct: {} statements ({})",
            env.backend.name(),
            statements.len(),
            statements
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let d = direct::run_direct(pool, plan, statements).await?;
        let p50 = d.pct_ms(50.0);
        row.server_over_direct_p50 = (p50 > 0.0).then(|| row.p50_ms / p50);
        row.direct = Some(DirectRow {
            requests_per_sec: d.rps(),
            p50_ms: p50,
            p99_ms: d.pct_ms(99.0),
            statements: d.statements_max,
            rows_per_request: d.mean_bytes(),
        });
    }
    Ok(row)
}

/// The mutation fields the schema has.
async fn mutation_fields(addr: std::net::SocketAddr) -> Res<Vec<Value>> {
    let mut conn = Conn::connect(addr).await?;
    let q = "{ __schema { mutationType { fields { name args { name type { kind name ofType \
             { kind name ofType { kind name ofType { kind name } } } } } } } } }";
    let reply = conn.graphql(query_body(q), false).await?;
    let json = check_graphql(&reply)?;
    Ok(json
        .pointer("/data/__schema/mutationType/fields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// A GraphQL type reference (`[ProductInput!]!`) from introspection.
fn type_ref(t: &Value) -> Option<String> {
    let kind = t.get("kind")?.as_str()?;
    match kind {
        "NON_NULL" => Some(format!("{}!", type_ref(t.get("ofType")?)?)),
        "LIST" => Some(format!("[{}]", type_ref(t.get("ofType")?)?)),
        _ => Some(t.get("name")?.as_str()?.to_owned()),
    }
}

fn field<'a>(fields: &'a [Value], name: &str) -> Option<&'a Value> {
    fields
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some(name))
}

async fn create_order_workload(env: &Env, plan: Plan) -> Res<Row> {
    let server = env.server()?;
    let users = env.size.users.max(1);
    let products = env.size.products.max(3);
    // Three distinct products per order, walking the catalogue so that each product's stock
    // (1,000 or more) lasts: 3 units per request spread over all products.
    let body: BodyFn = Arc::new(move |i| {
        let user = 1 + (i.wrapping_mul(7919) % users);
        let p: Vec<u64> = (0..3)
            .map(|k| 1 + (i.wrapping_mul(3).wrapping_add(k) % products))
            .collect();
        query_body(&format!(
            "mutation {{ createOrder(input: {{ userId: \"{user}\", items: [\
             {{ productId: \"{}\", quantity: 1 }}, {{ productId: \"{}\", quantity: 1 }}, \
             {{ productId: \"{}\", quantity: 1 }}] }}) {{ id totalAmount }} }}",
            p[0], p[1], p[2]
        ))
    });
    let mut conn = Conn::connect(server.addr).await?;
    check_graphql(&conn.graphql(body(u64::MAX / 2), false).await?)?;
    drop(conn);
    load_server(env, "create-order", plan, body).await
}

/// 1,000 sign-ups (`createUser`, so 1,000 argon2id hashes) sent by `clients` connections:
/// their rate and latency, the server's peak RSS during them, and its RSS once they are done
/// (hashing memory must be bounded and must not stay behind).
async fn sign_up_workload(env: &Env, clients: usize) -> Res<Row> {
    const N: u64 = 1000;
    let server = env.server()?;
    let addr = server.addr;
    let reset = server.reset_peak();
    let before = server.rss_kib();
    progress(&format!(
        "{} sign-ups: {N} createUser calls from {clients} clients",
        env.backend.name()
    ));
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let mut conn = Conn::connect(addr).await?;
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut ms = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= N {
                    return Ok::<_, BoxError>(ms);
                }
                let body = query_body(&format!(
                    "mutation {{ createUser(input: {{ email: \"bench-signup-{i}@example.com\", \
                     username: \"bench_signup_{i}\", password: \"correct horse battery\" }}) {{ id }} }}"
                ));
                let t = Instant::now();
                let reply = conn.graphql(body, false).await?;
                check_graphql(&reply)?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    let mut ms = Vec::new();
    for t in tasks {
        ms.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p / 100.0).round() as usize];
    let after = server.rss_kib();
    let mib = |k: Option<u64>| k.map_or("?".to_owned(), |k| format!("{:.0}", k as f64 / 1024.0));
    Ok(Row {
        workload: "sign-ups".to_owned(),
        clients,
        requests: ms.len() as u64,
        requests_per_sec: ms.len() as f64 / secs,
        p50_ms: pct(50.0),
        p99_ms: pct(99.0),
        statements_per_request: f64::NAN,
        response_bytes: f64::NAN,
        peak_rss_mib: server.peak_rss_kib().map(|k| k as f64 / 1024.0),
        note: Some(format!(
            "RSS {} MiB before, {} MiB after the {N} sign-ups{}",
            mib(before),
            mib(after),
            if reset { "" } else { " (peak since start)" }
        )),
        ..Row::default()
    })
}

/// Imports of 10,000 products, one at a time: even runs a new set of SKUs (inserts), odd runs
/// the previous set again (updates).
async fn import_workload(env: &Env, opts: &Opts, field_def: &Value) -> Res<Vec<Row>> {
    const N: usize = 10_000;
    let server = env.server()?;
    let args = field_def
        .get("args")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let arg = args
        .iter()
        .find(|a| a.get("name").and_then(Value::as_str) == Some("products"))
        .or_else(|| args.first())
        .ok_or("importProducts has no arguments")?;
    let arg_name = arg
        .get("name")
        .and_then(Value::as_str)
        .ok_or("argument without a name")?;
    let arg_type = arg
        .get("type")
        .and_then(type_ref)
        .ok_or("cannot read the argument's type")?;
    let query = format!(
        "mutation Import($products: {arg_type}) {{ importProducts({arg_name}: $products) {{ inserted updated }} }}"
    );
    let mut rows = Vec::new();
    let mut conn = Conn::connect(server.addr).await?;
    for run in 0..opts.import_runs.max(1) {
        let set = run / 2;
        let products: Vec<Value> = (0..N)
            .map(|j| {
                json!({
                    "name": format!("Bench product {set}-{j}"),
                    "sku": format!("BENCH-{set}-{j:05}"),
                    "price": "12.50",
                    "stockQuantity": 100 + (j % 50),
                })
            })
            .collect();
        let body: Bytes = query_body_with(&query, json!({ "products": products }));
        let body_len = body.len();
        let reset = server.reset_peak();
        let started = Instant::now();
        let reply = conn.graphql(body, false).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut row = Row {
            workload: format!("import #{}", run + 1),
            clients: 1,
            requests: 1,
            p50_ms: ms,
            p99_ms: ms,
            requests_per_sec: 1000.0 / ms,
            statements_per_request: reply.statements.unwrap_or(0) as f64,
            statements_min: reply.statements.unwrap_or(0),
            statements_max: reply.statements.unwrap_or(0),
            response_bytes: reply.body.len() as f64,
            peak_rss_mib: server.peak_rss_kib().map(|k| k as f64 / 1024.0),
            ..Row::default()
        };
        match check_graphql(&reply) {
            Ok(json) => {
                let r = json.pointer("/data/importProducts");
                let get = |k: &str| {
                    r.and_then(|r| r.get(k))
                        .and_then(Value::as_i64)
                        .unwrap_or(-1)
                };
                row.note = Some(format!(
                    "{} products ({} KiB request): {} inserted, {} updated{}",
                    thousands(N as u64),
                    body_len / 1024,
                    get("inserted"),
                    get("updated"),
                    if reset { "" } else { "; peak RSS since start" }
                ));
            }
            Err(e) => {
                row.requests = 0;
                row.errors = 1;
                row.note = Some(e.to_string());
            }
        }
        progress(&format!(
            "{} import #{}: {ms:.0} ms",
            env.backend.name(),
            run + 1
        ));
        rows.push(row);
    }
    Ok(rows)
}

fn dataset_label(size: &SeedSize) -> String {
    size.label()
}

/// Base data set: every selected workload.
async fn run_base(
    opts: &Opts,
    bin: &Path,
    backend: Backend,
    workloads: &[Workload],
    out: &mut Out,
) -> Res<Vec<Row>> {
    let mut env = Env::start(opts, bin, backend, BASE, 1000).await?;
    let result = run_base_workloads(&env, opts, workloads, out).await;
    env.stop(opts).await;
    let (mut rows, scale_rows) = result?;
    let title = format!(
        "== {}: {} (seeded in {:.1} s); {} clients, {:.0} s per workload, pool {} ==",
        backend.name(),
        BASE.describe(),
        env.seed_secs,
        opts.clients,
        opts.duration,
        opts.pool_size
    );
    for r in rows.iter_mut() {
        r.backend = backend.name();
        r.dataset = dataset_label(&BASE);
    }
    let refs: Vec<&Row> = rows.iter().collect();
    if !opts.observability {
        print_table(out, &title, &refs);
    }
    rows.extend(scale_rows);
    Ok(rows)
}

async fn run_base_workloads(
    env: &Env,
    opts: &Opts,
    workloads: &[Workload],
    out: &mut Out,
) -> Res<(Vec<Row>, Vec<Row>)> {
    let plan = plan_of(opts, opts.clients);
    let mut rows = Vec::new();
    if opts.observability {
        observability(env, opts, workloads, out).await?;
        return Ok((rows, Vec::new()));
    }
    for &w in workloads.iter().filter(|w| w.is_read()) {
        client::as_customer(w == Workload::MyOrders);
        let result = read_workload(env, opts, w.name(), read_body(w, &env.size), plan).await;
        client::as_customer(false);
        match result {
            Ok(mut row) => {
                row.workload = w.name().to_owned();
                row.section = "base";
                rows.push(row);
            }
            Err(e) => out.fail(format!("{} {}: {e}", env.backend.name(), w.name())),
        }
    }
    // The 1x point of the scale series, with the scale clients, before writes change the data.
    let mut scale_rows = Vec::new();
    if opts.scale {
        scale_rows = scale_shapes(env, opts, 1, out).await;
    }
    let writes: Vec<Workload> = workloads.iter().copied().filter(|w| !w.is_read()).collect();
    if !writes.is_empty() {
        let fields = match mutation_fields(env.server()?.addr).await {
            Ok(f) => f,
            Err(e) => {
                out.fail(format!("{} introspection: {e}", env.backend.name()));
                Vec::new()
            }
        };
        for w in writes {
            let fname = match w {
                Workload::CreateOrder => "createOrder",
                Workload::SignUps => "createUser",
                _ => "importProducts",
            };
            let Some(def) = field(&fields, fname) else {
                let note = format!("skipped: the schema has no mutation {fname}");
                progress(&format!("{} {}: {note}", env.backend.name(), w.name()));
                rows.push(Row {
                    workload: w.name().to_owned(),
                    section: "base",
                    note: Some(note),
                    ..row_nan()
                });
                continue;
            };
            let result = match w {
                Workload::CreateOrder => create_order_workload(env, plan).await.map(|mut r| {
                    r.workload = w.name().to_owned();
                    vec![r]
                }),
                Workload::SignUps => sign_up_workload(env, plan.clients).await.map(|r| vec![r]),
                _ => import_workload(env, opts, def).await,
            };
            match result {
                Ok(new) => rows.extend(new.into_iter().map(|mut r| {
                    r.section = "base";
                    r
                })),
                Err(e) => out.fail(format!("{} {}: {e}", env.backend.name(), w.name())),
            }
        }
    }
    Ok((rows, scale_rows))
}

/// `--observability`: each read workload on a quiet server and on one logging and keeping
/// metrics as in production, in alternating rounds on the same data; prints both rates and
/// the cost.
async fn observability(env: &Env, opts: &Opts, workloads: &[Workload], out: &mut Out) -> Res<()> {
    let db = env.db.as_ref().ok_or("no database")?;
    let bin = env.bin.clone();
    let max_page_size = 1000;
    let quiet = Server::start(
        &bin,
        db,
        &ServerConfig {
            pool_size: opts.pool_size,
            max_page_size,
            env: vec![
                ("EAGERQL_LOG", "off".into()),
                ("EAGERQL_METRICS", "false".into()),
            ],
        },
    )
    .await?;
    let observed = Server::start(
        &bin,
        db,
        &ServerConfig {
            pool_size: opts.pool_size,
            max_page_size,
            env: observed_env(),
        },
    )
    .await?;
    // A scraper, as Prometheus would: /metrics every second.
    let scrape_addr = observed.addr;
    let scraper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(mut conn) = Conn::connect(scrape_addr).await {
                let _ = conn
                    .send(hyper::Method::GET, "/metrics", Bytes::new(), false)
                    .await;
            }
        }
    });
    let rounds = opts.rounds.max(1);
    let plan = Plan {
        clients: opts.clients.max(1),
        warmup: Duration::from_secs_f64((opts.warmup / rounds as f64).max(0.2)),
        duration: Duration::from_secs_f64((opts.duration / rounds as f64).max(0.5)),
    };
    let mut text = format!(
        "\n== {}: logging and metrics cost; {} clients, {} rounds of {:.1} s per server ==\n\
         {:<16} {:>12} {:>12} {:>8} {:>10} {:>10} {:>8}   rounds (quiet / observed req/s)\n",
        env.backend.name(),
        plan.clients,
        rounds,
        plan.duration.as_secs_f64(),
        "workload",
        "quiet req/s",
        "observed",
        "cost",
        "cpu us/req",
        "observed",
        "cost"
    );
    for &w in workloads.iter().filter(|w| w.is_read()) {
        client::as_customer(w == Workload::MyOrders);
        let body = read_body(w, &env.size);
        let (mut q, mut o) = (Vec::new(), Vec::new());
        // Server CPU time and requests served, per server.
        let (mut cpu_q, mut cpu_o) = ((Duration::ZERO, 0u64), (Duration::ZERO, 0u64));
        for round in 0..rounds {
            let order = if round % 2 == 0 {
                [(&quiet, true), (&observed, false)]
            } else {
                [(&observed, false), (&quiet, true)]
            };
            for (server, is_quiet) in order {
                let before = server.cpu_time();
                let stats = client::run_http(server.addr, plan, body.clone()).await?;
                if let (Some(b), Some(a)) = (before, server.cpu_time()) {
                    let cpu = if is_quiet { &mut cpu_q } else { &mut cpu_o };
                    // The warm-up's requests are not counted: its CPU share is taken out.
                    let measured =
                        plan.duration.as_secs_f64() / (plan.duration + plan.warmup).as_secs_f64();
                    cpu.0 += (a - b).mul_f64(measured);
                    cpu.1 += stats.ok;
                }
                if stats.errors > 0 {
                    out.fail(format!(
                        "{} {}: {} errors",
                        env.backend.name(),
                        w.name(),
                        stats.errors
                    ));
                }
                if is_quiet {
                    q.push(stats.rps())
                } else {
                    o.push(stats.rps())
                }
            }
        }
        client::as_customer(false);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (mq, mo) = (mean(&q), mean(&o));
        let cost = if mq > 0.0 {
            (1.0 - mo / mq) * 100.0
        } else {
            f64::NAN
        };
        let per_req = |(cpu, n): (Duration, u64)| {
            if n > 0 {
                cpu.as_secs_f64() * 1e6 / n as f64
            } else {
                f64::NAN
            }
        };
        let (uq, uo) = (per_req(cpu_q), per_req(cpu_o));
        let per_round: Vec<String> = q
            .iter()
            .zip(&o)
            .map(|(a, b)| format!("{a:.0}/{b:.0}"))
            .collect();
        progress(&format!(
            "{} {}: quiet {mq:.0}, observed {mo:.0} req/s",
            env.backend.name(),
            w.name()
        ));
        text.push_str(&format!(
            "{:<16} {:>12.0} {:>12.0} {:>7.1}% {:>10.0} {:>10.0} {:>7.1}%   {}\n",
            w.name(),
            mq,
            mo,
            cost,
            uq,
            uo,
            (uo / uq - 1.0) * 100.0,
            per_round.join(" ")
        ));
    }
    scraper.abort();
    drop(quiet);
    drop(observed);
    out.print(&text);
    Ok(())
}

/// The observed server's settings: as in production, or `BENCH_OBSERVED_ENV`
/// (`K=V,K=V`, e.g. the quiet server's own for an A/A run that shows the method's noise).
fn observed_env() -> Vec<(&'static str, String)> {
    const NAMES: [&str; 4] = [
        "EAGERQL_LOG",
        "EAGERQL_LOG_FORMAT",
        "EAGERQL_METRICS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ];
    match std::env::var("BENCH_OBSERVED_ENV") {
        Ok(spec) if !spec.is_empty() => spec
            .split(',')
            .filter_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                let name = NAMES.iter().find(|n| **n == k.trim())?;
                Some((*name, v.trim().to_owned()))
            })
            .collect(),
        _ => vec![
            ("EAGERQL_LOG", "info".into()),
            ("EAGERQL_LOG_FORMAT", "json".into()),
            ("EAGERQL_METRICS", "true".into()),
        ],
    }
}

fn row_nan() -> Row {
    Row {
        requests_per_sec: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        statements_per_request: f64::NAN,
        response_bytes: f64::NAN,
        ..Row::default()
    }
}

/// The dashboard and deep shapes over `factor` x the base selection.
async fn scale_shapes(env: &Env, opts: &Opts, factor: u64, out: &mut Out) -> Vec<Row> {
    let plan = plan_of(opts, opts.scale_clients);
    let wanted = selected(opts).unwrap_or_default();
    let mut rows = Vec::new();
    for (w, users) in [
        (Workload::Dashboard, 1000 * factor),
        (Workload::Deep, 100 * factor),
    ] {
        if !wanted.contains(&w) {
            continue;
        }
        let body = match w {
            Workload::Dashboard => fixed(&dashboard_query(users)),
            _ => fixed(&deep_query(users)),
        };
        let label = format!("{} x{factor}", w.name());
        match read_workload(env, opts, &label, body, plan).await {
            Ok(mut row) => {
                row.workload = w.name().to_owned();
                row.section = "scale";
                row.backend = env.backend.name();
                row.dataset = dataset_label(&env.size);
                row.parents = Some(users);
                rows.push(row);
            }
            Err(e) => out.fail(format!("{} {label}: {e}", env.backend.name())),
        }
    }
    rows
}

async fn run_scale(opts: &Opts, bin: &Path, backend: Backend, out: &mut Out) -> Vec<Row> {
    let mut rows = Vec::new();
    for factor in [10u64, 100] {
        let size = SeedSize {
            users: BASE.users * factor,
            ..BASE
        };
        match Env::start(opts, bin, backend, size, 1_000_000).await {
            Ok(mut env) => {
                rows.extend(scale_shapes(&env, opts, factor, out).await);
                env.stop(opts).await;
            }
            Err(e) => out.fail(format!("{} scale x{factor}: {e}", backend.name())),
        }
    }
    rows
}

async fn run_big(opts: &Opts, bin: &Path, out: &mut Out) -> Res<Vec<Row>> {
    let mut env = Env::start(opts, bin, Backend::Postgres, BIG, 1000).await?;
    let mut rows = Vec::new();
    for (name, query) in [
        ("top-customers", TOP_CUSTOMERS),
        ("recent-completed", RECENT_COMPLETED),
    ] {
        let result = read_workload(
            &env,
            opts,
            &format!("{name} (big)"),
            fixed(query),
            plan_of(opts, opts.scale_clients),
        )
        .await;
        match result {
            Ok(mut row) => {
                row.workload = name.into();
                row.section = "big";
                row.backend = Backend::Postgres.name();
                row.dataset = dataset_label(&BIG);
                rows.push(row);
            }
            Err(e) => out.fail(format!("postgres big {name}: {e}")),
        }
    }
    env.stop(opts).await;
    let title = format!(
        "== postgres big: {} (seeded in {:.1} s); {} clients, {:.0} s ==",
        BIG.describe(),
        env.seed_secs,
        opts.scale_clients,
        opts.duration
    );
    print_table(out, &title, &rows.iter().collect::<Vec<_>>());
    Ok(rows)
}

fn selected(opts: &Opts) -> Res<Vec<Workload>> {
    match &opts.workloads {
        Some(list) => Workload::parse_list(list),
        None => Ok(Workload::ALL.to_vec()),
    }
}

async fn run(opts: Opts) -> Res<Out> {
    let workloads = selected(&opts)?;
    let bin: PathBuf = setup::server_binary()?;
    let backends = match opts.backend {
        BackendSel::Sqlite => vec![Backend::Sqlite],
        BackendSel::Postgres => vec![Backend::Postgres],
        BackendSel::Both => vec![Backend::Sqlite, Backend::Postgres],
    };
    let mut out = Out {
        json: opts.json,
        rows: Vec::new(),
        failures: Vec::new(),
    };
    progress(&format!(
        "server binary {}; workloads: {}",
        bin.display(),
        workloads
            .iter()
            .map(|w| w.name())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for backend in backends {
        match run_base(&opts, &bin, backend, &workloads, &mut out).await {
            Ok(rows) => out.rows.extend(rows),
            Err(e) => out.fail(format!("{}: {e}", backend.name())),
        }
        if opts.scale {
            let more = run_scale(&opts, &bin, backend, &mut out).await;
            out.rows.extend(more);
            let rows: Vec<&Row> = out
                .rows
                .iter()
                .filter(|r| r.section == "scale" && r.backend == backend.name())
                .collect();
            let title = format!(
                "== {} scale: the same shapes on 1x/10x/100x the users ({} users per 1x), \
                 {} client(s), {:.0} s each ==",
                backend.name(),
                thousands(BASE.users),
                opts.scale_clients,
                opts.duration
            );
            print_scale_table(&out, &title, &rows);
        }
        if opts.big && backend == Backend::Postgres {
            match run_big(&opts, &bin, &mut out).await {
                Ok(rows) => out.rows.extend(rows),
                Err(e) => out.fail(format!("postgres big: {e}")),
            }
        }
    }
    if opts.big && opts.backend == BackendSel::Sqlite {
        progress("--big runs on PostgreSQL only: skipped");
    }
    Ok(out)
}

fn main() -> Result<(), BoxError> {
    let opts = Opts::parse();
    if opts.clients == 0 || opts.clients > 1024 {
        return Err("--clients must be 1 to 1024".into());
    }
    let json_mode = opts.json;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = runtime.block_on(run(opts))?;
    if json_mode {
        let doc = json!({ "results": out.rows, "failures": out.failures });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    }
    if out.failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} part(s) failed: {}",
            out.failures.len(),
            out.failures.join("; ")
        )
        .into())
    }
}
