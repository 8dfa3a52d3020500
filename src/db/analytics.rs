//! Analytics: hand-written aggregate SQL (`sql/queries/`), run in the database, never
//! aggregated in Rust. The rows an aggregate names (users, products) are joined into the same
//! statement with whatever the client selected on them.

use chrono::{DateTime, Utc};

use super::Backend;
use super::load::{self, Loaded};
use super::session::{Session, sqlite_ts};
use crate::error::AppResult;
use crate::model::OrderStatus;
use crate::planner::Node;

/// A time window `[start, end)`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
}

/// The values of one report run.
#[derive(Copy, Clone, Debug, Default)]
struct Values {
    status: Option<OrderStatus>,
    window: Option<Window>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// A report's SQL with its values written in as typed literals: `{status}` (from the closed
/// [`OrderStatus`] enum), `{start}`/`{end}` (formatted from validated timestamps), `{limit}` and
/// `{offset}` (integers). Nothing a client typed reaches the text as it is. Literals, unlike
/// bound parameters, let the database plan each run for its window (a day or ten years need
/// different plans) and match the partial indexes on `status = 'completed'`.
fn render(backend: Backend, sql: &str, v: Values) -> String {
    let mut out = sql.to_owned();
    if let Some(status) = v.status {
        out = out.replace("{status}", &format!("'{}'", status.as_db()));
    }
    if let Some(w) = v.window {
        out = out
            .replace(
                "{start_day}",
                &format!("'{}'", w.start.date_naive().format("%Y-%m-%d")),
            )
            .replace("{start}", &ts_literal(backend, w.start))
            .replace("{end}", &ts_literal(backend, w.end));
    }
    if let Some(n) = v.limit {
        out = out.replace("{limit}", &n.to_string());
    }
    if let Some(n) = v.offset {
        out = out.replace("{offset}", &n.to_string());
    }
    out
}

/// A window bound as a literal. Stored timestamps have microseconds on PostgreSQL and
/// milliseconds on SQLite, so the bound is rounded *up* to that precision: for every stored
/// `t`, `t >= bound` and `t < bound` then mean exactly what they mean for the bound as given
/// (a bound of `…:38.000001` must count an order placed at `…:38.000` as before it).
fn ts_literal(backend: Backend, t: DateTime<Utc>) -> String {
    match backend {
        Backend::Postgres => format!(
            "'{}'::timestamptz",
            ceil_to(t, 1_000).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        ),
        Backend::Sqlite => format!("'{}'", sqlite_ts(ceil_to(t, 1_000_000))),
    }
}

/// `t` rounded up to a multiple of `unit` nanoseconds within its second.
fn ceil_to(t: DateTime<Utc>, unit: u32) -> DateTime<Utc> {
    let rest = t.timestamp_subsec_nanos() % unit;
    if rest == 0 {
        t
    } else {
        t + chrono::Duration::nanoseconds(i64::from(unit - rest))
    }
}

/// `(order count, revenue in cents)` and the user row.
pub type Revenue = (i64, i64, Loaded);

fn revenue_rows(rows: Vec<(Vec<i64>, Loaded)>) -> Vec<Revenue> {
    rows.into_iter()
        .map(|(v, l)| (v[0], v.get(1).copied().unwrap_or(0), l))
        .collect()
}

/// A ranking report over `{status}`, `{start}`, `{end}` and `{limit}`: rows
/// keyed by `key` with `extras`, highest revenue first, ties by key.
/// A report that ranks rows of one entity by a grouped aggregate.
pub struct Ranking {
    name: &'static str,
    /// The aggregate, in each dialect.
    agg: [&'static str; 2],
    key: &'static str,
    extras: [&'static str; 2],
    order_by: &'static str,
}

/// Top customers by revenue: active users' orders of the status in the window.
pub const TOP_CUSTOMERS: Ranking = Ranking {
    name: "analytics.top_customers",
    agg: [
        include_str!("../../sql/queries/top_customers.postgres.sql"),
        include_str!("../../sql/queries/top_customers.sqlite.sql"),
    ],
    key: "user_id",
    extras: ["order_count", "revenue_cents"],
    order_by: "agg.revenue_cents desc, agg.user_id",
};

/// Best-selling products: `(units sold, revenue in cents)` and the product row.
pub const PRODUCT_SALES: Ranking = Ranking {
    name: "analytics.product_sales",
    agg: [
        include_str!("../../sql/queries/product_sales.postgres.sql"),
        include_str!("../../sql/queries/product_sales.sqlite.sql"),
    ],
    key: "product_id",
    extras: ["units_sold", "revenue_cents"],
    order_by: "agg.revenue_cents desc, agg.product_id",
};

/// The first `limit` rows of a ranking over the orders of `status` in `window`, each with
/// its two figures and its row loaded as `node` plans.
pub async fn ranked(
    s: &Session,
    r: &Ranking,
    status: OrderStatus,
    window: Window,
    limit: i64,
    node: &Node,
) -> AppResult<Vec<Revenue>> {
    let values = Values {
        status: Some(status),
        window: Some(window),
        limit: Some(limit),
        offset: None,
    };
    let agg = render(s.backend(), s.backend().pick(r.agg[0], r.agg[1]), values);
    let rows = load::fetch_aggregate(s, r.name, &agg, r.key, &r.extras, r.order_by, node).await?;
    Ok(revenue_rows(rows))
}

/// The lesson's spending summary: every active user, those without orders last with 0.
pub async fn spending_summary(
    s: &Session,
    first: i64,
    offset: i64,
    user: &Node,
) -> AppResult<Vec<Revenue>> {
    let agg = s.backend().pick(
        include_str!("../../sql/queries/spending_summary.postgres.sql"),
        include_str!("../../sql/queries/spending_summary.sqlite.sql"),
    );
    let values = Values {
        limit: Some(first),
        offset: Some(offset),
        ..Values::default()
    };
    let rows = load::fetch_aggregate(
        s,
        "analytics.spending_summary",
        &render(s.backend(), agg, values),
        "user_id",
        &["order_count", "revenue_cents"],
        // Users without orders (count 0, sum NULL in the aggregate) sort last.
        "(agg.order_count = 0), agg.revenue_cents desc, agg.user_id",
        user,
    )
    .await?;
    Ok(revenue_rows(rows))
}

/// One day of revenue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DayRow {
    /// The UTC date, `YYYY-MM-DD`.
    pub day: String,
    /// Orders that day.
    pub order_count: i64,
    /// Their revenue in cents.
    pub revenue_cents: i64,
}

/// Revenue per UTC day over `window`, every day listed.
pub async fn revenue_by_day(
    s: &Session,
    status: OrderStatus,
    window: Window,
) -> AppResult<Vec<DayRow>> {
    let q = s.backend().pick(
        include_str!("../../sql/queries/revenue_by_day.postgres.sql"),
        include_str!("../../sql/queries/revenue_by_day.sqlite.sql"),
    );
    s.fetch_unprepared(
        "analytics.revenue_by_day",
        render(
            s.backend(),
            q,
            Values {
                status: Some(status),
                window: Some(window),
                ..Values::default()
            },
        ),
        |r| {
            Ok(DayRow {
                day: r.text(0)?,
                order_count: r.i64(1)?,
                revenue_cents: r.i64(2)?,
            })
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL without its `--` comments.
    fn code(sql: &str) -> String {
        sql.lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn values_are_written_in_as_typed_literals() {
        for status in [
            OrderStatus::Pending,
            OrderStatus::Completed,
            OrderStatus::Shipped,
            OrderStatus::Cancelled,
        ] {
            let db = status.as_db();
            assert!(db.bytes().all(|b| b.is_ascii_lowercase()), "{db}");
            let v = Values {
                status: Some(status),
                ..Values::default()
            };
            assert_eq!(
                render(Backend::Postgres, "where o.status = {status} and x", v),
                format!("where o.status = '{db}' and x")
            );
        }
        let start = DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let v = Values {
            window: Some(Window { start, end: start }),
            limit: Some(10),
            offset: Some(0),
            ..Values::default()
        };
        let q = "a >= {start} and a < {end} limit {limit} offset {offset}";
        assert_eq!(
            render(Backend::Postgres, q, v),
            "a >= '2026-01-02T03:04:05.123456Z'::timestamptz and \
             a < '2026-01-02T03:04:05.123456Z'::timestamptz limit 10 offset 0"
        );
        // SQLite stores milliseconds: a bound between two of them is rounded up, so that an
        // order at .123 counts as before a bound of .123456 (not at it).
        assert_eq!(
            render(Backend::Sqlite, q, v),
            "a >= '2026-01-02T03:04:05.124Z' and a < '2026-01-02T03:04:05.124Z' limit 10 offset 0"
        );
        assert_eq!(
            render(Backend::Sqlite, "{start_day}", v),
            "'2026-01-02'",
            "the first day of a window is the exact start's"
        );
        let ns = DateTime::parse_from_rfc3339("2026-01-02T23:59:59.9999995Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let v = Values {
            window: Some(Window { start: ns, end: ns }),
            ..Values::default()
        };
        assert_eq!(
            render(Backend::Postgres, "{start} {start_day}", v),
            "'2026-01-03T00:00:00.000000Z'::timestamptz '2026-01-02'"
        );
    }

    #[test]
    fn every_report_is_left_without_placeholders_or_parameters() {
        let all = Values {
            status: Some(OrderStatus::Completed),
            window: Some(Window {
                start: DateTime::UNIX_EPOCH,
                end: DateTime::UNIX_EPOCH,
            }),
            limit: Some(10),
            offset: Some(0),
        };
        for (backend, q) in [
            (
                Backend::Postgres,
                include_str!("../../sql/queries/top_customers.postgres.sql"),
            ),
            (
                Backend::Sqlite,
                include_str!("../../sql/queries/top_customers.sqlite.sql"),
            ),
            (
                Backend::Postgres,
                include_str!("../../sql/queries/product_sales.postgres.sql"),
            ),
            (
                Backend::Sqlite,
                include_str!("../../sql/queries/product_sales.sqlite.sql"),
            ),
            (
                Backend::Postgres,
                include_str!("../../sql/queries/revenue_by_day.postgres.sql"),
            ),
            (
                Backend::Sqlite,
                include_str!("../../sql/queries/revenue_by_day.sqlite.sql"),
            ),
            (
                Backend::Postgres,
                include_str!("../../sql/queries/spending_summary.postgres.sql"),
            ),
            (
                Backend::Sqlite,
                include_str!("../../sql/queries/spending_summary.sqlite.sql"),
            ),
        ] {
            let filled = code(&render(backend, q, all));
            assert!(!filled.contains('{') && !filled.contains('$'), "{filled}");
        }
    }
}
