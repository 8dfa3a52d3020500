//! The command line: `serve` (the default), `migrate`, `seed` and `schema`.

use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::auth::Keys;
use crate::auth::password::Hasher;
use crate::config::{AuthConfig, DbConfig, ServeConfig};
use crate::db::seed::{self, SeedSpec};
use crate::db::{Db, Session};
use crate::model::Role;
use crate::observe::telemetry;
use crate::server::app::{App, BoxError};
use crate::{graphql, validate};

/// A GraphQL server whose SQL statement count depends only on the shape of the query.
#[derive(Debug, Parser)]
#[command(name = "eagerql", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve GraphQL at /graphql and GraphiQL at / (the default).
    Serve(ServeConfig),
    /// Apply pending database migrations and exit.
    Migrate(DbConfig),
    /// Fill an empty database with deterministic demo data, with bulk statements.
    Seed(SeedArgs),
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Check operations without a database or a server: for each operation of the given
    /// `.graphql` files (fragments may be in other files) and persisted-operation manifests,
    /// whether the server accepts it (with the errors it would give, file and line included)
    /// and the exact number of SQL statements it runs, with its plan. Exits non-zero when an
    /// operation is invalid, refused or over the budget.
    Check(CheckArgs),
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Print an access token for an account (for operators, scripts and benchmarks). It
    /// carries the account's current role and lives `EAGERQL_ACCESS_TOKEN_TTL_SECS`.
    Token(TokenArgs),
    /// Exit 0 when the server at ADDR answers `GET /readyz` with 200 (for container health
    /// checks, where no HTTP client is installed).
    Health {
        /// The server's address.
        #[arg(long, env = "EAGERQL_BIND", default_value = "127.0.0.1:8000")]
        addr: std::net::SocketAddr,
        /// Speak HTTPS (set when the server's `EAGERQL_TLS_CERT` is; the certificate is not
        /// verified, as the check is of this machine's own server).
        #[arg(long = "tls", env = "EAGERQL_TLS_CERT", value_parser = tls_flag,
              num_args = 0..=1, default_missing_value = "true")]
        tls: Option<bool>,
    },
}

/// `eagerql user ...`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. The password is read from `EAGERQL_PASSWORD` or, when that is
    /// unset, from the first line of standard input: never from an argument, which other
    /// users of the machine could see.
    Create(UserCreateArgs),
}

/// Arguments of `eagerql user create`.
#[derive(Debug, Args)]
pub struct UserCreateArgs {
    /// Database and logging.
    #[command(flatten)]
    pub db: DbConfig,
    /// E-mail address (stored lower-case; the sign-in name).
    #[arg(long)]
    pub email: String,
    /// User name.
    #[arg(long)]
    pub username: String,
    /// Make the account an administrator (default: customer).
    #[arg(long)]
    pub admin: bool,
}

/// The output of `eagerql check`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckFormat {
    /// A line per operation, its plan below it, errors as `file:line:column: error: ...`.
    Text,
    /// One JSON report.
    Json,
}

/// Whom `eagerql check` plans operations for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CheckRole {
    /// No token.
    Anonymous,
    /// A signed-in customer.
    Customer,
    /// An administrator.
    Admin,
}

/// Arguments of `eagerql check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `.graphql`/`.gql` files, manifests (`.json`: Apollo's persisted-query-manifest.json,
    /// Relay's persisted_queries.json), or directories to search for both.
    #[arg(required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// Most SQL statements an operation may need (default: the server's
    /// EAGERQL_STATEMENT_BUDGET).
    #[arg(long)]
    pub budget: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
    /// The viewer operations are planned for: permissions depend on it (a customer may not
    /// list users), statement counts do not.
    #[arg(long, value_enum, default_value_t = CheckRole::Customer)]
    pub role: CheckRole,
    /// A JSON file of variables by operation name (`{"UserOrders": {"n": 10}}`). Required
    /// variables an operation is not given get a placeholder of their type, reported.
    #[arg(long)]
    pub variables: Option<std::path::PathBuf>,
    /// The server's settings: the same limits apply as on the server.
    #[command(flatten)]
    pub serve: ServeConfig,
}

/// Runs `eagerql check`; `Ok(false)` when an operation failed the check.
async fn check(args: CheckArgs) -> Result<bool, BoxError> {
    let variables = match &args.variables {
        None => serde_json::Map::new(),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            match serde_json::from_str(&text) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => {
                    return Err(format!(
                        "{}: variables are a JSON object of operation names to objects",
                        path.display()
                    )
                    .into());
                }
            }
        }
    };
    // As on the server, a budget of 0 is no limit.
    let budget = match args.budget {
        Some(0) => None,
        Some(b) => Some(b),
        None => args.serve.budget(),
    }
    .unwrap_or(usize::MAX);
    let keys = Keys::from_secret(&[0; 32], args.serve.auth.tokens()).map_err(|e| e.detail())?;
    let mut serve = args.serve;
    // The documents checked are the ones given, not the server's trusted ones.
    serve.documents.trusted_documents.clear();
    let state = crate::server::state::AppState::new(Db::unconnected(), serve, keys)?;
    let viewer = match args.role {
        CheckRole::Anonymous => crate::model::Viewer::Anonymous,
        CheckRole::Customer => crate::model::Viewer::User {
            id: 1,
            role: Role::Customer,
        },
        CheckRole::Admin => crate::model::Viewer::User {
            id: 1,
            role: Role::Admin,
        },
    };
    let who = crate::documents::predict::Who {
        viewer,
        client: None,
    };
    let collection = crate::documents::check::collect(&args.paths);
    let report = crate::documents::check::run(&state, who, collection, &variables, budget).await;
    match args.format {
        CheckFormat::Text => print!("{}", report.to_text()),
        CheckFormat::Json => println!("{}", report.to_json()),
    }
    Ok(report.ok())
}

/// Arguments of `eagerql token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Database and logging.
    #[command(flatten)]
    pub db: DbConfig,
    /// Token signing and lifetimes.
    #[command(flatten)]
    pub auth: AuthConfig,
    /// The account's id.
    #[arg(long)]
    pub user: i64,
}

/// The password for `user create`: `EAGERQL_PASSWORD`, or standard input's first line.
fn read_password() -> Result<String, BoxError> {
    if let Ok(p) = std::env::var("EAGERQL_PASSWORD") {
        return Ok(p);
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Arguments of `eagerql seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// Database and logging.
    #[command(flatten)]
    pub db: DbConfig,
    /// Users to create.
    #[arg(long, default_value_t = 1000)]
    pub users: u64,
    /// Orders per user.
    #[arg(long, default_value_t = 10)]
    pub orders_per_user: u64,
    /// Items per order (distinct products).
    #[arg(long, default_value_t = 3)]
    pub items_per_order: u64,
    /// Products to create.
    #[arg(long, default_value_t = 500)]
    pub products: u64,
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<(), BoxError> {
    let command = match cli.command {
        Some(c) => c,
        // No subcommand: serve, with settings from the environment.
        None => match Cli::try_parse_from(["eagerql", "serve"])?.command {
            Some(c) => c,
            None => return Err("no command".into()),
        },
    };
    match command {
        Command::Serve(config) => {
            telemetry::init_with_traces(&config.db.log_filter(), config.db.log_format)?;
            let app = App::build(config).await?;
            let addr = app.local_addr()?;
            let scheme = if app.is_tls() { "https" } else { "http" };
            tracing::info!(%addr, "serving GraphQL at {scheme}://{addr}/graphql and GraphiQL at {scheme}://{addr}/");
            let served = app.run_until_stopped().await;
            let _ = tokio::task::spawn_blocking(telemetry::flush_traces).await;
            served?;
        }
        Command::Migrate(db) => {
            telemetry::init(&db.log_filter(), db.log_format);
            let pool = Db::connect(&db.database_url, &db.pool()).await?;
            pool.migrate().await?;
            tracing::info!(backend = pool.backend().name(), "migrations applied");
        }
        Command::Seed(args) => seed_command(args).await?,
        Command::Schema => {
            print!("{}", graphql::sdl());
        }
        Command::Check(args) => {
            if !check(args).await? {
                return Err("some operations failed the check".into());
            }
        }
        Command::User(UserCommand::Create(args)) => create_user(args).await?,
        Command::Token(args) => print_token(args).await?,
        Command::Health { addr, tls } => {
            let status = ready_status(addr, tls.unwrap_or(false)).await?;
            if status != 200 {
                return Err(format!("GET /readyz answered {status}").into());
            }
            println!("ready");
        }
    }
    Ok(())
}

/// `eagerql seed`: a demo data set in an empty database, with a progress bar.
async fn seed_command(args: SeedArgs) -> Result<(), BoxError> {
    telemetry::init(&args.db.log_filter(), args.db.log_format);
    // Bulk loading and the closing vacuum are not requests: no statement timeout.
    let mut cfg = args.db.pool();
    cfg.statement_timeout = None;
    let pool = Db::connect(&args.db.database_url, &cfg).await?;
    pool.migrate().await?;
    let spec = SeedSpec {
        users: args.users,
        orders_per_user: args.orders_per_user,
        items_per_order: args.items_per_order,
        products: args.products,
    };
    let bar = ProgressBar::new(spec.total_rows());
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} rows ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let shown = telemetry::show_progress(&bar);
    let started = Instant::now();
    let session = Session::unmetered(pool.clone());
    let report = seed::seed(&session, spec, |n| bar.set_position(n))
        .await
        .map_err(|e| e.detail())?;
    crate::server::app::demo_accounts(&session, &Hasher::start(1)?).await?;
    bar.finish_and_clear();
    drop(shown);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "seeded {} users, {} products, {} orders, {} items in {secs:.1} s ({} statements)",
        report.users,
        report.products,
        report.orders,
        report.items,
        session.log().count()
    );
    pool.close().await;
    Ok(())
}

/// `eagerql user create`: an account, its password read from the terminal or stdin.
async fn create_user(args: UserCreateArgs) -> Result<(), BoxError> {
    telemetry::init(&args.db.log_filter(), args.db.log_format);
    let email = validate::email(&args.email)?;
    let username = validate::username(&args.username)?;
    let password = read_password()?;
    validate::password(&password)?;
    let pool = Db::connect(&args.db.database_url, &args.db.pool()).await?;
    pool.migrate().await?;
    let hasher = Hasher::start(1)?;
    let hash = hasher.hash(password).await.map_err(|e| e.detail())?;
    let role = if args.admin {
        Role::Admin
    } else {
        Role::Customer
    };
    let session = Session::unmetered(pool.clone());
    let id = crate::db::auth::insert_account(&session, &email, &username, &hash, role)
        .await
        .map_err(|e| e.message())?;
    println!("created {} {email} (id {id})", role.as_db());
    pool.close().await;
    Ok(())
}

/// `eagerql token`: an access token for an active user.
async fn print_token(args: TokenArgs) -> Result<(), BoxError> {
    telemetry::init(&args.db.log_filter(), args.db.log_format);
    let pool = Db::connect(&args.db.database_url, &args.db.pool()).await?;
    pool.migrate().await?;
    let session = Session::unmetered(pool.clone());
    let (role, active) = crate::db::auth::account(&session, args.user)
        .await
        .map_err(|e| e.detail())?
        .ok_or_else(|| format!("there is no user {}", args.user))?;
    if !active {
        return Err(format!("user {} is inactive", args.user).into());
    }
    let keys = Keys::load(
        &session,
        args.auth.jwt_secret.as_deref(),
        args.auth.tokens(),
    )
    .await
    .map_err(|e| e.detail())?;
    let (token, _) = keys.issue(args.user, role).map_err(|e| e.detail())?;
    println!("{token}");
    pool.close().await;
    Ok(())
}

/// The status code of `GET /readyz` at `addr`: a bare HTTP/1.0 request, so no HTTP client is
/// needed. An address bound to all interfaces is reached through loopback.
async fn ready_status(addr: std::net::SocketAddr, tls: bool) -> Result<u16, BoxError> {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
    ) -> std::io::Result<[u8; 12]> {
        stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok(head)
    }
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        if tls {
            let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
            let stream = crate::server::tls::health_connector()
                .connect(name, stream)
                .await?;
            exchange(stream).await
        } else {
            exchange(stream).await
        }
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(3), exchange).await??;
    // "HTTP/1.1 200"
    let code = std::str::from_utf8(&head[9..12])?.parse::<u16>()?;
    Ok(code)
}

/// `--tls`/`EAGERQL_TLS_CERT` for `eagerql health`: a certificate path (or `true`) means
/// HTTPS; empty or `false` means HTTP.
fn tls_flag(v: &str) -> Result<bool, std::convert::Infallible> {
    Ok(!(v.is_empty() || v.eq_ignore_ascii_case("false")))
}
