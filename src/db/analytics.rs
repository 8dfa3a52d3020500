//! Analytics: hand-written aggregate SQL (`sql/queries/`), run in the database, never
//! aggregated in Rust. The rows an aggregate names (users, products) are joined into the same
//! statement with whatever the client selected on them.

use chrono::{DateTime, Utc};

use super::Backend;
use super::load::{self, Loaded};
use super::session::{Arg, Session};
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

fn sql(backend: Backend, pg: &'static str, sqlite: &'static str) -> &'static str {
    match backend {
        Backend::Postgres => pg,
        Backend::Sqlite => sqlite,
    }
}

/// `(order count, revenue in cents)` and the user row.
pub type Revenue = (i64, i64, Loaded);

fn revenue_rows(rows: Vec<(Vec<i64>, Loaded)>) -> Vec<Revenue> {
    rows.into_iter()
        .map(|(v, l)| (v[0], v.get(1).copied().unwrap_or(0), l))
        .collect()
}

/// A ranking report: `(status, window start, window end, limit)` bound in that order, rows
/// keyed by `key` with `extras`, highest revenue first, ties by key.
struct Ranking {
    name: &'static str,
    agg: &'static str,
    key: &'static str,
    extras: [&'static str; 2],
    order_by: &'static str,
}

async fn ranked(
    s: &Session,
    r: Ranking,
    status: OrderStatus,
    window: Window,
    limit: i64,
    node: &Node,
) -> AppResult<Vec<Revenue>> {
    let args = vec![
        Arg::Text(status.as_db().to_owned()),
        Arg::Ts(window.start),
        Arg::Ts(window.end),
        Arg::I64(limit),
    ];
    let rows =
        load::fetch_aggregate(s, r.name, r.agg, args, r.key, &r.extras, r.order_by, node).await?;
    Ok(revenue_rows(rows))
}

/// Top customers by revenue: active users' orders of `status` in `window`.
pub async fn top_customers(
    s: &Session,
    status: OrderStatus,
    window: Window,
    limit: i64,
    user: &Node,
) -> AppResult<Vec<Revenue>> {
    let ranking = Ranking {
        name: "analytics.top_customers",
        agg: sql(
            s.backend(),
            include_str!("../../sql/queries/top_customers.postgres.sql"),
            include_str!("../../sql/queries/top_customers.sqlite.sql"),
        ),
        key: "user_id",
        extras: ["order_count", "revenue_cents"],
        order_by: "agg.revenue_cents desc, agg.user_id",
    };
    ranked(s, ranking, status, window, limit, user).await
}

/// The lesson's spending summary: every active user, those without orders last with 0.
pub async fn spending_summary(
    s: &Session,
    first: i64,
    offset: i64,
    user: &Node,
) -> AppResult<Vec<Revenue>> {
    let agg = sql(
        s.backend(),
        include_str!("../../sql/queries/spending_summary.postgres.sql"),
        include_str!("../../sql/queries/spending_summary.sqlite.sql"),
    );
    let rows = load::fetch_aggregate(
        s,
        "analytics.spending_summary",
        agg,
        vec![Arg::I64(first), Arg::I64(offset)],
        "user_id",
        &["order_count", "revenue_cents"],
        // Users without orders (count 0, sum NULL in the aggregate) sort last.
        "(agg.order_count = 0), agg.revenue_cents desc, agg.user_id",
        user,
    )
    .await?;
    Ok(revenue_rows(rows))
}

/// Best-selling products: `(units sold, revenue in cents)` and the product row.
pub async fn product_sales(
    s: &Session,
    status: OrderStatus,
    window: Window,
    limit: i64,
    product: &Node,
) -> AppResult<Vec<Revenue>> {
    let ranking = Ranking {
        name: "analytics.product_sales",
        agg: sql(
            s.backend(),
            include_str!("../../sql/queries/product_sales.postgres.sql"),
            include_str!("../../sql/queries/product_sales.sqlite.sql"),
        ),
        key: "product_id",
        extras: ["units_sold", "revenue_cents"],
        order_by: "agg.revenue_cents desc, agg.product_id",
    };
    ranked(s, ranking, status, window, limit, product).await
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
    let q = sql(
        s.backend(),
        include_str!("../../sql/queries/revenue_by_day.postgres.sql"),
        include_str!("../../sql/queries/revenue_by_day.sqlite.sql"),
    );
    s.fetch(
        "analytics.revenue_by_day",
        q.to_owned(),
        vec![
            Arg::Ts(window.start),
            Arg::Ts(window.end),
            Arg::Text(status.as_db().to_owned()),
        ],
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
