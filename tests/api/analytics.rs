//! `Query.analytics`: every report checked against a reference computed here from the raw
//! rows, on ties, window edges, inactive users and users without orders; statement counts
//! stay constant whatever is selected below the named users and products.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use eagerql::db::session::Arg;
use eagerql::model::OrderStatus;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{deactivate, exec, insert_order, spawn_app};
use crate::reference::Model;

fn as_of() -> DateTime<Utc> {
    // Seeded orders lie in the 90 days before today's midnight (UTC).
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
}

/// The reference top customers: (user id, order count, revenue).
fn reference_top(
    m: &Model,
    status: OrderStatus,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    limit: usize,
) -> Vec<(i64, i64, Decimal)> {
    let mut by_user: BTreeMap<i64, (i64, Decimal)> = BTreeMap::new();
    for o in &m.orders {
        let active = m.users.iter().any(|u| u.id == o.user_id && u.is_active);
        if active && o.status == status && o.created_at >= start && o.created_at < end {
            let e = by_user.entry(o.user_id).or_default();
            e.0 += 1;
            e.1 += o.total_amount;
        }
    }
    let mut rows: Vec<(i64, i64, Decimal)> =
        by_user.into_iter().map(|(u, (c, r))| (u, c, r)).collect();
    rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    rows.truncate(limit);
    rows
}

fn as_triples(v: &Value, key: &str) -> Vec<(i64, i64, Decimal)> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["user"]["id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("id"),
                r["orderCount"].as_i64().expect("orderCount"),
                r[key]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("decimal"),
            )
        })
        .collect()
}

#[tokio::test]
async fn top_customers_match_the_reference() {
    let app = spawn_app().await;
    app.seed(300, 6, 2, 40).await;
    deactivate(&app, 7).await;
    let m = Model::load(&app.db).await;
    let end = as_of();
    for (days, limit, status) in [
        (30, 10, "COMPLETED"),
        (7, 100, "COMPLETED"),
        (90, 5, "SHIPPED"),
        (1, 3, "PENDING"),
    ] {
        let resp = app
            .gql_vars(
                "query($d: Int!, $l: Int!, $s: OrderStatus!, $a: DateTime) { analytics { topCustomers(days: $d, limit: $l, status: $s, asOf: $a) { user { id } orderCount totalRevenue } } }",
                json!({ "d": days, "l": limit, "s": status, "a": end.to_rfc3339() }),
            )
            .await;
        let got = as_triples(&resp.data()["analytics"]["topCustomers"], "totalRevenue");
        let st = OrderStatus::from_graphql(status).expect("status");
        let want = reference_top(&m, st, end - Duration::days(days), end, limit as usize);
        assert!(!want.is_empty() || days == 1);
        assert_eq!(got, want, "days {days} limit {limit} status {status}");
        assert_eq!(resp.statements, 1, "the user is joined into the aggregate");
    }
}

#[tokio::test]
async fn top_customers_ties_window_edges_and_inactive_users() {
    let app = spawn_app().await;
    app.seed(6, 0, 0, 1).await;
    let end = Utc
        .with_ymd_and_hms(2026, 3, 1, 0, 0, 0)
        .single()
        .expect("date");
    let start = end - Duration::days(30);
    // Users 2 and 1 tie on revenue: the lower id comes first.
    insert_order(&app, 2, "completed", 1_000, start).await; // the start is inside the window
    insert_order(&app, 1, "completed", 400, end - Duration::seconds(1)).await;
    insert_order(&app, 1, "completed", 600, start + Duration::days(3)).await;
    // User 3 would lead, but is inactive.
    insert_order(&app, 3, "completed", 99_900, start + Duration::days(1)).await;
    deactivate(&app, 3).await;
    // User 4: only outside the window (the end is exclusive) or not completed.
    insert_order(&app, 4, "completed", 50_000, end).await;
    insert_order(&app, 4, "completed", 50_000, start - Duration::seconds(1)).await;
    insert_order(&app, 4, "cancelled", 50_000, start + Duration::days(2)).await;
    // User 5: the top, with sub-cent-exact sums.
    insert_order(&app, 5, "completed", 1_001, start + Duration::days(5)).await;
    insert_order(&app, 5, "completed", 2, start + Duration::days(6)).await;

    let resp = app
        .gql_vars(
            "query($a: DateTime) { analytics { topCustomers(asOf: $a) { user { id email } orderCount totalRevenue } } }",
            json!({ "a": end.to_rfc3339() }),
        )
        .await;
    assert_eq!(
        resp.data()["analytics"]["topCustomers"],
        json!([
            { "user": { "id": "5", "email": "user5@example.com" }, "orderCount": 2, "totalRevenue": "10.03" },
            { "user": { "id": "1", "email": "user1@example.com" }, "orderCount": 2, "totalRevenue": "10.00" },
            { "user": { "id": "2", "email": "user2@example.com" }, "orderCount": 1, "totalRevenue": "10.00" },
        ])
    );

    let empty = app
        .gql(r#"{ analytics { topCustomers(asOf: "2001-01-01T00:00:00Z") { user { id } } } }"#)
        .await;
    assert_eq!(empty.data()["analytics"]["topCustomers"], json!([]));
}

#[tokio::test]
async fn spending_summary_lists_every_active_user_with_the_orderless_last() {
    let app = spawn_app().await;
    app.seed(40, 2, 1, 5).await;
    // Users without orders, and an inactive user.
    for i in 0..3 {
        exec(
            &app,
            "insert into users (email, username, password_hash) values ($1, $2, '!')",
            vec![
                Arg::Text(format!("new{i}@example.com")),
                Arg::Text(format!("new{i}")),
            ],
        )
        .await;
    }
    deactivate(&app, 2).await;
    let m = Model::load(&app.db).await;
    let mut want: Vec<(i64, i64, Decimal)> = m
        .users
        .iter()
        .filter(|u| u.is_active)
        .map(|u| {
            let mine: Vec<_> = m.orders.iter().filter(|o| o.user_id == u.id).collect();
            (
                u.id,
                mine.len() as i64,
                mine.iter().map(|o| o.total_amount).sum(),
            )
        })
        .collect();
    want.sort_by(|a, b| {
        (a.1 == 0)
            .cmp(&(b.1 == 0))
            .then(b.2.cmp(&a.2))
            .then(a.0.cmp(&b.0))
    });

    let resp = app
        .gql("{ analytics { spendingSummary(first: 1000) { user { id } orderCount totalRevenue } } }")
        .await;
    let got = as_triples(&resp.data()["analytics"]["spendingSummary"], "totalRevenue");
    assert_eq!(got.len(), 42);
    assert_eq!(got, want);
    assert_eq!(
        &got[39..].iter().map(|r| (r.1, r.2)).collect::<Vec<_>>(),
        &[(0, Decimal::ZERO); 3]
    );

    let page = app
        .gql("{ analytics { spendingSummary(first: 5, offset: 10) { user { id } orderCount totalRevenue } } }")
        .await;
    assert_eq!(
        as_triples(&page.data()["analytics"]["spendingSummary"], "totalRevenue"),
        want[10..15]
    );
}

#[tokio::test]
async fn revenue_by_day_lists_every_day_of_the_window() {
    let app = spawn_app().await;
    app.seed(100, 5, 2, 20).await;
    let m = Model::load(&app.db).await;
    let end = as_of();
    let resp = app
        .gql_vars(
            "query($a: DateTime) { analytics { revenueByDay(days: 14, asOf: $a) { day orderCount revenue } } }",
            json!({ "a": end.to_rfc3339() }),
        )
        .await;
    let days = resp.data()["analytics"]["revenueByDay"]
        .as_array()
        .expect("days")
        .clone();
    assert_eq!(days.len(), 14);
    for (i, d) in days.iter().enumerate() {
        let day = (end - Duration::days(14 - i as i64)).date_naive();
        assert_eq!(d["day"], json!(day.format("%Y-%m-%d").to_string()));
        let orders: Vec<_> = m
            .orders
            .iter()
            .filter(|o| o.status == OrderStatus::Completed && o.created_at.date_naive() == day)
            .collect();
        assert_eq!(d["orderCount"], json!(orders.len()));
        let total: Decimal = orders.iter().map(|o| o.total_amount).sum();
        assert_eq!(
            d["revenue"]
                .as_str()
                .and_then(|s| s.parse::<Decimal>().ok()),
            Some(total)
        );
    }
    assert_eq!(resp.statements, 1);

    let quiet = app
        .gql(r#"{ analytics { revenueByDay(days: 3, asOf: "2001-01-01T12:00:00Z") { day orderCount revenue } } }"#)
        .await;
    assert_eq!(
        quiet.data()["analytics"]["revenueByDay"],
        json!([
            { "day": "2000-12-29", "orderCount": 0, "revenue": "0.00" },
            { "day": "2000-12-30", "orderCount": 0, "revenue": "0.00" },
            { "day": "2000-12-31", "orderCount": 0, "revenue": "0.00" },
            { "day": "2001-01-01", "orderCount": 0, "revenue": "0.00" },
        ])
    );
}

#[tokio::test]
async fn product_sales_match_the_reference() {
    let app = spawn_app().await;
    app.seed(120, 4, 3, 25).await;
    let m = Model::load(&app.db).await;
    let end = as_of();
    let start = end - Duration::days(30);
    let mut by_product: BTreeMap<i64, (i64, Decimal)> = BTreeMap::new();
    for i in &m.items {
        let o = m.orders.iter().find(|o| o.id == i.order_id).expect("order");
        if o.status == OrderStatus::Completed && o.created_at >= start && o.created_at < end {
            let e = by_product.entry(i.product_id).or_default();
            e.0 += i64::from(i.quantity);
            e.1 += i.unit_price * Decimal::from(i.quantity);
        }
    }
    let mut want: Vec<(i64, i64, Decimal)> = by_product
        .into_iter()
        .map(|(p, (u, r))| (p, u, r))
        .collect();
    want.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    want.truncate(10);

    let resp = app
        .gql_vars(
            "query($a: DateTime) { analytics { productSales(asOf: $a) { product { id sku } unitsSold revenue } } }",
            json!({ "a": end.to_rfc3339() }),
        )
        .await;
    let got: Vec<(i64, i64, Decimal)> = resp.data()["analytics"]["productSales"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            (
                r["product"]["id"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("id"),
                r["unitsSold"].as_i64().expect("units"),
                r["revenue"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .expect("revenue"),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(resp.statements, 1);
}

#[tokio::test]
async fn nested_selections_under_reports_cost_one_batch_per_edge_at_any_size() {
    for users in [1u64, 10, 300] {
        let app = spawn_app().await;
        app.seed(users, 8, 1, 3).await;
        let resp = app
            .gql(
                "{ analytics {
                    topCustomers(days: 90, limit: 100) { user { id email orders(first: 3) { id items { product { name } } } } orderCount totalRevenue }
                    productSales(days: 90) { product { name orderItems { id } } unitsSold }
                    spendingSummary(first: 50) { user { username } totalRevenue }
                } }",
            )
            .await;
        let top = resp.data()["analytics"]["topCustomers"]
            .as_array()
            .expect("top")
            .clone();
        assert!(!top.is_empty());
        for row in &top {
            assert!(
                row["user"]["orders"]
                    .as_array()
                    .is_some_and(|o| !o.is_empty() && o.len() <= 3)
            );
        }
        // topCustomers 1 + orders 1 + items 1; productSales 1 + orderItems 1; spendingSummary 1.
        assert_eq!(resp.statements, 6, "at {users} users");
    }
}

#[tokio::test]
async fn arguments_are_validated() {
    let app = spawn_app().await;
    for q in [
        "{ analytics { topCustomers(days: 0) { orderCount } } }",
        "{ analytics { topCustomers(days: 3651) { orderCount } } }",
        "{ analytics { topCustomers(limit: 0) { orderCount } } }",
        "{ analytics { topCustomers(limit: 101) { orderCount } } }",
        "{ analytics { productSales(limit: -1) { unitsSold } } }",
        "{ analytics { revenueByDay(days: -3) { day } } }",
        "{ analytics { spendingSummary(first: 5000) { orderCount } } }",
    ] {
        let resp = app.gql(q).await;
        assert_eq!(resp.error_code(), "BAD_USER_INPUT", "{q}: {}", resp.body);
        assert_eq!(resp.statements, 0);
    }
    let bad_date = app
        .gql(r#"{ analytics { topCustomers(asOf: "yesterday") { orderCount } } }"#)
        .await;
    assert_eq!(bad_date.status, 400);
}
