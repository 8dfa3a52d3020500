//! Load benchmark: seeds a fresh database with `eagerql seed`, starts the release server
//! against it, drives it over HTTP with concurrent clients, and prints per workload the
//! request rate, p50/p99 latency, SQL statements per request, response bytes and the server's
//! peak memory (VmHWM). Beside each read workload it replays the same SQL statements straight
//! through sqlx ("direct": in the same read transaction, one connection held per client) to
//! show how much the server adds on top of a bare client's work, and on PostgreSQL runs them
//! under pgbench (the floor).
//!
//! Run it with `scripts/bench [--help]` (which builds `target/release/eagerql` first), or
//! `cargo bench --bench load -- [options]`.

#[path = "load/client.rs"]
mod client;
#[path = "load/direct.rs"]
mod direct;
#[path = "load/floor.rs"]
mod floor;
#[path = "load/live.rs"]
mod live;
#[path = "load/observe.rs"]
mod observe;
#[path = "load/report.rs"]
mod report;
#[path = "load/setup.rs"]
mod setup;
#[path = "load/workloads.rs"]
mod workloads;
#[path = "load/writes.rs"]
mod writes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hyper::body::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use client::{BodyFn, Conn, Plan, Stats, check_graphql, query_body, query_body_with};
use direct::Pool;
use observe::*;
use report::*;
use setup::{Backend, Database, SeedSize, Server, ServerConfig, thousands};
use workloads::*;
use writes::*;

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
    /// Server pool size (EAGERQL_POOL_SIZE); the direct replay holds a connection per client.
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
    /// Instead of the workloads: live queries under writes, with this many subscriptions
    /// (e.g. 10000); see --sockets, --write-rate and --duration.
    #[arg(long, default_value_t = 0)]
    subscriptions: usize,
    /// WebSocket connections the subscriptions are spread over.
    #[arg(long, default_value_t = 100)]
    sockets: usize,
    /// Writes per second during a --subscriptions run.
    #[arg(long, default_value_t = 100.0)]
    write_rate: f64,
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
    /// Skip the direct sqlx replay (and, with it, the floor).
    #[arg(long)]
    no_direct: bool,
    /// PostgreSQL read workloads: measure the server and its floor this many times each,
    /// alternating which goes first; the table shows the median round (by req/s over the
    /// floor) and a note lists every round. The floor moves by up to a third between runs on
    /// a shared machine, so a share of it is judged over several rounds.
    #[arg(long, default_value_t = 1)]
    floor_rounds: usize,
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
    let postgres = env.backend == Backend::Postgres;
    let db_before = postgres.then(setup::Server::postgres_cpu).flatten();
    let stats = client::run_http(server.addr, plan, body).await?;
    let mut row = Row::from_stats(&stats, plan.clients);
    if let (Some(d0), Some(d1)) = (
        db_before,
        postgres.then(setup::Server::postgres_cpu).flatten(),
    ) && stats.ok > 0
    {
        let measured = plan.duration.as_secs_f64() / (plan.duration + plan.warmup).as_secs_f64();
        row.db_cpu_us_per_req = Some((d1 - d0).as_secs_f64() * measured * 1e6 / stats.ok as f64);
    }
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
        .then_some(match env.backend {
            Backend::Postgres => "begin isolation level repeatable read read only",
            Backend::Sqlite => "begin",
        });
    drop(conn);

    let with_floor = env.backend == Backend::Postgres && !opts.no_direct && !statements.is_empty();
    if !with_floor {
        let row = load_server(env, name, plan, body).await?;
        return direct_replay(env, opts, name, plan, (statements, begin_read), row).await;
    }
    let script = floor::script(&statements, begin_read);
    let rounds = opts.floor_rounds.max(1);
    let mut measured = Vec::with_capacity(rounds);
    for round in 0..rounds {
        // Alternating which goes first, so a drift of the machine during the run weighs on
        // both alike.
        let (row, floor) = if round % 2 == 0 {
            let row = load_server(env, name, plan, body.clone()).await?;
            (row, run_floor(env, name, plan, &script).await?)
        } else {
            let floor = run_floor(env, name, plan, &script).await?;
            (load_server(env, name, plan, body.clone()).await?, floor)
        };
        measured.push((row, floor));
    }
    let share = |(row, floor): &(Row, Option<f64>)| floor.map_or(0.0, |f| row.requests_per_sec / f);
    measured.sort_by(|a, b| share(a).total_cmp(&share(b)));
    let shares: Vec<String> = measured
        .iter()
        .map(|m| format!("{:.0}%", 100.0 * share(m)))
        .collect();
    let (mut row, floor) = measured.swap_remove(measured.len() / 2);
    row.floor_per_sec = floor;
    if rounds > 1 {
        let note = format!(
            "srv/floor over {rounds} rounds: {} (the median shown)",
            shares.join(", ")
        );
        row.add_note(note);
    }
    direct_replay(env, opts, name, plan, (statements, begin_read), row).await
}

/// The floor of a PostgreSQL workload: `script` under pgbench, as many clients and as long as
/// the server's run; `None` (and a line saying why) when pgbench could not run.
async fn run_floor(env: &Env, name: &str, plan: Plan, script: &str) -> Res<Option<f64>> {
    let db = env.db.as_ref().ok_or("no database")?;
    let (url, script) = (db.url.clone(), script.to_owned());
    let (clients, secs) = (plan.clients, plan.duration.as_secs_f64());
    progress(&format!(
        "postgres {name} floor: pgbench -c {clients}, {secs:.0} s"
    ));
    let tps = tokio::task::spawn_blocking(move || {
        floor::pgbench(&url, &script, clients, secs, &std::env::temp_dir())
    })
    .await?;
    Ok(match tps {
        Ok(tps) => Some(tps),
        Err(e) => {
            progress(&format!("no floor for {name}: {e}"));
            None
        }
    })
}

/// The same statements replayed through sqlx (unless `--no-direct`) in the same transaction
/// (`begin`, when the server opened a read snapshot), beside `row`.
async fn direct_replay(
    env: &Env,
    opts: &Opts,
    name: &str,
    plan: Plan,
    (statements, begin): (Vec<direct::Statement>, Option<&'static str>),
    mut row: Row,
) -> Res<Row> {
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
        let d = direct::run_direct(pool, plan, statements, begin).await?;
        let p50 = d.pct_ms(50.0);
        row.server_over_direct_p50 = (p50 > 0.0).then(|| row.p50_ms / p50);
        if let Some(floor) = row.floor_per_sec.filter(|f| *f > 0.0) {
            let note = format!(
                "the direct replay (a bare sqlx client: same SQL and transaction, no GraphQL, \
                 HTTP or JSON) made {:.0}% of the floor",
                100.0 * d.rps() / floor
            );
            row.add_note(note);
        }
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
    if opts.subscriptions > 0 {
        for backend in backends {
            let mut env = Env::start(&opts, &bin, backend, BASE, 1000).await?;
            let report = live::run(
                env.server()?,
                opts.subscriptions,
                opts.sockets,
                opts.write_rate,
                Duration::from_secs_f64(opts.duration),
            )
            .await;
            env.stop(&opts).await;
            match report {
                Ok(r) => eprintln!("{}", r.print(backend.name())),
                Err(e) => out.fail(format!("{} live: {e}", backend.name())),
            }
        }
        return Ok(out);
    }
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
