//! `Query.analytics`: every report checked against the oracle's, computed from the raw rows,
//! and by hand on ties, window edges, inactive users and users without orders; statement counts
//! stay constant whatever is selected below the named users and products.

use chrono::{DateTime, Duration, TimeZone, Utc};
use eagerql::db::session::Arg;
use serde_json::json;

use crate::helpers::{deactivate, exec, insert_order, spawn_app};
use crate::model::Model;

fn as_of() -> DateTime<Utc> {
    // Seeded orders lie in the 90 days before today's midnight (UTC).
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
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
        let query = "query($d: Int!, $l: Int!, $s: OrderStatus!, $a: DateTime) { analytics { topCustomers(days: $d, limit: $l, status: $s, asOf: $a) { user { id } orderCount totalRevenue } } }";
        let vars = json!({ "d": days, "l": limit, "s": status, "a": end.to_rfc3339() });
        let resp = app.gql_vars(query, vars.clone()).await;
        let want = m.expect(query, &vars);
        let got = &resp.data()["analytics"]["topCustomers"];
        assert!(!got.as_array().expect("a list").is_empty() || days == 1);
        assert_eq!(
            resp.data(),
            &want.data,
            "days {days} limit {limit} status {status}"
        );
        assert_eq!(want.statements, 1);
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
    for query in [
        "{ analytics { spendingSummary(first: 1000) { user { id } orderCount totalRevenue } } }",
        "{ analytics { spendingSummary(first: 5, offset: 10) { user { id } orderCount totalRevenue } } }",
        "{ analytics { spendingSummary(first: 5, offset: 40) { user { id } orderCount totalRevenue } } }",
    ] {
        let resp = app.gql(query).await;
        assert_eq!(resp.data(), &m.eval(query, &json!({})), "{query}");
    }
    let all = app
        .gql("{ analytics { spendingSummary(first: 1000) { orderCount totalRevenue } } }")
        .await;
    let rows = all.data()["analytics"]["spendingSummary"]
        .as_array()
        .expect("a list")
        .clone();
    // 40 seeded and 3 new users, one inactive; the 3 without orders last.
    assert_eq!(rows.len(), 42);
    for r in &rows[39..] {
        assert_eq!(r, &json!({ "orderCount": 0, "totalRevenue": "0.00" }));
    }
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
    assert_eq!(
        resp.data()["analytics"]["revenueByDay"]
            .as_array()
            .map(Vec::len),
        Some(14)
    );
    let want = m.expect(
        "query($a: DateTime) { analytics { revenueByDay(days: 14, asOf: $a) { day orderCount revenue } } }",
        &json!({ "a": end.to_rfc3339() }),
    );
    assert_eq!(resp.data(), &want.data);
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
    let query = "query($a: DateTime) { analytics { productSales(asOf: $a) { product { id sku } unitsSold revenue } } }";
    let vars = json!({ "a": end.to_rfc3339() });
    let resp = app.gql_vars(query, vars.clone()).await;
    let want = m.expect(query, &vars);
    assert!(
        !resp.data()["analytics"]["productSales"]
            .as_array()
            .expect("a list")
            .is_empty()
    );
    assert_eq!(resp.data(), &want.data);
    assert_eq!(want.statements, 1);
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
