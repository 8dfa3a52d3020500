//! The statement counts the server reports, checked from outside: PostgreSQL's own
//! `pg_stat_statements` must count the same data statements for each request.
//! (SQLite keeps no such statistics; there the counting session is the one source.)

use eagerql::db::session::Arg;
use eagerql::db::{Backend, Session};

use crate::helpers::{TestApp, backend, spawn_app};

const SHAPES: &[&str] = &[
    "{ users(first: 100) { id orders { id } } }",
    "{ users(first: 100) { id orders { id items { quantity product { name } } } } }",
    "{ order(id: 1) { id user { email } items { product { name } } } }",
    "{ products(first: 20) { id orders { id user { email } } orderItems { id } } }",
    "{ analytics { topCustomers(days: 90) { user { id orders(first: 2) { id } } totalRevenue } } }",
    "{ users(first: 100) { id ordersConnection(first: 2, orderBy: CREATED_AT_DESC, where: { status: { in: [COMPLETED, PENDING] } }) { totalCount edges { cursor node { id items { id } } } pageInfo { hasNextPage } } ordersAggregate(where: { items: { some: { quantity: { gte: 1 } } } }) { count sum { totalAmount } } } }",
    "{ ordersConnection(last: 5, orderBy: [TOTAL_AMOUNT_DESC], where: { user: { isActive: { eq: true } } }) { totalCount nodes { id products { id } } } productsAggregate(where: { orders: { none: { status: { eq: CANCELLED } } } }) { count } }",
];

async fn stats_available(s: &Session) -> bool {
    let loaded = s
        .fetch(
            "test.preload",
            "select count(*) from pg_settings where name = 'shared_preload_libraries' \
             and setting like '%pg_stat_statements%'"
                .into(),
            vec![],
            |r| r.i64(0),
        )
        .await
        .map(|v| v == [1])
        .unwrap_or(false);
    if !loaded {
        return false;
    }
    s.execute(
        "test.ext",
        "create extension if not exists pg_stat_statements".into(),
        vec![],
    )
    .await
    .is_ok()
}

/// Data statements PostgreSQL executed in this database since the last reset.
async fn executed(s: &Session) -> i64 {
    let n = s
        .fetch(
            "test.count",
            "select coalesce(sum(calls), 0)::int8 from pg_stat_statements \
             where dbid = (select oid from pg_database where datname = current_database()) \
             and query !~* '^\\s*(begin|commit|rollback|select pg_stat_statements_reset)' \
             and query not like '%pg_stat_statements%'"
                .into(),
            vec![],
            |r| r.i64(0),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.detail()));
    n[0]
}

async fn reset(s: &Session) {
    s.fetch(
        "test.reset",
        "select 1::int8 from (select pg_stat_statements_reset(0, \
         (select oid from pg_database where datname = current_database()), 0)) r"
            .into(),
        Vec::<Arg>::new(),
        |r| r.i64(0),
    )
    .await
    .unwrap_or_else(|e| panic!("{}", e.detail()));
}

#[tokio::test]
async fn postgres_statistics_count_the_same_statements() {
    if backend() != Backend::Postgres {
        eprintln!("pg_stat_statements check: PostgreSQL only");
        return;
    }
    let app: TestApp = spawn_app().await;
    app.seed(100, 3, 2, 20).await;
    let s = Session::unmetered(app.db.clone());
    if !stats_available(&s).await {
        assert!(
            std::env::var("EAGERQL_REQUIRE_PG_STATS").as_deref() != Ok("1"),
            "pg_stat_statements is not loaded (shared_preload_libraries)"
        );
        eprintln!("pg_stat_statements not loaded: check skipped");
        return;
    }
    let admin = app.token.clone();
    let customer = app.token_for(1, eagerql::model::Role::Customer);
    for shape in SHAPES {
        // A customer's version of the shape: their own account instead of the users list
        // (reports are for administrators).
        let theirs = shape.replace("users(first: 100)", "users: me");
        let runs: Vec<(&str, String, &str)> = if shape.contains("analytics") {
            vec![("admin", (*shape).to_owned(), admin.as_str())]
        } else {
            vec![
                ("admin", (*shape).to_owned(), admin.as_str()),
                ("admin", theirs.clone(), admin.as_str()),
                ("customer", theirs, customer.as_str()),
            ]
        };
        for (role, query, token) in runs {
            // Warm the pool's connections (type look-ups on first use are not the request's).
            app.gql_as(Some(token), &query, serde_json::json!({}))
                .await
                .data();
            reset(&s).await;
            let resp = app.gql_as(Some(token), &query, serde_json::json!({})).await;
            resp.data();
            let n = executed(&s).await;
            eprintln!("STATS {role} {query}: pg={n} server={}", resp.statements);
            assert_eq!(n, resp.statements as i64, "{role}: {query}");
        }
    }
}

/// A PostgreSQL on this machine is reached without TLS unless the URL asks for it (the
/// driver's default would encrypt loopback traffic); an explicit `sslmode` wins.
#[tokio::test]
async fn loopback_connections_go_without_tls_unless_asked() {
    if crate::helpers::backend() != eagerql::db::Backend::Postgres {
        return;
    }
    let app = crate::helpers::spawn_app().await;
    let ssl = crate::helpers::scalar_i64(
        &app,
        "select case when ssl then 1 else 0 end from pg_stat_ssl where pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl, 0, "TLS to a loopback server");
}
