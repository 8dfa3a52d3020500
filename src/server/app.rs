//! Building and running the service: production and tests start it the same way.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::auth::Keys;
use crate::auth::password::Hasher;
use crate::config::ServeConfig;
use crate::db::seed::{self, SeedSpec};
use crate::db::{Db, Session};

pub use crate::server::state::{AppState, BoxError};

/// The password of the demo's sign-in accounts (`user1@example.com`, an administrator, and
/// the customers `user2@example.com` and `user3@example.com`). Documented, so a newcomer can
/// sign in; real accounts are made with `eagerql user create`.
pub const DEMO_PASSWORD: &str = "eagerql-demo";

/// Makes the demo's sign-in accounts (see [`DEMO_PASSWORD`]) on seeded data.
pub async fn demo_accounts(session: &Session, hasher: &Hasher) -> Result<(), BoxError> {
    let hash = hasher
        .hash(DEMO_PASSWORD.to_owned())
        .await
        .map_err(|e| e.detail())?;
    crate::db::auth::demo_accounts(session, &hash)
        .await
        .map_err(|e| e.detail())?;
    Ok(())
}

/// A bound, ready-to-run server.
pub struct App {
    listener: TcpListener,
    /// HTTPS on the public port (EAGERQL_TLS_CERT, EAGERQL_TLS_KEY).
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// The separate `/metrics` port (EAGERQL_METRICS_BIND).
    metrics_listener: Option<TcpListener>,
    state: AppState,
}

impl App {
    /// Opens the database, migrates and loads demo data as configured, and binds the listener
    /// (port 0 picks a free port).
    pub async fn build(config: ServeConfig) -> Result<App, BoxError> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(crate::server::tls::server_config(cert, key)?),
            _ => None,
        };
        let db = Db::connect(&config.db.database_url, &config.db.pool()).await?;
        if config.db.backend() == crate::db::Backend::Sqlite {
            tracing::info!(database = %config.db.database_url, "using the embedded SQLite database");
        }
        if config.migrate {
            db.migrate().await?;
        }
        let keys = Keys::for_server(&db, &config.auth)
            .await
            .map_err(|e| e.detail())?;
        let demo = config.demo_data;
        let bind = config.bind;
        let state = AppState::new(db.clone(), config, keys)?;
        if state.config.documents.trusted_only && state.trusted.is_empty() {
            return Err(
                "EAGERQL_TRUSTED_ONLY is set, but EAGERQL_TRUSTED_DOCUMENTS names no \
                        document: every request would be refused"
                    .into(),
            );
        }
        if !state.trusted.is_empty() {
            let operations = crate::documents::check::trusted_documents(&state).await?;
            tracing::info!(
                documents = state.trusted.len(),
                operations,
                trusted_only = state.config.documents.trusted_only,
                "trusted documents validated and planned"
            );
        }
        if demo {
            let session = Session::unmetered(db);
            if seed::is_empty(&session).await.map_err(|e| e.detail())? {
                let report = seed::seed(&session, SeedSpec::DEMO, |_| {})
                    .await
                    .map_err(|e| e.detail())?;
                demo_accounts(&session, &state.hasher).await?;
                tracing::info!(
                    users = report.users,
                    orders = report.orders,
                    admin = "user1@example.com",
                    password = DEMO_PASSWORD,
                    "loaded demo data; sign in with `login`"
                );
            }
        }
        let listener = listen(bind).await?;
        let metrics_listener = match state.config.observe.metrics_bind {
            Some(addr) if state.config.observe.metrics => Some(listen(addr).await?),
            _ => None,
        };
        Ok(App {
            listener,
            tls,
            metrics_listener,
            state,
        })
    }

    /// Whether the public port speaks HTTPS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (pool, schema, configuration).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The bound address of the separate metrics port, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until Ctrl-C / SIGTERM, then drains (see [`App::run_until`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal`, then: `/readyz` answers 503 `draining` and live connections
    /// are closed (1001), requests are still served for `EAGERQL_SHUTDOWN_DELAY_SECS` (a
    /// load balancer takes the instance out of rotation), the listener closes, in-flight
    /// requests get `EAGERQL_SHUTDOWN_TIMEOUT_SECS` to finish, and the pool is closed.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let db = self.state.db.clone();
        if let Some(listener) = self.metrics_listener {
            let router = crate::server::http::metrics_router(self.state.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "the metrics port stopped");
                }
            });
        }
        // Login counts whose window passed limit nothing: forget them now and then, so the
        // table holds at most one window's keys (any instance may do it; it is idempotent).
        // The shared persisted queries are kept to EAGERQL_PERSISTED_QUERIES the same way.
        let (limiter, session) = (self.state.limiter.clone(), Session::unmetered(db.clone()));
        let keep = self.state.config.documents.persisted_queries;
        let pruner = tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                every.tick().await;
                if let Err(e) = limiter.prune(&session).await {
                    tracing::warn!(error = %e.detail(), "pruning login attempts failed");
                }
                if let Err(e) = crate::db::persisted_queries::prune(&session, keep).await {
                    tracing::warn!(error = %e.detail(), "pruning persisted queries failed");
                }
            }
        });
        let closing = self.state.closing.clone();
        let delay = std::time::Duration::from_secs(self.state.config.shutdown_delay_secs);
        let drain = std::time::Duration::from_secs(self.state.config.shutdown_timeout_secs);
        let stopped = async move {
            signal.await;
            closing.send_replace(true);
            if !delay.is_zero() {
                tracing::info!(seconds = delay.as_secs(), "draining: /readyz answers 503");
                tokio::time::sleep(delay).await;
            }
        };
        // Once the listener is closed, in-flight requests get `drain` to finish.
        let mut closed = self.state.closing.subscribe();
        let deadline = async move {
            let _ = closed.wait_for(|c| *c).await;
            tokio::time::sleep(delay + drain).await;
        };
        let connections =
            crate::server::http::Connections(crate::server::http::service(self.state));
        let served = async move {
            match self.tls {
                Some(config) => {
                    // `tap_io` gives the listener the connect-info of its address.
                    let listener = crate::server::tls::TlsListener::new(self.listener, config)?;
                    axum::serve(
                        axum::serve::ListenerExt::tap_io(listener, |_| {}),
                        connections,
                    )
                    .with_graceful_shutdown(stopped)
                    .await
                }
                None => {
                    axum::serve(self.listener, connections)
                        .with_graceful_shutdown(stopped)
                        .await
                }
            }
        };
        tokio::select! {
            r = served => r?,
            () = deadline => {
                tracing::warn!(seconds = drain.as_secs(),
                    "in-flight requests did not finish in time; stopping anyway");
            }
        }
        pruner.abort();
        db.close().await;
        Ok(())
    }
}

/// Binds `addr`; a failure names the address it tried (`Address already in use` alone does
/// not say which).
async fn listen(addr: SocketAddr) -> Result<TcpListener, BoxError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}").into())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}
