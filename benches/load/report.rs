//! Result rows and how they are printed (tables, JSON).

use super::*;

/// One result line.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Row {
    pub(crate) backend: &'static str,
    pub(crate) dataset: String,
    pub(crate) section: &'static str,
    pub(crate) workload: String,
    pub(crate) clients: usize,
    pub(crate) requests: u64,
    pub(crate) errors: u64,
    pub(crate) requests_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) statements_per_request: f64,
    pub(crate) statements_min: u64,
    pub(crate) statements_max: u64,
    pub(crate) response_bytes: f64,
    pub(crate) peak_rss_mib: Option<f64>,
    /// RSS when the workload started.
    pub(crate) start_rss_mib: Option<f64>,
    /// RSS `--settle` seconds after the workload ended.
    pub(crate) settled_rss_mib: Option<f64>,
    pub(crate) direct: Option<DirectRow>,
    /// Server p50 latency over direct p50 latency.
    pub(crate) server_over_direct_p50: Option<f64>,
    /// The database's floor (PostgreSQL): pgbench's requests per second on the same SQL.
    pub(crate) floor_per_sec: Option<f64>,
    /// The server's CPU per request: user and system microseconds.
    pub(crate) cpu_us_per_req: Option<(f64, f64)>,
    /// PostgreSQL's CPU per request (all its processes, user and system), microseconds.
    pub(crate) db_cpu_us_per_req: Option<f64>,
    /// Rows (scale shapes: parent users selected).
    pub(crate) parents: Option<u64>,
    pub(crate) note: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectRow {
    pub(crate) requests_per_sec: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) statements: u64,
    pub(crate) rows_per_request: f64,
}

impl Row {
    /// Appends `note` to the row's note (`; ` between notes).
    pub(crate) fn add_note(&mut self, note: String) {
        self.note = Some(match self.note.take() {
            Some(n) => format!("{n}; {note}"),
            None => note,
        });
    }

    pub(crate) fn from_stats(stats: &Stats, clients: usize) -> Row {
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
pub(crate) struct Out {
    pub(crate) json: bool,
    pub(crate) rows: Vec<Row>,
    pub(crate) failures: Vec<String>,
}

impl Out {
    pub(crate) fn print(&self, text: &str) {
        if self.json {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }

    pub(crate) fn fail(&mut self, what: String) {
        eprintln!("!! {what}");
        self.failures.push(what);
    }
}

pub(crate) fn progress(msg: &str) {
    eprintln!("-- {msg}");
}

pub(crate) fn fmt_f(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".to_owned()
    }
}

pub(crate) fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    v.map(|v| fmt_f(v, decimals))
        .unwrap_or_else(|| "-".to_owned())
}

pub(crate) fn fmt_stmts(r: &Row) -> String {
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

pub(crate) fn fmt_bytes(v: f64) -> String {
    if v.is_finite() {
        thousands(v.round() as u64)
    } else {
        "-".to_owned()
    }
}

/// The main table: one line per workload.
pub(crate) fn print_table(out: &Out, title: &str, rows: &[&Row]) {
    let mut t = String::new();
    t.push_str(&format!("\n{title}\n"));
    t.push_str(&format!(
        "{:<16} {:>9} {:>8} {:>8} {:>10} {:>12} {:>9} {:>13} {:>9} | {:>9} {:>8} {:>8} {:>9} | {:>9} {:>9}\n",
        "workload",
        "req/s",
        "p50 ms",
        "p99 ms",
        "stmts/req",
        "resp bytes",
        "peak MiB",
        "cpu us usr/sys",
        "db cpu us",
        "direct/s",
        "p50 ms",
        "p99 ms",
        "srv/direct",
        "floor/s",
        "srv/floor"
    ));
    t.push_str(&format!("{}\n", "-".repeat(167)));
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
            "{:<16} {:>9} {:>8} {:>8} {:>10} {:>12} {:>9} {:>13} {:>9} | {:>9} {:>8} {:>8} {:>9} | {:>9} {:>9}\n",
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
            fmt_opt(r.db_cpu_us_per_req, 0),
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
         direct/s: the same SQL replayed through sqlx in the same transaction, one held \
         connection per client (a bare client on the server's driver); srv/direct: server p50 \
         over its p50;\n  \
         floor/s: pgbench on the same SQL in the same snapshot (PostgreSQL), srv/floor: req/s over it\n",
    );
    out.print(&t);
}

/// The scale table: the same shape on more rows; statements stay flat, cost grows linearly.
pub(crate) fn print_scale_table(out: &Out, title: &str, rows: &[&Row]) {
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
