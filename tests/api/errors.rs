//! Bad input gets a clear GraphQL error with `extensions.code`: never a panic, never SQL.

use serde_json::json;

use crate::helpers::{TestDb, serve_config, spawn_app};

#[tokio::test]
async fn bad_page_sizes_are_bad_user_input_not_clamped() {
    let app = spawn_app().await;
    for (query, needle) in [
        ("{ users(first: -1) { id } }", "must not be negative"),
        ("{ users(first: 1001) { id } }", "at most 1000"),
        ("{ users(offset: -5) { id } }", "offset"),
        ("{ products(first: 5000) { id } }", "at most 1000"),
        ("{ users { orders(first: -2) { id } } }", "User.orders"),
        (
            "{ products { orders(first: 100000) { id } } }",
            "Product.orders",
        ),
    ] {
        let resp = app.gql(query).await;
        assert_eq!(
            resp.error_code(),
            "BAD_USER_INPUT",
            "{query}: {}",
            resp.body
        );
        assert!(
            resp.error_message().contains(needle),
            "{query}: {}",
            resp.error_message()
        );
        assert_eq!(resp.statements, 0, "{query} must not reach the database");
    }
}

#[tokio::test]
async fn bad_ids_and_decimals_are_bad_user_input() {
    let app = spawn_app().await;
    for query in [
        r#"{ user(id: "abc") { id } }"#,
        r#"{ order(id: "-3") { id } }"#,
        r#"{ product(id: "1; drop table users") { id } }"#,
        r#"{ orders(userId: "x") { id } }"#,
        r#"{ orders(minAmount: "0.001") { id } }"#,
    ] {
        let resp = app.gql(query).await;
        assert_eq!(
            resp.error_code(),
            "BAD_USER_INPUT",
            "{query}: {}",
            resp.body
        );
        assert!(
            !resp.body.to_string().to_lowercase().contains("select"),
            "SQL leaked"
        );
    }
}

#[tokio::test]
async fn unknown_ids_are_null_not_errors() {
    let app = spawn_app().await;
    let resp = app
        .gql(r#"{ user(id: "999") { id } order(id: "5") { id } product(id: "7") { id } }"#)
        .await;
    assert_eq!(
        resp.data(),
        &json!({ "user": null, "order": null, "product": null })
    );
}

#[tokio::test]
async fn validation_errors_are_request_errors() {
    let app = spawn_app().await;
    let resp = app.gql("{ users { id passwordHash } }").await;
    assert_eq!(resp.status, 400);
    assert!(
        resp.body.get("data").is_none(),
        "a request error has no data: {}",
        resp.body
    );
    assert!(resp.error_message().contains("passwordHash"));
    assert_eq!(resp.error_code(), "GRAPHQL_VALIDATION_FAILED");

    let wrong_var = app
        .gql_vars(
            "query($n: Int!) { users(first: $n) { id } }",
            json!({ "n": "ten" }),
        )
        .await;
    assert_eq!(wrong_var.status, 400);
    assert!(wrong_var.body.get("data").is_none());

    let not_decimal = app
        .gql_vars(
            "query($m: Decimal) { orders(minAmount: $m) { id } }",
            json!({ "m": "lots" }),
        )
        .await;
    assert_eq!(not_decimal.status, 400, "{}", not_decimal.body);
}

#[tokio::test]
async fn too_deep_queries_are_refused() {
    let app = spawn_app().await;
    // users -> (orders -> items -> order)* : 16 levels, over the default limit of 12.
    let mut query = String::from("{ users { orders { items { id } } } }");
    for _ in 0..5 {
        query = query.replace("items { id }", "items { order { items { id } } }");
    }
    let resp = app.gql(&query).await;
    assert_eq!(resp.status, 400);
    assert_eq!(resp.error_code(), "LIMIT_EXCEEDED");
    assert!(resp.error_message().contains("too deep"), "{}", resp.body);
}

/// A refusal names its real reason: an amount with no decimals that is too large is refused
/// for its size, not for decimals it does not have.
#[tokio::test]
async fn an_amount_is_refused_for_its_real_reason() {
    let app = spawn_app().await;
    for (query, needle) in [
        (r#"{ orders(minAmount: "100000000") { id } }"#, "between"),
        (
            r#"{ orders(minAmount: "1.001") { id } }"#,
            "at most 2 decimals",
        ),
        (
            r#"{ ordersAggregate(where: { totalAmount: { gt: "100000000" } }) { count } }"#,
            "between",
        ),
    ] {
        let r = app.gql(query).await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
        assert!(r.error_message().contains(needle), "{query}: {}", r.body);
    }
}

/// A port that is taken is named in the start-up error.
#[tokio::test]
async fn a_taken_address_is_named_when_the_server_cannot_listen() {
    let tdb = TestDb::create().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("address").to_string();
    let config = serve_config(&[
        "--database-url",
        &tdb.url,
        "--demo-data",
        "false",
        "--bind",
        &addr,
    ]);
    let Err(err) = eagerql::server::app::App::build(config).await else {
        panic!("started on a taken address");
    };
    let message = err.to_string();
    assert!(
        message.contains(&addr) && message.contains("in use"),
        "{message}"
    );
}

/// A described constraint the database reports is told by its name on PostgreSQL and by its
/// report on SQLite, the same on both: a taken e-mail or SKU is `CONFLICT` with the input
/// field, the stock CHECK (the last line of defence against overselling) `BAD_USER_INPUT`;
/// another violation stays a server fault, with no SQL in its message.
#[tokio::test]
async fn constraint_violations_mean_the_same_on_both_backends() {
    use eagerql::db::Session;
    let app = spawn_app().await;
    app.seed(2, 1, 1, 2).await;
    let s = Session::unmetered(app.db.clone());
    let fails = |sql: &str| {
        let (s, sql) = (s.clone(), sql.to_owned());
        async move {
            s.execute("test.violate", sql, vec![])
                .await
                .expect_err("a violation")
        }
    };
    let e =
        fails("update users set email = (select email from users where id = 1) where id = 2").await;
    assert_eq!(
        (e.code(), e.message()),
        ("CONFLICT", "email is already taken".to_owned())
    );
    let e = fails("update products set sku = (select sku from products where id = 1) where id = 2")
        .await;
    assert_eq!(
        (e.code(), e.message()),
        ("CONFLICT", "sku is already taken".to_owned())
    );
    let e = fails("update products set stock_quantity = -1 where id = 1").await;
    assert_eq!(
        (e.code(), e.message()),
        ("BAD_USER_INPUT", "insufficient stock".to_owned())
    );
    // Not a described constraint: a server fault, and the client is told nothing of it.
    let e = fails("update order_items set quantity = 0 where id = 1").await;
    assert_eq!(e.code(), "INTERNAL", "{}", e.detail());
    assert!(!e.message().contains("quantity"), "{}", e.message());
}

/// The shape of every kind of error a client meets, kept as a reviewed snapshot
/// (`tests/api/snapshots/`): status, `errors` with message, locations, path and
/// `extensions.code` (and its companions), and whether `data` is there. A change to any of
/// them shows up as a diff to review, not as a silent change to clients.
#[tokio::test]
async fn error_shapes_are_the_reviewed_ones() {
    use eagerql::model::Role;
    let app = spawn_app().await;
    app.seed(3, 1, 1, 2).await;
    let customer = app.token_for(2, Role::Customer);
    let admin = Some(app.token.as_str());
    let cases: [(&str, Option<&str>, &str, serde_json::Value); 12] = [
        ("parse error", admin, "{ users {", json!({})),
        ("unknown field", admin, "{ users { nope } }", json!({})),
        (
            "variable of the wrong type",
            admin,
            "query($n: Int!) { users(first: $n) { id } }",
            json!({ "n": "ten" }),
        ),
        (
            "page over the cap",
            admin,
            "{ users(first: 5000) { id } }",
            json!({}),
        ),
        (
            "a bad cursor beside a good field",
            admin,
            "{ products(first: 1) { id } ordersConnection(after: \"nope\") { totalCount } }",
            json!({}),
        ),
        ("anonymous", None, "{ orders { id } }", json!({})),
        (
            "a customer asks for every user",
            Some(&customer),
            "{ users { id } }",
            json!({}),
        ),
        (
            "too deep",
            admin,
            "{ users { orders { user { orders { user { orders { user { orders { user { orders { user { orders { id } } } } } } } } } } } } }",
            json!({}),
        ),
        (
            "a taken e-mail",
            admin,
            "mutation { createUser(input: { email: \"user2@example.com\", username: \"someone\", password: \"long enough secret\" }) { id } }",
            json!({}),
        ),
        (
            "a status move that is not allowed",
            admin,
            "mutation { updateOrderStatus(id: \"1\", status: PENDING) { id } }",
            json!({}),
        ),
        (
            "a money value with three decimals",
            admin,
            "{ orders(minAmount: \"1.005\") { id } }",
            json!({}),
        ),
        (
            "an unknown order",
            admin,
            "{ order(id: \"999999\") { id } }",
            json!({}),
        ),
    ];
    let mut shapes = Vec::new();
    for (case, token, query, variables) in cases {
        let mut r = app.gql_as(token, query, variables).await;
        // Timings are not part of the shape.
        if let Some(ext) = r.body.get_mut("extensions").and_then(|e| e.as_object_mut()) {
            ext.remove("sql");
            if ext.is_empty() {
                r.body.as_object_mut().map(|b| b.remove("extensions"));
            }
        }
        shapes.push(json!({ "case": case, "status": r.status.as_u16(), "body": r.body }));
    }
    insta::assert_json_snapshot!(shapes);
}
