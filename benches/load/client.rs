//! A minimal HTTP/1.1 client (one keep-alive connection per simulated client, hyper's
//! low-level `conn` API) and the closed-loop load driver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Res;

/// The response header carrying the number of SQL statements a request ran.
pub const COUNT_HEADER: &str = "x-eagerql-sql-statements";
/// The request header asking for the executed SQL in `extensions.sql`.
pub const DEBUG_HEADER: &str = "x-eagerql-debug";
/// The `Authorization` header every request carries: the administrator's (the reads and
/// writes), or the customer's (the customer workload).
static AUTHORIZATION: std::sync::RwLock<Option<String>> = std::sync::RwLock::new(None);
/// The two tokens: administrator, customer.
static TOKENS: std::sync::RwLock<(Option<String>, Option<String>)> =
    std::sync::RwLock::new((None, None));

/// The tokens of the data set under test (`None`: a server without accounts).
pub fn set_tokens(admin: Option<String>, customer: Option<String>) {
    *TOKENS.write().unwrap_or_else(|e| e.into_inner()) = (admin, customer);
    as_customer(false);
}

/// Sends the customer's token (`true`) or the administrator's with every request from now on.
pub fn as_customer(customer: bool) {
    let tokens = TOKENS.read().unwrap_or_else(|e| e.into_inner()).clone();
    let token = if customer { tokens.1 } else { tokens.0 };
    *AUTHORIZATION.write().unwrap_or_else(|e| e.into_inner()) =
        token.map(|t| format!("Bearer {t}"));
}

/// The `Authorization` header every request carries now (`Bearer ...`).
pub fn authorization() -> Option<String> {
    AUTHORIZATION
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// Longest a single request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// One HTTP response.
pub struct Reply {
    pub status: StatusCode,
    pub statements: Option<u64>,
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection to the server.
pub struct Conn {
    addr: SocketAddr,
    host: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// Opens a connection; only loopback addresses are accepted.
    pub async fn connect(addr: SocketAddr) -> Res<Conn> {
        if !addr.ip().is_loopback() {
            return Err(format!("refusing to send load to non-loopback address {addr}").into());
        }
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            // Ends when the connection closes; errors show up on the sender's side.
            let _ = conn.await;
        });
        Ok(Conn {
            addr,
            host: addr.to_string(),
            sender,
        })
    }

    async fn reconnect(&mut self) -> Res<()> {
        *self = Conn::connect(self.addr).await?;
        Ok(())
    }

    /// Sends one request and reads the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        debug_sql: bool,
    ) -> Res<Reply> {
        if self.sender.ready().await.is_err() {
            self.reconnect().await?;
            self.sender.ready().await?;
        }
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, &self.host)
            .header(header::ACCEPT, "application/json");
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if debug_sql {
            req = req.header(DEBUG_HEADER, "sql");
        }
        if let Some(auth) = AUTHORIZATION
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_deref()
        {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let req = req.body(Full::new(body))?;
        let fut = async {
            let resp = self.sender.send_request(req).await?;
            let status = resp.status();
            let statements = resp
                .headers()
                .get(COUNT_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            let body = resp.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Reply {
                status,
                statements,
                body,
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => {
                // The connection may be unusable now: start afresh on the next request.
                let _ = self.reconnect().await;
                Err(e.into())
            }
            Err(_) => {
                let _ = self.reconnect().await;
                Err(format!("request timed out after {} s", REQUEST_TIMEOUT.as_secs()).into())
            }
        }
    }

    /// POSTs a GraphQL request body to /graphql.
    pub async fn graphql(&mut self, body: Bytes, debug_sql: bool) -> Res<Reply> {
        self.send(Method::POST, "/graphql", body, debug_sql).await
    }
}

/// A `{"query": ...}` body.
pub fn query_body(query: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "query": query }).to_string())
}

/// A `{"query": ..., "variables": ...}` body.
pub fn query_body_with(query: &str, variables: serde_json::Value) -> Bytes {
    Bytes::from(serde_json::json!({ "query": query, "variables": variables }).to_string())
}

/// Parses a GraphQL response and fails on `errors` or missing `data`.
pub fn check_graphql(reply: &Reply) -> Res<serde_json::Value> {
    let json: serde_json::Value = serde_json::from_slice(&reply.body)
        .map_err(|e| format!("HTTP {}: response is not JSON: {e}", reply.status))?;
    if let Some(errors) = json.get("errors") {
        let mut text = errors.to_string();
        text.truncate(600);
        return Err(format!("HTTP {}: GraphQL errors: {text}", reply.status).into());
    }
    if !reply.status.is_success() || json.get("data").is_none_or(|d| d.is_null()) {
        return Err(format!("HTTP {} without data", reply.status).into());
    }
    Ok(json)
}

/// Cheap success test for the hot loop (the first reply of a workload is checked in full):
/// HTTP 200, a `data` object first, and no `errors` list (which is serialised last, so such
/// a body ends with `]}`).
fn looks_ok(reply: &Reply) -> bool {
    reply.status == StatusCode::OK
        && reply.body.starts_with(b"{\"data\":{")
        && !reply.body.ends_with(b"]}")
}

/// Builds the request body of request number `i`.
pub type BodyFn = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;

/// Latencies (sorted, microseconds) and totals of one measured phase.
#[derive(Debug, Default)]
pub struct Stats {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub latencies_us: Vec<u64>,
    pub bytes: u64,
    pub statements: u64,
    pub statements_min: u64,
    pub statements_max: u64,
    pub first_error: Option<String>,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// The `p`-th percentile latency in milliseconds (nearest rank).
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let n = self.latencies_us.len();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let idx = rank.clamp(1, n) - 1;
        self.latencies_us[idx] as f64 / 1000.0
    }

    pub fn mean_statements(&self) -> f64 {
        if self.ok == 0 {
            f64::NAN
        } else {
            self.statements as f64 / self.ok as f64
        }
    }

    pub fn mean_bytes(&self) -> f64 {
        if self.ok == 0 {
            f64::NAN
        } else {
            self.bytes as f64 / self.ok as f64
        }
    }

    /// Merges the samples of several clients.
    pub fn merge(parts: Vec<Stats>, elapsed: Duration) -> Stats {
        let mut out = Stats {
            elapsed,
            statements_min: u64::MAX,
            ..Stats::default()
        };
        for p in parts {
            out.ok += p.ok;
            out.errors += p.errors;
            out.bytes += p.bytes;
            out.statements += p.statements;
            out.statements_min = out.statements_min.min(p.statements_min);
            out.statements_max = out.statements_max.max(p.statements_max);
            out.latencies_us.extend(p.latencies_us);
            if out.first_error.is_none() {
                out.first_error = p.first_error;
            }
        }
        if out.statements_min == u64::MAX {
            out.statements_min = 0;
        }
        out.latencies_us.sort_unstable();
        out
    }
}

/// How long to load, and from how many clients.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// One closed-loop worker: repeats a step (a request, or a replayed sequence of statements)
/// back to back and records each measured one.
pub trait Worker: Send + 'static {
    /// What one step gives back.
    type Outcome: Send;
    /// Runs one step; an error stops this worker and fails the run.
    fn step(&mut self) -> impl Future<Output = Res<Self::Outcome>> + Send;
    /// Records a step that began in the measured phase.
    fn record(stats: &mut Stats, latency: Duration, outcome: Self::Outcome);
}

/// Upper bound on steps per worker and phase, whatever the duration.
const MAX_STEPS_PER_WORKER: u64 = 5_000_000;

/// Runs `workers` side by side, each in a closed loop: first for the warm-up (not recorded),
/// then for the measured duration; a step begun during the warm-up is never recorded. Each
/// phase is bounded in time and in count.
pub async fn closed_loop<W: Worker>(plan: Plan, workers: Vec<W>) -> Res<Stats> {
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let measure_until = measure_from + plan.duration;
    let mut tasks = Vec::with_capacity(workers.len());
    for mut worker in workers {
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats {
                statements_min: u64::MAX,
                ..Stats::default()
            };
            let mut end = Instant::now();
            for until in [measure_from, measure_until] {
                let mut n = 0u64;
                while n < MAX_STEPS_PER_WORKER {
                    let began = Instant::now();
                    if began >= until {
                        break;
                    }
                    n += 1;
                    let outcome = worker.step().await?;
                    end = Instant::now();
                    if began >= measure_from {
                        W::record(&mut stats, end.duration_since(began), outcome);
                    }
                }
            }
            Ok::<_, super::BoxError>((stats, end))
        }));
    }
    let mut parts = Vec::with_capacity(tasks.len());
    let mut last_end = measure_until;
    for t in tasks {
        let (stats, end) = t.await??;
        last_end = last_end.max(end);
        parts.push(stats);
    }
    Ok(Stats::merge(
        parts,
        last_end.saturating_duration_since(measure_from),
    ))
}

/// A client of [`run_http`]: one keep-alive connection.
struct HttpClient {
    conn: Conn,
    counter: Arc<AtomicU64>,
    body: BodyFn,
}

impl Worker for HttpClient {
    /// A failed request is recorded as an error, not a failed run.
    type Outcome = Res<Reply>;

    async fn step(&mut self) -> Res<Res<Reply>> {
        let i = self.counter.fetch_add(1, Ordering::Relaxed);
        let req = (self.body)(i);
        Ok(self.conn.graphql(req, false).await)
    }

    fn record(stats: &mut Stats, latency: Duration, outcome: Res<Reply>) {
        match outcome {
            Ok(reply) if looks_ok(&reply) => {
                stats.ok += 1;
                stats.latencies_us.push(latency.as_micros() as u64);
                stats.bytes += reply.body.len() as u64;
                let s = reply.statements.unwrap_or(0);
                stats.statements += s;
                stats.statements_min = stats.statements_min.min(s);
                stats.statements_max = stats.statements_max.max(s);
            }
            Ok(reply) => {
                stats.errors += 1;
                if stats.first_error.is_none() {
                    let mut text = String::from_utf8_lossy(&reply.body).into_owned();
                    text.truncate(400);
                    stats.first_error = Some(format!("HTTP {}: {text}", reply.status));
                }
            }
            Err(e) => {
                stats.errors += 1;
                if stats.first_error.is_none() {
                    stats.first_error = Some(e.to_string());
                }
            }
        }
    }
}

/// Closed loop over HTTP: `clients` connections each send a request, wait for the whole
/// response, and send the next (see [`closed_loop`]). Request numbers come from one shared
/// counter, so `body(i)` varies across all clients.
pub async fn run_http(addr: SocketAddr, plan: Plan, body: BodyFn) -> Res<Stats> {
    let counter = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::with_capacity(plan.clients.max(1));
    for _ in 0..plan.clients.max(1) {
        clients.push(HttpClient {
            conn: Conn::connect(addr).await?,
            counter: counter.clone(),
            body: body.clone(),
        });
    }
    closed_loop(plan, clients).await
}
