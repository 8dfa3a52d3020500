//! Test harness: a fresh database per test, the app built exactly as in production, requests
//! sent through the router without a socket, and statement counts read from each response.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{DateTime, Utc};
use clap::Parser;
use eagerql::auth::Keys;
use eagerql::config::ServeConfig;
use eagerql::db::seed::{self, SeedSpec};
use eagerql::db::session::Arg;
use eagerql::db::{Backend, Db, Session, StatementHook};
use eagerql::model::Role;
use eagerql::server::app::AppState;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The backend under test.
pub fn backend() -> Backend {
    match std::env::var("EAGERQL_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A database that exists for one test and is removed afterwards.
pub struct TestDb {
    /// Its URL.
    pub url: String,
    name: String,
}

impl TestDb {
    /// Creates an empty database on the backend under test.
    pub async fn create() -> TestDb {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "eagerql_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        match backend() {
            Backend::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                TestDb {
                    url: format!("sqlite:{}", path.display()),
                    name: path.display().to_string(),
                }
            }
            Backend::Postgres => {
                let admin = sqlx::PgPool::connect(&admin_url())
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                let base = admin_url();
                let (head, query) = match base.split_once('?') {
                    Some((h, q)) => (h.to_owned(), format!("?{q}")),
                    None => (base.clone(), String::new()),
                };
                let root = head
                    .rsplit_once('/')
                    .map(|(r, _)| r.to_owned())
                    .unwrap_or(head);
                TestDb {
                    url: format!("{root}/{name}{query}"),
                    name,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match backend() {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.name));
                }
            }
            Backend::Postgres => {
                let name = self.name.clone();
                // Drop runs inside the test's runtime: use a thread with its own.
                let _ = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        rt.block_on(async {
                            if let Ok(admin) = sqlx::PgPool::connect(&admin_url()).await {
                                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                                    "drop database if exists {name} with (force)"
                                )))
                                .execute(&admin)
                                .await;
                                admin.close().await;
                            }
                        });
                    }
                })
                .join();
            }
        }
    }
}

#[derive(Parser)]
#[command(args_override_self = true)]
struct ServeArgs {
    #[command(flatten)]
    config: ServeConfig,
}

/// A running app on its own database.
pub struct TestApp {
    /// The router, called without a socket.
    pub router: Router,
    /// The pool.
    pub db: Db,
    /// The app state (configuration, schema, pool).
    pub state: AppState,
    /// The access token [`TestApp::gql`] sends: an administrator's (user 1), so the suite's
    /// answers are today's; [`TestApp::gql_as`] sends another, or none.
    pub token: String,
    _db: TestDb,
}

/// A GraphQL response.
#[derive(Debug)]
pub struct Gql {
    /// HTTP status.
    pub status: StatusCode,
    /// The JSON body.
    pub body: Value,
    /// The statement count the server reported.
    pub statements: usize,
}

impl Gql {
    /// `data`, after checking that there were no errors.
    pub fn data(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors: {}",
            self.body
        );
        &self.body["data"]
    }

    /// The SQL texts of its statements, in order (`extensions.sql`; none when absent).
    pub fn sql_texts(&self) -> Vec<String> {
        self.body["extensions"]["sql"]["statements"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|s| s["sql"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The `extensions.code` of the first error.
    pub fn error_code(&self) -> &str {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
    }

    /// The message of the first error.
    pub fn error_message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }
}

/// A fresh, empty directory for one test's files.
pub fn scratch_dir(what: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("eagerql-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// The server settings `args` give (after the program name), as `eagerql serve` reads them.
pub fn serve_config(args: &[&str]) -> ServeConfig {
    let mut all = vec!["eagerql"];
    all.extend_from_slice(args);
    ServeArgs::try_parse_from(all).expect("settings").config
}

/// `eagerql serve`'s start-up ([`eagerql::server::app::App::build`]) on the database at `url`, without
/// demo data, on a free port, with `extra` settings.
pub async fn build_app(
    url: &str,
    extra: &[&str],
) -> Result<eagerql::server::app::App, eagerql::server::app::BoxError> {
    let mut args = vec![
        "--database-url",
        url,
        "--demo-data",
        "false",
        "--bind",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    eagerql::server::app::App::build(serve_config(&args)).await
}

/// Starts the app on a fresh, migrated, empty database with the test settings (strict mode,
/// SQL debug allowed) plus `extra` command-line settings.
pub async fn spawn_app_with(extra: &[&str]) -> TestApp {
    spawn_app_with_hook(extra, None).await
}

/// [`spawn_app_with`], calling `hook` after every statement of every request.
pub async fn spawn_app_with_hook(extra: &[&str], hook: Option<StatementHook>) -> TestApp {
    let tdb = TestDb::create().await;
    let mut args = vec![
        "eagerql".to_owned(),
        "--database-url".to_owned(),
        tdb.url.clone(),
        "--demo-data".to_owned(),
        "false".to_owned(),
        "--strict".to_owned(),
        "true".to_owned(),
        "--debug-sql".to_owned(),
        "on".to_owned(),
        "--pool-size".to_owned(),
        "5".to_owned(),
        "--pool-timeout-secs".to_owned(),
        "10".to_owned(),
        "--bind".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let config = ServeArgs::try_parse_from(args)
        .expect("test settings")
        .config;
    let db = Db::connect(&config.db.database_url, &config.db.pool())
        .await
        .expect("connect");
    db.migrate().await.expect("migrate");
    let keys = Keys::for_server(&db, &config.auth)
        .await
        .unwrap_or_else(|e| panic!("keys: {}", e.detail()));
    let state = AppState::new(db.clone(), config, keys)
        .expect("state")
        .with_statement_hook(hook);
    let token = state.keys.issue(1, Role::Admin).expect("admin token").0;
    TestApp {
        router: eagerql::server::http::router(state.clone()),
        state,
        db,
        token,
        _db: tdb,
    }
}

impl TestApp {
    /// The URL of the app's database.
    pub fn database_url(&self) -> &str {
        &self._db.url
    }
}

/// [`spawn_app_with`] without extra settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

impl TestApp {
    /// The same app (same database and pool) with `hook` called after every statement.
    pub fn with_hook(mut self, hook: StatementHook) -> TestApp {
        self.state = self.state.with_statement_hook(Some(hook));
        self.router = eagerql::server::http::router(self.state.clone());
        self
    }

    /// Seeds deterministic data.
    pub async fn seed(
        &self,
        users: u64,
        orders_per_user: u64,
        items_per_order: u64,
        products: u64,
    ) {
        let spec = SeedSpec {
            users,
            orders_per_user,
            items_per_order,
            products,
        };
        seed::seed(&Session::unmetered(self.db.clone()), spec, |_| {})
            .await
            .unwrap_or_else(|e| panic!("seed: {}", e.detail()));
    }

    /// Sends a raw HTTP request; the body as bytes, as sent.
    pub async fn send_bytes(
        &self,
        req: Request<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let resp = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("router never fails");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, bytes.to_vec())
    }

    /// Sends a raw HTTP request; the body as text.
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let (status, headers, bytes) = self.send_bytes(req).await;
        (
            status,
            headers,
            String::from_utf8(bytes).expect("utf-8 body"),
        )
    }

    /// An access token for user `id` with `role`, signed by this app.
    pub fn token_for(&self, id: i64, role: Role) -> String {
        self.state.keys.issue(id, role).expect("token").0
    }

    /// POSTs a GraphQL request with variables, as the administrator of [`TestApp::token`].
    pub async fn gql_vars(&self, query: &str, variables: Value) -> Gql {
        self.gql_as(Some(&self.token), query, variables).await
    }

    /// POSTs a GraphQL request with variables and the access token `token` (`None`:
    /// anonymous).
    pub async fn gql_as(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        let body = json!({ "query": query, "variables": variables });
        let mut req = Request::post("/graphql")
            .header("content-type", "application/json")
            .header("accept", "application/graphql-response+json")
            .header("x-eagerql-debug", "sql");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req.body(Body::from(body.to_string())).expect("request");
        let (status, headers, text) = self.send(req).await;
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        let statements = headers
            .get("x-eagerql-sql-statements")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| usize::from_str(v).ok())
            .expect("statement count header");
        if let Some(n) = body["extensions"]["sql"]["count"].as_u64() {
            assert_eq!(n as usize, statements, "header and extensions disagree");
        }
        Gql {
            status,
            body,
            statements,
        }
    }

    /// POSTs a GraphQL request.
    pub async fn gql(&self, query: &str) -> Gql {
        self.gql_vars(query, json!({})).await
    }
}

/// Runs one statement directly (test set-up).
pub async fn exec(app: &TestApp, sql: &str, args: Vec<Arg>) {
    Session::unmetered(app.db.clone())
        .execute("test.exec", sql.to_owned(), args)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", e.detail()));
}

/// Runs one query directly and gives the integer in its first column of its first row.
pub async fn scalar_i64(app: &TestApp, sql: &str) -> i64 {
    Session::unmetered(app.db.clone())
        .fetch("test.scalar", sql.to_owned(), vec![], |r| r.i64(0))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", e.detail()))
        .first()
        .copied()
        .unwrap_or_else(|| panic!("{sql}: no row"))
}

/// Inserts an order with the given status, total and creation time.
pub async fn insert_order(app: &TestApp, user: i64, status: &str, cents: i64, at: DateTime<Utc>) {
    let money = match backend() {
        eagerql::db::Backend::Postgres => "$3::int8::numeric / 100",
        eagerql::db::Backend::Sqlite => "$3",
    };
    exec(
        app,
        &format!("insert into orders (user_id, status, total_amount, created_at) values ($1, $2, {money}, $4)"),
        vec![Arg::I64(user), Arg::Text(status.into()), Arg::I64(cents), Arg::Ts(at)],
    )
    .await;
}

/// Marks a user inactive.
pub async fn deactivate(app: &TestApp, user: i64) {
    let value = match backend() {
        eagerql::db::Backend::Postgres => "false",
        eagerql::db::Backend::Sqlite => "0",
    };
    exec(
        app,
        &format!("update users set is_active = {value} where id = $1"),
        vec![Arg::I64(user)],
    )
    .await;
}

/// An HTTP/1.1 request to a running server: `(status, headers, body)`.
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("an HTTP/1.1 connection");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", addr.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(http_body_util::Full::new(axum::body::Bytes::from(body)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("an answer");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        headers,
        String::from_utf8(bytes.to_vec()).expect("utf-8 body"),
    )
}

/// A GraphQL POST to a running server, with an optional bearer token.
pub async fn http_gql(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Gql {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(auth) = &auth {
        headers.push(("authorization", auth));
    }
    let body = json!({ "query": query, "variables": variables }).to_string();
    let (status, h, text) = http_request(addr, "POST", "/graphql", &headers, body).await;
    let statements = h
        .get("x-eagerql-sql-statements")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text}"));
    Gql {
        status,
        body,
        statements,
    }
}

/// `eagerql serve` as its own process (the built binary), killed when dropped.
pub struct ServerProcess {
    /// Where it serves.
    pub addr: std::net::SocketAddr,
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Starts the server on the database at `url` on a free port, with `args` after `serve`
    /// and `env` set, and waits until it serves.
    pub fn start(url: &str, args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_eagerql"));
        cmd.arg("serve")
            .args(["--database-url", url, "--bind", "127.0.0.1:0"])
            .args(["--log-format", "json"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start eagerql serve");
        let stderr = child.stderr.take().expect("stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(t) = &tx
                    && let Ok(v) = serde_json::from_str::<Value>(&line)
                    && let Some(addr) = v["addr"].as_str()
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with("serving GraphQL"))
                {
                    let _ = t.send(addr.to_owned());
                    tx = None;
                }
                lines.lock().expect("log").push(line);
            }
        });
        let addr = match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(addr) => addr.parse().expect("the address it serves at"),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "eagerql serve did not start:\n{}",
                    log.lock().expect("log").join("\n")
                );
            }
        };
        ServerProcess { addr, child, log }
    }

    /// The lines it has written to stderr so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log").clone()
    }

    /// A GraphQL POST to this server.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        http_gql(self.addr, token, query, variables).await
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
