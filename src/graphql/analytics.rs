//! `Query.analytics`: reports computed by hand-written aggregate SQL in the database. The
//! users and products they name are joined into the aggregate's statement, and anything
//! selected below them is batched as usual, so each report costs `1 + batches` statements.

use async_graphql::{Context, Object, Result, SimpleObject};
use chrono::{Duration, Utc};

use super::RequestContext;
use super::args::page_args;
use super::preload;
use super::scalars::{Date, DateTime, Decimal};
use super::types::{self, typed};
use super::types::{Product, User};
use crate::db::Reserved;
use crate::db::analytics::{self, Revenue, Window};
use crate::db::load::Loaded;
use crate::db::money::from_cents;
use crate::entities::Entity;
use crate::error::AppError;
use crate::model::OrderStatus;
use crate::planner::Node;

/// Largest `days` window accepted.
const MAX_DAYS: i32 = 3650;
/// Largest `limit` accepted.
const MAX_LIMIT: i32 = 100;

/// Revenue reports over orders, users and products.
pub struct Analytics;

/// A customer's orders and revenue.
#[derive(SimpleObject)]
pub struct CustomerRevenue {
    /// The customer.
    user: User,
    /// Orders counted.
    order_count: i32,
    /// Sum of their totals, exact.
    total_revenue: Decimal,
}

/// Orders and revenue of one day.
#[derive(SimpleObject)]
pub struct DailyRevenue {
    /// The UTC date.
    day: Date,
    /// Orders placed that day.
    order_count: i32,
    /// Sum of their totals, exact.
    revenue: Decimal,
}

/// A product's sales.
#[derive(SimpleObject)]
pub struct ProductSales {
    /// The product.
    product: Product,
    /// Units sold.
    units_sold: i32,
    /// Sum of quantity times the unit price paid, exact.
    revenue: Decimal,
}

fn window(days: i32, as_of: Option<DateTime>) -> Result<Window, AppError> {
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(AppError::bad_input(format!(
            "`days` must be between 1 and {MAX_DAYS}, got {days}"
        )));
    }
    let end = as_of.map(|d| d.0).unwrap_or_else(Utc::now);
    let start = end - Duration::days(i64::from(days));
    // Both backends store and compare these years exactly (PostgreSQL has no year 0, and
    // SQLite compares four-digit years as text).
    let earliest = chrono::NaiveDate::from_ymd_opt(1900, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc());
    let latest = chrono::NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc());
    if earliest.is_some_and(|e| start < e) || latest.is_some_and(|l| end > l) {
        return Err(AppError::bad_input(
            "the window must lie between 1900-01-01 and 9999-12-31 (UTC)",
        ));
    }
    Ok(Window { start, end })
}

fn check_limit(limit: i32) -> Result<i64, AppError> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(AppError::bad_input(format!(
            "`limit` must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(i64::from(limit))
}

fn count(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn session<'a>(ctx: &Context<'a>) -> Result<&'a crate::db::Session, AppError> {
    RequestContext::of(ctx).map(|rc| &rc.session)
}

/// Builds the rows a report ranked (with their selected fields and edges) and pairs each with
/// its two figures.
async fn ranked<T: types::Typed, R>(
    ctx: &Context<'_>,
    node: &Node,
    rows: Vec<Revenue>,
    make: impl Fn(types::Object<T>, i64, i64) -> R,
) -> Result<Vec<R>> {
    let (stats, loaded): (Vec<(i64, i64)>, Vec<Loaded>) =
        rows.into_iter().map(|(a, b, l)| ((a, b), l)).unzip();
    let built: Vec<types::Object<T>> = typed(preload::build(session(ctx)?, node, loaded).await?);
    Ok(stats
        .into_iter()
        .zip(built)
        .map(|((a, b), row)| make(row, a, b))
        .collect())
}

fn revenue_of(user: User, orders: i64, cents: i64) -> CustomerRevenue {
    CustomerRevenue {
        user,
        order_count: count(orders),
        total_revenue: Decimal(from_cents(cents)),
    }
}

/// What a ranked report is asked for: its window, which orders count and how many rows.
struct Ask {
    days: i32,
    as_of: Option<DateTime>,
    status: OrderStatus,
    limit: i32,
}

/// A ranked report: its arguments checked, its ranked rows read with the selected fields of
/// the rows it ranks (`edge`: the field naming them, and their entity), each paired with its
/// two figures by `make`.
async fn rank<T: types::Typed, R>(
    ctx: &Context<'_>,
    ranking: &analytics::Ranking,
    (field, entity): (&str, Entity),
    ask: Ask,
    make: impl Fn(types::Object<T>, i64, i64) -> R,
) -> Result<Vec<R>> {
    let window = window(ask.days, ask.as_of)?;
    let limit = check_limit(ask.limit)?;
    let Some(node) = preload::plan_child(ctx, field, entity, 1)? else {
        return Ok(Vec::new());
    };
    let rows = analytics::ranked(session(ctx)?, ranking, ask.status, window, limit, &node).await?;
    ranked(ctx, &node, rows, make).await
}

/// Revenue reports computed by aggregate SQL in the database. Windows are `[asOf - days,
/// asOf)`, `asOf` defaulting to now; `days` is 1 to 3650 and `limit` 1 to 100.
#[Object]
impl Analytics {
    /// Active customers ranked by the revenue of their orders in the window (the lesson's
    /// top-customers report), highest first; ties by user id.
    async fn top_customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 30, desc = "Length of the window in days.")] days: i32,
        #[graphql(default = 10, desc = "How many customers.")] limit: i32,
        #[graphql(default_with = "OrderStatus::Completed", desc = "Which orders count.")]
        status: OrderStatus,
        #[graphql(desc = "End of the window (exclusive); now when omitted.")] as_of: Option<
            DateTime,
        >,
    ) -> Result<Vec<CustomerRevenue>> {
        let ask = Ask {
            days,
            as_of,
            status,
            limit,
        };
        rank(
            ctx,
            &analytics::TOP_CUSTOMERS,
            ("user", Entity::User),
            ask,
            revenue_of,
        )
        .await
    }

    /// Every active user with the number and total of all their orders (the lesson's spending
    /// summary), highest total first; users without orders have 0 and come last.
    async fn spending_summary(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20, desc = "Page size (at most the configured maximum).")] first: i32,
        #[graphql(default = 0, desc = "Rows skipped before the page starts.")] offset: i32,
    ) -> Result<Vec<CustomerRevenue>> {
        let (first, offset) = page_args(ctx, "spendingSummary", first, offset)?;
        let Some(node) = preload::plan_child(ctx, "user", Entity::User, 1)? else {
            return Ok(Vec::new());
        };
        let rows = analytics::spending_summary(session(ctx)?, first, offset, &node).await?;
        ranked(ctx, &node, rows, revenue_of).await
    }

    /// Orders and revenue per UTC day of the window, oldest first; every day is listed, days
    /// without orders with 0.
    async fn revenue_by_day(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 30, desc = "Length of the window in days.")] days: i32,
        #[graphql(desc = "End of the window (exclusive); now when omitted.")] as_of: Option<
            DateTime,
        >,
        #[graphql(default_with = "OrderStatus::Completed", desc = "Which orders count.")]
        status: OrderStatus,
    ) -> Result<Vec<DailyRevenue>> {
        let window = window(days, as_of)?;
        let s = session(ctx)?;
        let reserved = s.log().reserve_plan(
            preload::key(ctx),
            1,
            || serde_json::json!({ "statement": "report" }),
        )?;
        if reserved == Reserved::PlanOnly {
            return Ok(Vec::new());
        }
        let rows = analytics::revenue_by_day(s, status, window).await?;
        rows.into_iter()
            .map(|r| {
                let day = chrono::NaiveDate::parse_from_str(&r.day, "%Y-%m-%d")
                    .map_err(AppError::internal)?;
                Ok(DailyRevenue {
                    day: Date(day),
                    order_count: count(r.order_count),
                    revenue: Decimal(from_cents(r.revenue_cents)),
                })
            })
            .collect()
    }

    /// Products ranked by the revenue of their items in orders of the window, highest first;
    /// ties by product id.
    async fn product_sales(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 30, desc = "Length of the window in days.")] days: i32,
        #[graphql(default = 10, desc = "How many products.")] limit: i32,
        #[graphql(desc = "End of the window (exclusive); now when omitted.")] as_of: Option<
            DateTime,
        >,
        #[graphql(default_with = "OrderStatus::Completed", desc = "Which orders count.")]
        status: OrderStatus,
    ) -> Result<Vec<ProductSales>> {
        let ask = Ask {
            days,
            as_of,
            status,
            limit,
        };
        let make = |product, units, cents| ProductSales {
            product,
            units_sold: count(units),
            revenue: Decimal(from_cents(cents)),
        };
        rank(
            ctx,
            &analytics::PRODUCT_SALES,
            ("product", Entity::Product),
            ask,
            make,
        )
        .await
    }
}
