//! `/metrics`: the server's counters and histograms in the OpenMetrics text format, which
//! Prometheus scrapes.
//!
//! Per request: requests by operation type and outcome, latency, SQL statements, rows and
//! database time (histograms), and errors by `extensions.code`. Read at each scrape: the
//! connection pool (open, idle, in use, requests waiting for a connection, and its maximum), the prepared-document cache and
//! the persisted-query store. Recording a request is a handful of atomic operations.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::db::Db;
use crate::documents::persisted::Store;
use crate::graphql::operation::Preparer;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation_type: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    operation_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// How one request ended, for [`Metrics::record`].
#[derive(Debug)]
pub struct Outcome<'a> {
    /// `query`, `mutation`, or `unknown` when the request never became an operation.
    pub operation_type: &'static str,
    /// `ok`: data and no errors; `error`: data with errors (a field failed); `refused`: a
    /// request error, nothing executed.
    pub outcome: &'static str,
    /// Wall time.
    pub duration: Duration,
    /// SQL statements run.
    pub statements: usize,
    /// Rows read.
    pub rows: usize,
    /// Time spent in the database.
    pub db_time: Duration,
    /// The `extensions.code` of each error.
    pub codes: &'a [&'a str],
}

/// What is read afresh at each scrape.
struct Live {
    db: Db,
    preparer: Arc<Preparer>,
    persisted: Arc<Store>,
    max_connections: u32,
    live: Arc<crate::live::Registry>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish()
    }
}

/// jemalloc's allocated and resident bytes, read fresh (0 when unavailable, as in tests built
/// without it as the global allocator).
fn allocator() -> (i64, i64) {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return (0, 0);
    }
    let get = |v: Result<usize, _>| v.ok().and_then(|n| i64::try_from(n).ok()).unwrap_or(0);
    (get(stats::allocated::read()), get(stats::resident::read()))
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    let g = ConstGauge::new(v);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// Counters read from atomics: `(name, help, value)`.
fn counters(
    e: &mut DescriptorEncoder,
    list: &[(&str, &str, &std::sync::atomic::AtomicU64)],
) -> std::fmt::Result {
    for (name, help, n) in list {
        counter(e, name, help, n.load(std::sync::atomic::Ordering::Relaxed))?;
    }
    Ok(())
}

impl Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let (open, idle) = self.db.pool_status();
        let idle = idle as i64;
        let open = i64::from(open);
        gauge(
            &mut e,
            "eagerql_pool_connections",
            "Open pooled connections.",
            open,
        )?;
        gauge(
            &mut e,
            "eagerql_pool_idle",
            "Idle pooled connections.",
            idle,
        )?;
        gauge(
            &mut e,
            "eagerql_pool_in_use",
            "Pooled connections serving a request.",
            (open - idle).max(0),
        )?;
        gauge(
            &mut e,
            "eagerql_pool_waiting",
            "Requests waiting for a pooled connection.",
            crate::db::waiting_for_connection() as i64,
        )?;
        gauge(
            &mut e,
            "eagerql_pool_max",
            "Most pooled connections (EAGERQL_POOL_SIZE).",
            i64::from(self.max_connections),
        )?;
        let (hits, misses) = self.preparer.cache_hits_and_misses();
        counter(
            &mut e,
            "eagerql_document_cache_hits",
            "Documents found parsed and validated in the cache.",
            hits,
        )?;
        counter(
            &mut e,
            "eagerql_document_cache_misses",
            "Documents parsed and validated afresh.",
            misses,
        )?;
        gauge(
            &mut e,
            "eagerql_persisted_queries",
            "Documents in the automatic persisted-query store.",
            self.persisted.len() as i64,
        )?;
        let changes = self.db.changes().counts();
        counters(
            &mut e,
            &[
                (
                    "eagerql_changes_received",
                    "Committed writes the change feed was told of (a statement on PostgreSQL, a table of a transaction on SQLite).",
                    &changes.received,
                ),
                (
                    "eagerql_change_sets",
                    "Sets of changes the feed handed on, one per coalescing window with writes (EAGERQL_LIVE_COALESCE_MS).",
                    &changes.sets,
                ),
                (
                    "eagerql_change_listen_connects",
                    "Times the change feed's LISTEN connection was opened (more than once: it was lost and opened again).",
                    &changes.connects,
                ),
            ],
        )?;
        let (allocated, resident) = allocator();
        gauge(
            &mut e,
            "eagerql_memory_allocated_bytes",
            "Bytes the server's allocator (jemalloc) has handed out and not had back.",
            allocated,
        )?;
        gauge(
            &mut e,
            "eagerql_memory_resident_bytes",
            "Bytes of memory the allocator holds resident (allocations, its own metadata, and \
             freed pages not yet given back to the system).",
            resident,
        )?;
        gauge(
            &mut e,
            "eagerql_live_subscriptions",
            "Live subscriptions followed now (EAGERQL_LIVE_MAX_SUBSCRIPTIONS at most).",
            self.live.subscribers() as i64,
        )?;
        gauge(
            &mut e,
            "eagerql_live_groups",
            "Distinct live operations (document and operation name) followed now.",
            self.live.groups() as i64,
        )?;
        let live = self.live.counts();
        counters(
            &mut e,
            &[
                (
                    "eagerql_live_refreshes",
                    "Refreshes of live subscribers (one set of statements each).",
                    &live.refreshes,
                ),
                (
                    "eagerql_live_statements",
                    "SQL statements the refreshes ran.",
                    &live.statements,
                ),
                ("eagerql_live_rows", "Rows the refreshes read.", &live.rows),
                (
                    "eagerql_live_messages",
                    "Messages sent to live subscribers (only answers that changed).",
                    &live.messages,
                ),
            ],
        )?;
        if let Some(replicas) = self.db.replicas().filter(|r| !r.list().is_empty()) {
            let mut reads = e.encode_descriptor(
                "eagerql_read_snapshots",
                "Read snapshots (query operations) begun, by the server they ran on.",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            ConstCounter::new(replicas.primary_reads())
                .encode(reads.encode_family(&[("server", "primary")])?)?;
            for r in replicas.list() {
                ConstCounter::new(r.reads())
                    .encode(reads.encode_family(&[("server", &*r.label)])?)?;
            }
            let mut healthy = e.encode_descriptor(
                "eagerql_replica_healthy",
                "1 while the read replica is in rotation (it answers its health check and is \
                 not behind by more than EAGERQL_REPLICA_MAX_LAG).",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for r in replicas.list() {
                ConstGauge::new(i64::from(r.in_rotation()))
                    .encode(healthy.encode_family(&[("replica", &*r.label)])?)?;
            }
            let mut lag = e.encode_descriptor(
                "eagerql_replica_lag_seconds",
                "How long the primary has been past what the read replica has replayed, at its \
                 last check.",
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for r in replicas.list() {
                ConstGauge::new(r.lag().as_secs_f64())
                    .encode(lag.encode_family(&[("replica", &*r.label)])?)?;
            }
        }
        Ok(())
    }
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<TypeLabel>,
    statements: Histogram,
    rows: Histogram,
    db_time: Histogram,
    errors: Family<CodeLabel, Counter>,
    /// Live queries: per refresh, its subscribers, its statements and its delay.
    refresh_group: Histogram,
    refresh_statements: Histogram,
    delivery: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish()
    }
}

impl Metrics {
    /// The metrics of a server with this pool, preparer and persisted-query store.
    pub fn new(
        db: Db,
        max_connections: u32,
        preparer: Arc<Preparer>,
        persisted: Arc<Store>,
        live: Arc<crate::live::Registry>,
    ) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "eagerql_requests",
            "GraphQL requests, by operation type and outcome (ok, error, refused).",
            requests.clone(),
        );
        let latency: HistogramFamily<TypeLabel> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "eagerql_request_duration_seconds",
            "Time to answer a GraphQL request.",
            latency.clone(),
        );
        let statements = Histogram::new([0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 25.0]);
        registry.register(
            "eagerql_statements_per_request",
            "SQL statements one request ran.",
            statements.clone(),
        );
        let rows = Histogram::new(exponential_buckets(1.0, 4.0, 10));
        registry.register(
            "eagerql_rows_per_request",
            "Rows one request read.",
            rows.clone(),
        );
        let db_time = latency_histogram();
        registry.register(
            "eagerql_database_seconds",
            "Time one request spent in the database.",
            db_time.clone(),
        );
        let errors = Family::<CodeLabel, Counter>::default();
        registry.register(
            "eagerql_errors",
            "GraphQL errors, by extensions.code.",
            errors.clone(),
        );
        let refresh_group = Histogram::new(exponential_buckets(1.0, 4.0, 9));
        registry.register(
            "eagerql_live_refresh_subscribers",
            "Subscribers of one operation refreshed together by one set of statements.",
            refresh_group.clone(),
        );
        let refresh_statements =
            Histogram::new([0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 25.0]);
        registry.register(
            "eagerql_live_refresh_statements",
            "SQL statements one refresh of a live query's subscribers ran (the operation's \
             planned count, whatever the number of subscribers).",
            refresh_statements.clone(),
        );
        let delivery = latency_histogram();
        registry.register(
            "eagerql_live_delivery_seconds",
            "From a committed change's arrival (or a subscriber's join) to the refresh's last \
             message handed to its connection.",
            delivery.clone(),
        );
        registry.register_collector(Box::new(Live {
            db,
            preparer,
            persisted,
            max_connections,
            live,
        }));
        Metrics {
            registry,
            requests,
            latency,
            statements,
            rows,
            db_time,
            errors,
            refresh_group,
            refresh_statements,
            delivery,
        }
    }

    /// Records one refresh of live subscribers.
    pub fn record_refresh(&self, r: &crate::live::Refresh) {
        self.refresh_group.observe(r.group as f64);
        self.refresh_statements.observe(r.statements as f64);
        self.delivery.observe(r.micros as f64 / 1e6);
    }

    /// Records one request.
    pub fn record(&self, o: &Outcome<'_>) {
        self.requests
            .get_or_create(&RequestLabels {
                operation_type: o.operation_type,
                outcome: o.outcome,
            })
            .inc();
        self.latency
            .get_or_create(&TypeLabel {
                operation_type: o.operation_type,
            })
            .observe(o.duration.as_secs_f64());
        self.statements.observe(o.statements as f64);
        self.rows.observe(o.rows as f64);
        self.db_time.observe(o.db_time.as_secs_f64());
        for code in o.codes {
            self.errors
                .get_or_create(&CodeLabel {
                    code: (*code).to_owned(),
                })
                .inc();
        }
    }

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
