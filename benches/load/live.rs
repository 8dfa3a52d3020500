//! `--subscriptions N`: live queries under writes. N subscriptions of one shape (an order by
//! id with its items and their products, each subscription a different order) over
//! `--sockets` WebSocket connections (graphql-transport-ws), then `updateOrderStatus` writes
//! through the API at `--write-rate` per second for `--duration` seconds, each moving a pending
//! order that some subscription follows. Reports the time to subscribe everyone, the server's
//! RSS per idle subscription, from each write's answer to its subscriber's message (p50, p99),
//! the refreshes and their statements and subscribers (from /metrics), and the server's CPU.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::client::{self, Conn, query_body, query_body_with};
use super::setup::Server;
use super::{Res, progress};

/// What each subscription follows.
const SHAPE: &str = "subscription Order($id: ID!) { order(id: $id) { id status totalAmount \
                     items { quantity product { name } } } }";

/// When each order's write was sent (its commit, answer and message come after).
type Written = Arc<Mutex<HashMap<i64, Instant>>>;

/// The measurements.
pub struct Report {
    pub subscriptions: usize,
    pub sockets: usize,
    pub subscribe_secs: f64,
    pub idle_bytes_per_subscription: f64,
    /// Bytes the allocator handed out per idle subscription (`eagerql_memory_allocated_bytes`
    /// before subscribing and once idle): what the subscriptions hold, without the
    /// allocator's own overhead.
    pub allocated_bytes_per_subscription: f64,
    /// Bytes the allocator holds resident per idle subscription (`eagerql_memory_resident_bytes`):
    /// the allocations with the allocator's own overhead and freed pages not yet given back.
    pub resident_bytes_per_subscription: f64,
    pub writes: usize,
    pub write_rate: f64,
    pub delivered: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub refreshes: f64,
    pub statements_per_refresh: f64,
    pub subscribers_per_refresh: f64,
    pub cpu_cores: f64,
    pub peak_rss_mib: f64,
}

/// A counter or gauge from the server's /metrics text.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let value = rest.strip_prefix(' ')?;
            value.trim().parse().ok()
        })
        .unwrap_or(f64::NAN)
}

async fn scrape(addr: SocketAddr) -> Res<String> {
    let mut conn = Conn::connect(addr).await?;
    let reply = conn
        .send(
            hyper::Method::GET,
            "/metrics",
            hyper::body::Bytes::new(),
            false,
        )
        .await?;
    Ok(String::from_utf8_lossy(&reply.body).into_owned())
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(addr: SocketAddr, token: &str) -> Res<Socket> {
    let mut req = format!("ws://{addr}/graphql").into_client_request()?;
    req.headers_mut()
        .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(req).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": token } });
    socket.send(Message::Text(init.to_string().into())).await?;
    match socket.next().await {
        Some(Ok(Message::Text(t))) if t.contains("connection_ack") => Ok(socket),
        other => Err(format!("no connection_ack: {other:?}").into()),
    }
}

/// The ids of up to `n` pending orders.
async fn pending_orders(addr: SocketAddr, n: usize) -> Res<Vec<i64>> {
    let mut conn = Conn::connect(addr).await?;
    let q = format!(
        "{{ orders(status: PENDING, first: {}) {{ id }} }}",
        n.min(1000)
    );
    let reply = conn.graphql(query_body(&q), false).await?;
    let v = client::check_graphql(&reply)?;
    Ok(v["data"]["orders"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["id"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default())
}

/// Runs the live bench against `server` (see the module documentation).
pub async fn run(
    server: &Server,
    subscriptions: usize,
    sockets: usize,
    rate: f64,
    duration: Duration,
) -> Res<Report> {
    let addr = server.addr;
    let token = client::authorization().ok_or("no access token")?;
    let orders = pending_orders(addr, (rate * duration.as_secs_f64()).ceil() as usize).await?;
    if orders.is_empty() {
        return Err("no pending orders to write".into());
    }
    let rss_before = server.rss_kib().unwrap_or(0) as f64;
    let start = scrape(addr).await?;
    let allocated_before = metric(&start, "eagerql_memory_allocated_bytes");
    let resident_before = metric(&start, "eagerql_memory_resident_bytes");
    // Subscriptions follow the pending orders first (each written once), then other orders.
    let ids: Vec<i64> = (0..subscriptions)
        .map(|k| match orders.get(k) {
            Some(id) => *id,
            None => 1 + k as i64,
        })
        .collect();
    let written: Written = Arc::default();
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let first_answers = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let per_socket = subscriptions.div_ceil(sockets.max(1));
    let mut readers = Vec::new();
    for (c, chunk) in ids.chunks(per_socket.max(1)).enumerate() {
        let mut socket = open(addr, &token).await?;
        for (k, id) in chunk.iter().enumerate() {
            let m = json!({ "type": "subscribe", "id": format!("{id}:{c}:{k}"),
                            "payload": { "query": SHAPE, "variables": { "id": id.to_string() } } });
            socket.send(Message::Text(m.to_string().into())).await?;
        }
        let (written, latencies, first_answers) =
            (written.clone(), latencies.clone(), first_answers.clone());
        let expected = chunk.len();
        readers.push(tokio::spawn(async move {
            let mut seen = 0usize;
            while let Some(Ok(frame)) = socket.next().await {
                let Message::Text(t) = frame else { continue };
                let now = Instant::now();
                let Ok(m) = serde_json::from_str::<Value>(t.as_str()) else {
                    continue;
                };
                if m["type"] != "next" {
                    continue;
                }
                if seen < expected {
                    seen += 1;
                    first_answers.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let order: Option<i64> = m["id"]
                    .as_str()
                    .and_then(|s| s.split(':').next())
                    .and_then(|s| s.parse().ok());
                let at = order.and_then(|o| {
                    written
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&o)
                        .copied()
                });
                if let Some(at) = at {
                    let ms = now.saturating_duration_since(at).as_secs_f64() * 1000.0;
                    latencies.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while first_answers.load(Ordering::Relaxed) < subscriptions {
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {subscriptions} first answers in 600 s",
                first_answers.load(Ordering::Relaxed)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let subscribe_secs = started.elapsed().as_secs_f64();
    // Idle: what the subscriptions hold once answered, after the allocator has given back
    // what answering them took: jemalloc purges freed pages over its decay time (10 s), so
    // the lowest RSS over up to 30 s, until it has not fallen for 5 s.
    let mut rss_idle = server.rss_kib().unwrap_or(0) as f64;
    let mut steady = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = server.rss_kib().unwrap_or(0) as f64;
        if now >= rss_idle {
            steady += 1;
            if steady == 5 {
                break;
            }
        } else {
            steady = 0;
            rss_idle = now;
        }
    }
    progress(&format!(
        "{subscriptions} subscriptions answered in {subscribe_secs:.1} s; RSS {:.0} -> {:.0} MiB",
        rss_before / 1024.0,
        rss_idle / 1024.0
    ));
    let before = scrape(addr).await?;
    let allocated_idle = metric(&before, "eagerql_memory_allocated_bytes");
    let resident_idle = metric(&before, "eagerql_memory_resident_bytes");
    let cpu_before = server.cpu_time();
    let mut conn = Conn::connect(addr).await?;
    let every = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let write_start = Instant::now();
    let mut writes = 0usize;
    for id in &orders {
        if write_start.elapsed() >= duration {
            break;
        }
        tick.tick().await;
        written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*id, Instant::now());
        let body = query_body_with(
            "mutation Ship($id: ID!) { updateOrderStatus(id: $id, status: SHIPPED) { id } }",
            json!({ "id": id.to_string() }),
        );
        let reply = conn.graphql(body, false).await?;
        client::check_graphql(&reply)?;
        writes += 1;
    }
    let write_secs = write_start.elapsed().as_secs_f64();
    // The last messages.
    let settle = Instant::now() + Duration::from_secs(10);
    while latencies.lock().unwrap_or_else(|e| e.into_inner()).len() < writes
        && Instant::now() < settle
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = match (cpu_before, server.cpu_time()) {
        (Some(a), Some(b)) => (b - a).as_secs_f64() / write_start.elapsed().as_secs_f64(),
        _ => f64::NAN,
    };
    let after = scrape(addr).await?;
    for r in readers {
        r.abort();
    }
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    let refreshes = delta("eagerql_live_refreshes_total");
    let statements = delta("eagerql_live_statements_total");
    let subscribers = delta("eagerql_live_refresh_subscribers_sum");
    let mut lat = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lat.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            lat[((lat.len() - 1) as f64 * p).round() as usize]
        }
    };
    Ok(Report {
        subscriptions,
        sockets,
        subscribe_secs,
        idle_bytes_per_subscription: (rss_idle - rss_before) * 1024.0 / subscriptions as f64,
        allocated_bytes_per_subscription: (allocated_idle - allocated_before)
            / subscriptions as f64,
        resident_bytes_per_subscription: (resident_idle - resident_before) / subscriptions as f64,
        writes,
        write_rate: writes as f64 / write_secs,
        delivered: lat.len(),
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
        refreshes,
        statements_per_refresh: statements / refreshes,
        subscribers_per_refresh: subscribers / refreshes,
        cpu_cores: cpu,
        peak_rss_mib: server.peak_rss_kib().unwrap_or(0) as f64 / 1024.0,
    })
}

impl Report {
    /// The report as printed.
    pub fn print(&self, backend: &str) -> String {
        format!(
            "== {backend} live queries: {} subscriptions over {} WebSockets, {} writes at {:.0}/s ==\n\
             subscribed and answered in {:.1} s; per idle subscription: {:.0} bytes of RSS, {:.0} \
             resident in the allocator, {:.0} allocated\n\
             write sent -> subscriber's message: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
             ({} of {} messages)\n\
             refreshes {:.0}: {:.2} statements and {:.0} subscribers per refresh; server CPU \
             {:.2} cores; peak RSS {:.0} MiB",
            self.subscriptions,
            self.sockets,
            self.writes,
            self.write_rate,
            self.subscribe_secs,
            self.idle_bytes_per_subscription,
            self.resident_bytes_per_subscription,
            self.allocated_bytes_per_subscription,
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.delivered,
            self.writes,
            self.refreshes,
            self.statements_per_refresh,
            self.subscribers_per_refresh,
            self.cpu_cores,
            self.peak_rss_mib,
        )
    }
}
