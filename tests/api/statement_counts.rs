//! Statement counts as a contract: every query shape runs an exact number of statements,
//! the same at 1, 10 and 1,000 parents, and answers exactly as the naive reference does.

use serde_json::json;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::model::Model;

/// A query shape and the statements it must cost. `$n` is the root page size.
struct Shape {
    name: &'static str,
    query: &'static str,
    statements: usize,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "scalars only",
        query: "query($n: Int!) { users(first: $n) { id email username isActive createdAt updatedAt bio } }",
        statements: 1,
    },
    Shape {
        name: "the lesson's dashboard: users -> orders",
        query: "query($n: Int!) { users(first: $n) { id username orders { id totalAmount } } }",
        statements: 2,
    },
    Shape {
        name: "users -> orders -> items -> product",
        query: "query($n: Int!) { users(first: $n) { id orders { id status totalAmount createdAt items { quantity unitPrice product { name sku price } } } } }",
        statements: 3,
    },
    Shape {
        name: "order(id) -> { user, items -> product }",
        query: "query($n: Int!) { order(id: 1) { id user { email } items { quantity unitPrice product { name } } } users(first: $n) { id } }",
        statements: 3,
    },
    Shape {
        name: "many-to-many: products -> orders -> user",
        query: "query($n: Int!) { products(first: $n) { id name orders { id user { email } } } }",
        statements: 2,
    },
    Shape {
        name: "reverse: products -> orderItems -> order -> user",
        query: "query($n: Int!) { products(first: $n) { id orderItems { quantity order { id user { username } } } } }",
        statements: 2,
    },
    Shape {
        name: "order -> products (association table)",
        query: "query($n: Int!) { orders(first: $n) { id products { id sku } } }",
        statements: 2,
    },
    Shape {
        name: "four levels: users -> orders -> products -> orders(first) -> user",
        query: "query($n: Int!) { users(first: $n) { id orders { id products { id orders(first: 2) { id user { id } } } } } }",
        statements: 4,
    },
    Shape {
        name: "to-one then to-many: orderItems -> order -> items",
        query: "query($n: Int!) { products(first: $n) { orderItems { id order { id items { id product { id } } } } } }",
        statements: 3,
    },
    Shape {
        name: "to-many below a join: orders -> user -> orders",
        query: "query($n: Int!) { orders(first: $n) { id user { id orders(first: 1) { id } } } }",
        statements: 2,
    },
    Shape {
        name: "fragments",
        query: "query($n: Int!) { users(first: $n) { ...U } } fragment U on User { id orders { ...O } } fragment O on Order { id items { id } }",
        statements: 3,
    },
    Shape {
        name: "inline fragments",
        query: "query($n: Int!) { users(first: $n) { ... on User { id orders { ... on Order { id user { email } } } } } }",
        statements: 2,
    },
    Shape {
        name: "aliases with equal arguments share a batch",
        query: "query($n: Int!) { users(first: $n) { id a: orders(first: 2) { id } b: orders(first: 2) { status } } }",
        statements: 2,
    },
    Shape {
        name: "aliases with different arguments are separate batches",
        query: "query($n: Int!) { users(first: $n) { id a: orders(first: 1) { id } b: orders(status: COMPLETED) { id status } c: orders { id } } }",
        statements: 4,
    },
    Shape {
        name: "nested first and status",
        query: "query($n: Int!) { users(first: $n) { id orders(first: 2, status: COMPLETED) { id status } } }",
        statements: 2,
    },
    Shape {
        name: "@skip and @include drop edges",
        query: "query($n: Int!, $yes: Boolean = true, $no: Boolean = false) { users(first: $n) { id orders @skip(if: $yes) { id } kept: orders @include(if: $yes) { id } gone: orders(first: 1) @include(if: $no) { id } } }",
        statements: 2,
    },
    Shape {
        name: "root orders with filters",
        query: "query($n: Int!) { orders(first: $n, status: COMPLETED, minAmount: \"10.00\") { id totalAmount user { username } items { id } } }",
        statements: 2,
    },
    Shape {
        name: "root single user, four levels",
        query: "query($n: Int!) { user(id: 1) { id orders { items { product { orders(first: 1) { id } } } } } products(first: $n) { id } }",
        statements: 5,
    },
    Shape {
        name: "orderBy on roots and edges: newest orders first, by total, per parent",
        query: "query($n: Int!) { users(first: $n, orderBy: [CREATED_AT_DESC]) { id createdAt orders(orderBy: [CREATED_AT_DESC]) { id createdAt items(orderBy: [QUANTITY_DESC, UNIT_PRICE_ASC]) { id quantity unitPrice } } } }",
        statements: 3,
    },
    Shape {
        name: "orderBy with first per parent, aliases with different orders are separate batches",
        query: "query($n: Int!) { products(first: $n, orderBy: [PRICE_DESC, NAME_ASC]) { id price top: orders(first: 2, orderBy: [TOTAL_AMOUNT_DESC]) { id totalAmount } recent: orders(first: 2, orderBy: CREATED_AT_DESC) { id } byId: orders(first: 2) { id } } }",
        statements: 4,
    },
    Shape {
        name: "orderBy on filtered root orders and through the association table",
        query: "query($n: Int!) { orders(first: $n, orderBy: [STATUS_ASC, TOTAL_AMOUNT_DESC]) { id status totalAmount products(orderBy: [SKU_DESC]) { sku } user { username } } }",
        statements: 2,
    },
    Shape {
        name: "the lesson's puzzle: each user's order count, without loading an order",
        query: "query($n: Int!) { users(first: $n) { username ordersAggregate { count } } }",
        statements: 2,
    },
    Shape {
        name: "aggregates under aliases with different arguments, and below a batch",
        query: "query($n: Int!) { users(first: $n) { id all: ordersAggregate { count sum { totalAmount } max { createdAt totalAmount } min { totalAmount } } done: ordersAggregate(status: COMPLETED) { __typename count sum { totalAmount } } orders(first: 1) { id itemsAggregate { count sum { quantity unitPrice } min { unitPrice } max { quantity } } } } }",
        statements: 5,
    },
    Shape {
        name: "aggregates through the association table and over items",
        query: "query($n: Int!) { products(first: $n) { id ordersAggregate { count sum { totalAmount } } orderItemsAggregate { count sum { quantity } } } }",
        statements: 3,
    },
    Shape {
        name: "root aggregates: one statement each, filters as on the list",
        query: "query($n: Int!) { productsAggregate { count sum { stockQuantity } min { price } max { price } } ordersAggregate(status: COMPLETED, minAmount: \"10.00\") { count sum { totalAmount } min { createdAt } } all: ordersAggregate { count } products(first: $n) { id } }",
        statements: 4,
    },
    Shape {
        name: "per-parent connection pages with cursors, pageInfo and totalCount",
        query: "query($n: Int!) { users(first: $n) { id ordersConnection(first: 2, orderBy: CREATED_AT_DESC) { totalCount edges { cursor node { id createdAt } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } } }",
        statements: 3,
    },
    Shape {
        name: "a root connection read backward with last, nodes, through the association table",
        query: "query($n: Int!) { productsConnection(last: $n, orderBy: [PRICE_DESC]) { __typename nodes { id price ordersConnection(last: 1) { nodes { id user { id } } pageInfo { hasPreviousPage hasNextPage } } } pageInfo { hasPreviousPage hasNextPage startCursor endCursor } } }",
        statements: 2,
    },
    Shape {
        name: "a filtered root orders connection with totalCount, a nested connection and a list of the same edge",
        query: "query($n: Int!) { ordersConnection(first: $n, orderBy: [TOTAL_AMOUNT_DESC], status: COMPLETED) { totalCount edges { __typename node { id totalAmount itemsConnection(first: 1, orderBy: [QUANTITY_DESC]) { totalCount nodes { quantity } } items { id } } } } }",
        statements: 5,
    },
    Shape {
        name: "aliased connections with different pages share one count with the aggregate",
        query: "query($n: Int!) { users(first: $n) { id a: ordersConnection(first: 1) { totalCount nodes { id } } b: ordersConnection(last: 1) { totalCount nodes { id } } ordersAggregate { count } } }",
        statements: 4,
    },
    Shape {
        name: "where on a root list and nested edges: and/or/not, some/none, case-insensitive text",
        query: "query($n: Int!) { users(first: $n, where: { or: [{ username: { startsWith: \"USER1\" } }, { orders: { some: { status: { eq: COMPLETED }, totalAmount: { gte: \"50.00\" } } } }], not: { email: { contains: \"9@\" } } }) { id orders(where: { items: { none: { quantity: { gt: 1 } } } }) { id status } ordersAggregate(where: { status: { in: [PENDING, SHIPPED] } }) { count sum { totalAmount } } } }",
        statements: 3,
    },
    Shape {
        name: "where on a connection, through the association table and on a to-one edge",
        query: "query($n: Int!) { ordersConnection(first: $n, orderBy: [CREATED_AT_DESC], where: { user: { isActive: { eq: true } }, products: { some: { price: { lt: \"500.00\" } } } }) { totalCount nodes { id products(where: { sku: { in: [\"SKU-0000001\", \"SKU-0000002\", \"nope\"] } }) { sku } items(where: { and: [{ quantity: { gte: 1 } }, { unitPrice: { gt: \"1.00\" } }] }) { id } } } }",
        statements: 4,
    },
    Shape {
        name: "a filtered root products connection counts only the rows its filter keeps",
        query: "query($n: Int!) { productsConnection(first: $n, orderBy: [PRICE_ASC], where: { or: [{ id: { in: [\"1\", \"3\"] } }, { name: { contains: \"product 5\" } }] }) { totalCount pageInfo { hasNextPage } nodes { id price } } }",
        statements: 2,
    },
    Shape {
        name: "an empty in and an empty or match nothing, an empty where everything",
        query: "query($n: Int!) { products(first: $n, where: {}) { id orders(where: { id: { in: [] } }) { id } orderItems(where: { or: [] }) { id } a: ordersAggregate(where: { not: { or: [] } }) { count } } }",
        statements: 4,
    },
    Shape {
        name: "where on root aggregates and a filtered root list",
        query: "query($n: Int!) { productsAggregate(where: { stockQuantity: { gte: 10 } }) { count } ordersAggregate(where: { createdAt: { lt: \"2100-01-01T00:00:00Z\" }, status: { eq: PENDING } }) { count max { totalAmount } } products(first: $n, where: { name: { contains: \"product 1\" }, id: { in: [\"1\", \"3\", \"5\"] } }) { id name } }",
        statements: 3,
    },
    Shape {
        name: "two root lists",
        query: "query($n: Int!) { users(first: $n) { id orders { id } } products(first: $n) { id orderItems { id } } }",
        statements: 4,
    },
];

/// Seeds `n` users (3 orders each, 2 items each) and `n` products, then checks every shape:
/// exact statement count and the reference's answer, rendered by the fast output path.
async fn check_all_shapes(app: &TestApp, n: u64) {
    app.seed(n, 3, n.min(2), n).await;
    let model = Model::load(&app.db).await;
    assert_eq!(model.user_count() as u64, n);
    let vars = json!({ "n": n });
    for shape in SHAPES {
        let resp = app.gql_vars(shape.query, vars.clone()).await;
        let data = resp.data().clone();
        assert_eq!(
            resp.statements, shape.statements,
            "{} at {n} parents: expected {} statements, ran {}: {:#}",
            shape.name, shape.statements, resp.statements, resp.body["extensions"]
        );
        let expected = model.expect(shape.query, &vars);
        assert!(
            data == expected.data,
            "{} at {n} parents: answer differs from the oracle's\nserver: {data}\noracle: {}",
            shape.name,
            expected.data
        );
        // The count is predicted from the shape before any SQL, by the plan rules alone.
        assert_eq!(
            expected.statements, shape.statements,
            "{} at {n} parents: the plan rules predict {}",
            shape.name, expected.statements
        );
    }
}

#[tokio::test]
async fn every_shape_at_1_parent() {
    check_all_shapes(&spawn_app().await, 1).await;
}

#[tokio::test]
async fn every_shape_at_10_parents() {
    check_all_shapes(&spawn_app().await, 10).await;
}

#[tokio::test]
async fn every_shape_at_1000_parents() {
    check_all_shapes(&spawn_app().await, 1000).await;
}

#[tokio::test]
async fn the_lesson_puzzle_costs_2_statements_not_1001() {
    let app = spawn_app().await;
    app.seed(1000, 2, 1, 10).await;
    let resp = app
        .gql("{ users(first: 1000) { username orders { id } } }")
        .await;
    assert_eq!(resp.data()["users"].as_array().map(Vec::len), Some(1000));
    assert_eq!(resp.statements, 2);
    let names: Vec<&str> = resp.body["extensions"]["sql"]["statements"]
        .as_array()
        .expect("statements listed")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["users.page", "orders.by_user_ids"]);
}

#[tokio::test]
async fn the_count_is_the_same_under_concurrency() {
    let app = spawn_app().await;
    app.seed(50, 3, 2, 20).await;
    let query =
        "{ users(first: 50) { id orders { id items { product { name } } products { id } } } }";
    let runs = (0..40).map(|_| app.gql(query));
    let results = futures_util::future::join_all(runs).await;
    for r in results {
        r.data();
        assert_eq!(r.statements, 4);
    }
}

#[tokio::test]
async fn per_parent_first_limits_each_parent_not_the_total() {
    let app = spawn_app().await;
    app.seed(5, 4, 1, 3).await;
    let resp = app
        .gql("{ users(first: 5) { orders(first: 2) { id } } }")
        .await;
    let users = resp.data()["users"].as_array().expect("users").clone();
    assert_eq!(users.len(), 5);
    for u in users {
        assert_eq!(u["orders"].as_array().map(Vec::len), Some(2));
    }
    assert_eq!(resp.statements, 2);
}

#[tokio::test]
async fn an_empty_level_sends_no_batch() {
    let app = spawn_app().await;
    let resp = app.gql("{ users { id orders { id items { id } } } }").await;
    assert_eq!(resp.data()["users"], json!([]));
    assert_eq!(resp.statements, 1);
}

#[tokio::test]
async fn a_plan_over_the_budget_is_refused_before_any_sql() {
    let app = spawn_app_with(&["--statement-budget", "3"]).await;
    app.seed(2, 1, 1, 1).await;
    let ok = app.gql("{ users { orders { items { id } } } }").await;
    assert_eq!(ok.statements, 3);
    let refused = app
        .gql("{ users { orders { items { id } products { id } } } }")
        .await;
    assert_eq!(refused.error_code(), "LIMIT_EXCEEDED");
    assert!(
        refused.error_message().contains("4 SQL statements"),
        "{}",
        refused.body
    );
    assert_eq!(refused.statements, 0);
}

#[tokio::test]
async fn the_budget_covers_all_root_fields_of_a_request() {
    let app = spawn_app_with(&["--statement-budget", "3"]).await;
    app.seed(2, 1, 1, 1).await;
    let resp = app
        .gql("{ a: users { orders { id } } b: users { orders { id } } }")
        .await;
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED");
    assert!(
        resp.error_message().contains("4 SQL statements"),
        "{}",
        resp.body
    );
    assert_eq!(resp.statements, 0, "refused whole, before any SQL");
    assert!(
        resp.body.get("data").is_none_or(|d| d.is_null()),
        "no partial answer"
    );
    // Many cheap root fields add up the same way.
    let many: String = (0..4)
        .map(|i| format!("p{i}: products {{ id }} "))
        .collect();
    let resp = app.gql(&format!("{{ {many} }}")).await;
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED", "{}", resp.body);
    assert_eq!(resp.statements, 0);
    let fits: String = (0..3)
        .map(|i| format!("p{i}: products {{ id }} "))
        .collect();
    assert_eq!(app.gql(&format!("{{ {fits} }}")).await.statements, 3);
}

/// Lazy mode (`EAGERQL_PLAN=lazy`, non-strict) takes every relationship through the
/// DataLoader instead of the plan, yet the same renderer writes the answer: every shape gives
/// the same bytes as the planned answer, and its statement count is the same at 3 and at 30
/// parents (one statement per level, never one per parent).
#[tokio::test]
async fn every_shape_answers_the_same_lazily_at_a_count_independent_of_rows() {
    let mut counts: Vec<Vec<usize>> = Vec::new();
    for n in [3u64, 30] {
        let eager = spawn_app().await;
        let lazy = spawn_app_with(&["--strict", "false", "--plan", "lazy"]).await;
        for app in [&eager, &lazy] {
            app.seed(n, 3, 2, n).await;
        }
        let vars = json!({ "n": n });
        let mut these = Vec::new();
        for shape in SHAPES {
            let planned = eager.gql_vars(shape.query, vars.clone()).await;
            let loaded = lazy.gql_vars(shape.query, vars.clone()).await;
            assert_eq!(
                loaded.body["data"].to_string(),
                planned.body["data"].to_string(),
                "{} at {n} parents, lazily",
                shape.name
            );
            assert!(
                loaded.body.get("errors").is_none(),
                "{}: {}",
                shape.name,
                loaded.body
            );
            assert!(loaded.statements >= planned.statements, "{}", shape.name);
            these.push(loaded.statements);
        }
        counts.push(these);
    }
    assert_eq!(counts[0], counts[1], "lazy statement counts per shape");
}

/// A shape as a customer may send it: the `users` list (administrators only) becomes the
/// viewer's own account, `me`, under the same response key.
fn as_customer_query(query: &str) -> String {
    let q = match query.find("users(first: $n") {
        Some(at) => {
            let end = at + query[at..].find(')').unwrap_or(0) + 1;
            format!("{}users: me{}", &query[..at], &query[end..])
        }
        None => query.to_owned(),
    };
    let uses = q
        .match_indices("$n")
        .filter(|(i, _)| !q[i + 2..].starts_with(|c: char| c.is_alphanumeric()))
        .count();
    if uses == 1 {
        q.replace("($n: Int!, ", "(")
            .replace("query($n: Int!)", "query")
    } else {
        q
    }
}

fn has_empty_list(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::Array(a) => a.is_empty() || a.iter().any(has_empty_list),
        serde_json::Value::Object(m) => m.values().any(has_empty_list),
        _ => false,
    }
}

/// The statement-count contract holds for every role: as a customer (user 1), every shape
/// costs what it costs an administrator, with permissions as predicates inside the same
/// statements (never a lookup of the viewer, never a check per row), and answers exactly
/// what the reference answers over the rows that customer may see. (A batch is not sent when
/// its parents' level is empty; where a customer's answer has an empty list, the count may
/// only be lower.)
async fn check_all_shapes_as_customer(app: &TestApp, n: u64) {
    app.seed(n, 3, n.min(2), n).await;
    let model = Model::load(&app.db).await.as_customer(1);
    let customer = app.token_for(1, eagerql::model::Role::Customer);
    let vars = json!({ "n": n });
    let mut exact = 0;
    for shape in SHAPES {
        let query = as_customer_query(shape.query);
        let resp = app.gql_as(Some(&customer), &query, vars.clone()).await;
        let data = resp.data().clone();
        let expected = model.eval(&query, &vars);
        assert!(
            data == expected,
            "{} at {n} parents, as a customer: answer differs from the reference\nserver:    {data}\nreference: {expected}",
            shape.name
        );
        if has_empty_list(&data) {
            assert!(resp.statements <= shape.statements, "{}", shape.name);
        } else {
            exact += 1;
            assert_eq!(
                resp.statements, shape.statements,
                "{} at {n} parents, as a customer: {:#}",
                shape.name, resp.body["extensions"]
            );
        }
    }
    assert!(
        exact * 2 >= SHAPES.len(),
        "most shapes are checked exactly: {exact}"
    );
}

#[tokio::test]
async fn every_shape_as_a_customer_at_1_parent() {
    check_all_shapes_as_customer(&spawn_app().await, 1).await;
}

#[tokio::test]
async fn every_shape_as_a_customer_at_10_parents() {
    check_all_shapes_as_customer(&spawn_app().await, 10).await;
}

#[tokio::test]
async fn every_shape_as_a_customer_at_1000_parents() {
    check_all_shapes_as_customer(&spawn_app().await, 1000).await;
}

/// `avg` is a `Float`: compared with the reference's exact mean within a relative 1e-12 (the
/// backends average in floating point).
#[tokio::test]
async fn averages_are_the_mean_of_the_rows() {
    let app = spawn_app().await;
    app.seed(20, 3, 2, 10).await;
    let model = Model::load(&app.db).await;
    let query = "{ users(first: 20) { ordersAggregate { avg { totalAmount } } } products(first: 10) { orderItemsAggregate { avg { quantity unitPrice } } } }";
    let r = app.gql(query).await;
    assert_eq!(r.statements, 4);
    let expected = model.eval(query, &json!({}));
    fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
        match (a, b) {
            (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(1.0));
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs()).max(1.0)
            }
            (serde_json::Value::Array(x), serde_json::Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| close(a, b))
            }
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
            }
            _ => a == b,
        }
    }
    assert!(
        close(r.data(), &expected),
        "server {}\nreference {expected}",
        r.data()
    );
}

/// The lesson's dashboard with counts reads no order row: the second statement returns one
/// grouped row per user with orders.
#[tokio::test]
async fn order_counts_read_no_order_rows() {
    let app = spawn_app().await;
    app.seed(50, 4, 1, 5).await;
    let r = app
        .gql("{ users(first: 50) { username ordersAggregate { count } } }")
        .await;
    assert_eq!(r.statements, 2);
    let stmts = &r.body["extensions"]["sql"]["statements"];
    assert_eq!(
        stmts[1]["rows"], 50,
        "one row per user, not 200 orders: {stmts}"
    );
    assert!(stmts[1]["sql"].as_str().unwrap_or("").contains("group by"));
    assert_eq!(r.data()["users"][0]["ordersAggregate"]["count"], 4);
}

/// POSTs `query` as the administrator with extra headers; gives the status, the body and the
/// statement count header.
async fn post_with(
    app: &TestApp,
    query: &str,
    vars: &serde_json::Value,
    extra: &[(&str, String)],
) -> (axum::http::StatusCode, serde_json::Value, usize) {
    let body = json!({ "query": query, "variables": vars });
    let mut req = axum::http::Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", app.token));
    for (k, v) in extra {
        req = req.header(*k, v);
    }
    let req = req
        .body(axum::body::Body::from(body.to_string()))
        .expect("request");
    let (status, headers, text) = app.send(req).await;
    let count = headers
        .get("x-eagerql-sql-statements")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("statement count header");
    (
        status,
        serde_json::from_str(&text).expect("JSON body"),
        count,
    )
}

/// `x-eagerql-expect-statements` and `x-eagerql-debug: plan`: for every shape, the plan
/// predicts exactly the statements the request then runs; a wrong expectation is refused
/// before any SQL with both numbers.
#[tokio::test]
async fn every_shape_is_predicted_and_a_wrong_expectation_runs_nothing() {
    let app = spawn_app().await;
    app.seed(10, 3, 2, 10).await;
    let vars = json!({ "n": 10 });
    for shape in SHAPES {
        let n = shape.statements;
        let (status, body, ran) = post_with(
            &app,
            shape.query,
            &vars,
            &[
                ("x-eagerql-expect-statements", n.to_string()),
                ("x-eagerql-debug", "plan".to_owned()),
            ],
        )
        .await;
        assert_eq!(status, 200, "{}: {body}", shape.name);
        assert!(body.get("errors").is_none(), "{}: {body}", shape.name);
        assert_eq!(ran, n, "{}", shape.name);
        assert_eq!(
            body["extensions"]["plan"]["statements"], n,
            "{}",
            shape.name
        );
        // The plan tree: one entry per planned root field or report, adding up to the count.
        let roots = body["extensions"]["plan"]["roots"]
            .as_array()
            .expect("plan roots");
        let sum: u64 = roots
            .iter()
            .map(|r| r["statements"].as_u64().expect("statements"))
            .sum();
        assert_eq!(sum as usize, n, "{}: {roots:?}", shape.name);
        assert!(
            roots
                .iter()
                .all(|r| r["field"].is_string() && !r["plan"].is_null())
        );
        let plain = app.gql_vars(shape.query, vars.clone()).await;
        assert_eq!(&body["data"], plain.data(), "{}", shape.name);

        let (_, refused, ran) = post_with(
            &app,
            shape.query,
            &vars,
            &[("x-eagerql-expect-statements", (n + 1).to_string())],
        )
        .await;
        assert_eq!(ran, 0, "{}: nothing runs", shape.name);
        assert!(refused.get("data").is_none_or(|d| d.is_null()), "{refused}");
        let err = &refused["errors"][0]["extensions"];
        assert_eq!(err["code"], "STATEMENT_COUNT_MISMATCH", "{refused}");
        assert_eq!(err["expected"], n + 1);
        assert_eq!(err["planned"], n);
    }
    // A customer's plan: the same rules, their permissions included (a list they may not
    // read plans nothing).
    let customer = app.token_for(2, eagerql::model::Role::Customer);
    let as_customer = |q: &str, expect: &str| {
        let body = json!({ "query": q });
        axum::http::Request::post("/graphql")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {customer}"))
            .header("x-eagerql-expect-statements", expect)
            .body(axum::body::Body::from(body.to_string()))
            .expect("request")
    };
    let mine = "{ me { ordersConnection(first: 2) { totalCount nodes { id items { id } } } } }";
    let (_, headers, text) = app.send(as_customer(mine, "4")).await;
    let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["me"]["ordersConnection"]["totalCount"], 3);
    assert_eq!(headers["x-eagerql-sql-statements"], "4");
    let (_, _, text) = app.send(as_customer("{ users { id } }", "0")).await;
    let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{body}"
    );
    // Not a number, and on a mutation: refused.
    let (status, bad, _) = post_with(
        &app,
        "{ products { id } }",
        &json!({}),
        &[("x-eagerql-expect-statements", "two".to_owned())],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(bad["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    // Empty, or given twice (which one would the test mean?): refused too.
    for headers in [
        vec![("x-eagerql-expect-statements", String::new())],
        vec![
            ("x-eagerql-expect-statements", "1".to_owned()),
            ("x-eagerql-expect-statements", "2".to_owned()),
        ],
    ] {
        let (status, bad, ran) = post_with(&app, "{ products { id } }", &json!({}), &headers).await;
        assert_eq!((status.as_u16(), ran), (400, 0), "{bad}");
    }
    let (_, m, ran) = post_with(
        &app,
        "mutation { logout(refreshToken: \"x\") }",
        &json!({}),
        &[("x-eagerql-expect-statements", "1".to_owned())],
    )
    .await;
    assert_eq!(
        m["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{m}"
    );
    assert_eq!(ran, 0);
}

/// `eagerql check` (no database, no server) predicts, for every shape, exactly the statements
/// the server then runs: the shapes are written as a frontend's `.graphql` files, checked by
/// the binary, and run against the server with the same variables.
#[tokio::test]
async fn check_predicts_what_the_server_runs_for_every_shape() {
    let app = spawn_app().await;
    app.seed(10, 3, 2, 10).await;
    let dir = crate::helpers::scratch_dir("check-shapes");
    let mut variables = serde_json::Map::new();
    for (i, shape) in SHAPES.iter().enumerate() {
        let name = format!("Shape{i}");
        let text = match shape.query.strip_prefix("query") {
            Some(rest) => format!("query {name}{rest}"),
            None => format!("query {name} {}", shape.query),
        };
        std::fs::write(dir.join(format!("shape{i:02}.graphql")), text).expect("write");
        variables.insert(name, json!({ "n": 10 }));
    }
    // Beside the operations, not among them (a `.json` there would be read as a manifest).
    let vars_dir = crate::helpers::scratch_dir("check-shape-variables");
    let vars_file = vars_dir.join("variables.json");
    std::fs::write(&vars_file, serde_json::Value::Object(variables).to_string()).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eagerql"))
        .args([
            "check",
            "--format",
            "json",
            "--role",
            "admin",
            "--variables",
        ])
        .arg(&vars_file)
        .arg(&dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run eagerql check");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("JSON report: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{report}");
    assert_eq!(report["ok"], true);
    let ops = report["operations"].as_array().expect("operations");
    assert_eq!(ops.len(), SHAPES.len());
    for (i, shape) in SHAPES.iter().enumerate() {
        let op = ops
            .iter()
            .find(|o| o["name"] == format!("Shape{i}"))
            .unwrap_or_else(|| panic!("{}: checked", shape.name));
        assert_eq!(op["valid"], true, "{}: {op}", shape.name);
        assert_eq!(op["assumedVariables"], json!({}), "{}", shape.name);
        let (status, body, ran) = post_with(&app, shape.query, &json!({ "n": 10 }), &[]).await;
        assert_eq!(status, 200, "{}: {body}", shape.name);
        assert_eq!(op["statements"], ran, "{}: check vs the server", shape.name);
        assert_eq!(ran, shape.statements, "{}", shape.name);
        let planned: u64 = op["plan"]
            .as_array()
            .expect("plan")
            .iter()
            .map(|r| r["statements"].as_u64().expect("statements"))
            .sum();
        assert_eq!(planned as usize, ran, "{}: the plan adds up", shape.name);
    }
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&vars_dir).ok();
}

/// A page's look-ahead row (read only to tell whether a next page exists) is never a parent of
/// the next level: a level that shows no row sends no batch below it, and a page of one order
/// reads the items of that order only, on both backends.
#[tokio::test]
async fn the_look_ahead_row_is_never_a_parent() {
    let app = crate::helpers::spawn_app().await;
    app.seed(4, 3, 3, 3).await;
    let r = app
        .gql(
            r#"{ productsConnection(first: 1, where: { id: { eq: "1" } }) { nodes {
                 ordersConnection(first: 0) { pageInfo { hasNextPage } edges { node { itemsConnection { nodes { id } } } } } } } }"#,
        )
        .await;
    let orders = &r.data()["productsConnection"]["nodes"][0]["ordersConnection"];
    assert_eq!(orders["pageInfo"]["hasNextPage"], true, "{}", r.body);
    assert_eq!(orders["edges"], serde_json::json!([]));
    assert_eq!(
        r.statements, 2,
        "no batch below a level that shows nothing: {}",
        r.body
    );

    let r = app
        .gql(
            r#"{ ordersConnection(first: 1) { pageInfo { hasNextPage } nodes { id itemsConnection(first: 2) {
                 pageInfo { hasNextPage } nodes { id product { name } } } } } }"#,
        )
        .await;
    assert_eq!(r.statements, 2, "{}", r.body);
    let items = r.body["extensions"]["sql"]["statements"][1]["rows"].as_u64();
    // One order shown: its 2 items and its look-ahead item, never the next order's items.
    assert_eq!(items, Some(3), "{}", r.body);
    assert_eq!(
        r.data()["ordersConnection"]["pageInfo"]["hasNextPage"],
        true
    );
}

/// Equal filters share a batch however they are written: fields in another order, an `and`
/// of the same conditions, a literal or a variable of the same value.
#[tokio::test]
async fn equal_filters_written_differently_share_a_batch() {
    let app = crate::helpers::spawn_app().await;
    app.seed(3, 3, 3, 5).await;
    let r = app
        .gql(
            r#"{ order(id: 5) {
                 a: items(where: { id: { eq: "13" }, quantity: { gt: 1 } }) { id }
                 b: items(where: { quantity: { gt: 1 }, id: { eq: "13" } }) { id }
                 c: items(where: { and: [{ quantity: { gt: 1 } }, { id: { eq: "13" } }] }) { id } } }"#,
        )
        .await;
    assert_eq!(r.statements, 2, "{}", r.body);
    let order = &r.data()["order"];
    assert_eq!(order["a"], order["b"]);
    assert_eq!(order["a"], order["c"]);

    let r = app
        .gql_vars(
            r#"query($w: OrderItemWhere) { order(id: 5) {
                 itemsConnection(where: { quantity: { gt: 1 }, id: { in: ["14", "13", "13"] } }) { totalCount nodes { id } }
                 itemsAggregate(where: $w) { count } } }"#,
            json!({ "w": { "id": { "in": ["13", "14"] }, "quantity": { "gt": 1 } } }),
        )
        .await;
    // The order, the page, and one count for both.
    assert_eq!(
        r.statements, 3,
        "the totalCount is the aggregate's count: {}",
        r.body
    );
    assert_eq!(
        r.data()["order"]["itemsConnection"]["totalCount"],
        r.data()["order"]["itemsAggregate"]["count"]
    );
}

/// A query planned ahead (several root fields under the statement budget) is planned once
/// per canonical form, variables and viewer: a repeat reuses the plan, and a plan is never
/// reused for another viewer or other variables (each would plan differently here).
#[tokio::test]
async fn plans_made_ahead_are_reused_only_for_the_same_form_variables_and_viewer() {
    let app = spawn_app().await;
    app.seed(10, 3, 2, 10).await;
    let customer = app.token_for(2, eagerql::model::Role::Customer);
    let q = "query($b: Boolean!, $n: Int!) { me { orders @include(if: $b) { id } } \
             users(first: $n) { id } products(first: 3) { id } }";
    let run = |token: Option<String>, b: bool, n: i64| {
        let body = json!({ "query": q, "variables": { "b": b, "n": n } });
        let mut req = axum::http::Request::post("/graphql")
            .header("content-type", "application/json")
            .header("x-eagerql-debug", "plan");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.body(axum::body::Body::from(body.to_string()))
            .expect("request")
    };
    let mut seen = std::collections::HashMap::new();
    for round in 0..2 {
        for (who, token) in [
            ("admin", Some(app.token.clone())),
            ("customer", Some(customer.clone())),
            ("anonymous", None),
        ] {
            for (b, n) in [(true, 2), (false, 2), (true, 0)] {
                let (_, headers, text) = app.send(run(token.clone(), b, n)).await;
                let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
                let ran: u64 = headers["x-eagerql-sql-statements"]
                    .to_str()
                    .expect("count")
                    .parse()
                    .expect("number");
                let planned = body["extensions"]["plan"]["statements"]
                    .as_u64()
                    .unwrap_or_else(|| panic!("{who} {b} {n}: no plan in {body}"));
                assert_eq!(planned, ran, "round {round}, {who}, b={b}, n={n}: {body}");
                let first = *seen.entry((who, b, n)).or_insert(planned);
                assert_eq!(planned, first, "round {round}, {who}, b={b}, n={n}");
            }
        }
    }
    // The cases plan differently, so a plan reused across them would have been caught.
    assert_ne!(seen[&("admin", true, 2)], seen[&("customer", true, 2)]);
    assert_ne!(seen[&("admin", true, 2)], seen[&("admin", false, 2)]);
    assert_ne!(seen[&("customer", true, 2)], seen[&("anonymous", true, 2)]);
}

/// The reports plan too: a planning-only pass answers each report without its statements
/// (no error stands in for the stop), and predicts exactly what the real run then runs.
#[tokio::test]
async fn reports_are_predicted_without_running_and_then_run_what_was_predicted() {
    let app = spawn_app().await;
    app.seed(10, 3, 2, 10).await;
    let query = "{ analytics { \
                 topCustomers(limit: 3, status: PENDING) { user { id orders { id } } } \
                 revenueByDay(days: 3) { day } \
                 productSales(limit: 2, status: PENDING) { product { name } } \
                 spendingSummary(first: 2) { user { email } } } \
                 ordersAggregate { count } }";
    // topCustomers 1 + 1 batch, revenueByDay 1, productSales 1, spendingSummary 1, the
    // aggregate 1.
    let n = 6;
    let (status, body, ran) = post_with(
        &app,
        query,
        &json!({}),
        &[
            ("x-eagerql-expect-statements", n.to_string()),
            ("x-eagerql-debug", "plan".to_owned()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(ran, n, "{body}");
    assert_eq!(body["extensions"]["plan"]["statements"], n, "{body}");
    let roots = body["extensions"]["plan"]["roots"]
        .as_array()
        .expect("roots");
    assert_eq!(roots.len(), 5, "{body}");
    let (_, refused, ran) = post_with(
        &app,
        query,
        &json!({}),
        &[("x-eagerql-expect-statements", (n - 1).to_string())],
    )
    .await;
    assert_eq!(ran, 0, "{refused}");
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "STATEMENT_COUNT_MISMATCH",
        "{refused}"
    );
}

/// On PostgreSQL the batch of one parent's children (an order read by its id: its items) looks
/// each joined product up by its key, since the batch's generic plan cannot see that it is
/// small; a batch of a list's children keeps the plain join. Same answers, same counts; SQLite
/// always joins plainly.
#[tokio::test]
async fn one_orders_items_look_their_products_up_and_a_lists_join_them() {
    use crate::helpers::backend;
    use eagerql::db::Backend;

    let app = spawn_app().await;
    app.seed(3, 2, 3, 5).await;
    let items = "items { id quantity product { id name } }";
    let one = app
        .gql(&format!("{{ order(id: 1) {{ id {items} }} }}"))
        .await;
    let list = app
        .gql(&format!("{{ orders(first: 1) {{ id {items} }} }}"))
        .await;
    assert_eq!(one.statements, 2);
    assert_eq!(list.statements, 2);
    assert_eq!(one.data()["order"], list.data()["orders"][0]);
    assert!(
        !one.data()["order"]["items"].as_array().unwrap().is_empty(),
        "{}",
        one.body
    );
    let (one_sql, list_sql) = (one.sql_texts(), list.sql_texts());
    let lookup = "cross join lateral (select * from products";
    assert_eq!(
        one_sql[1].contains(lookup),
        backend() == Backend::Postgres,
        "{one_sql:?}"
    );
    assert!(!list_sql[1].contains(lookup), "{list_sql:?}");
    assert!(list_sql[1].contains(" join products "), "{list_sql:?}");
}
