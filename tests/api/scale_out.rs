//! Past one server: several stateless instances on one database, a transaction-mode
//! connection pooler, and read replicas.

use serde_json::json;

use crate::helpers::{ServerProcess, TestDb};

const LOGIN: &str = r#"mutation { login(email: "user1@example.com", password: "eagerql-demo") { accessToken refreshToken } }"#;

/// Signs in as the demo administrator: `(access token, refresh token)`.
async fn login(server: &ServerProcess) -> (String, String) {
    let r = server.gql(None, LOGIN, json!({})).await;
    let p = &r.data()["login"];
    (
        p["accessToken"].as_str().expect("token").to_owned(),
        p["refreshToken"].as_str().expect("refresh").to_owned(),
    )
}

/// Two server processes on one database: a token signed by one is accepted by the other, a
/// refresh token works once across both, and 50 concurrent orders for 10 units, split across
/// the two, sell exactly 10.
#[tokio::test]
async fn two_instances_on_one_database_share_tokens_and_never_oversell() {
    let tdb = TestDb::create().await;
    let a = ServerProcess::start(&tdb.url, &["--demo-data", "true"], &[]);
    let b = ServerProcess::start(&tdb.url, &["--demo-data", "false"], &[]);
    let (token, refresh) = login(&a).await;

    // Signed by A, accepted by B.
    let me = b.gql(Some(&token), "{ me { id role } }", json!({})).await;
    assert_eq!(me.data()["me"], json!({ "id": "1", "role": "ADMIN" }));

    // A refresh token made by A works once, on B, and is then spent for A too.
    let renewed = b
        .gql(
            None,
            "mutation($t: String!) { refreshToken(token: $t) { accessToken } }",
            json!({ "t": refresh }),
        )
        .await;
    assert!(renewed.data()["refreshToken"]["accessToken"].is_string());
    let again = a
        .gql(
            None,
            "mutation($t: String!) { refreshToken(token: $t) { accessToken } }",
            json!({ "t": refresh }),
        )
        .await;
    assert_eq!(again.error_code(), "UNAUTHENTICATED", "{}", again.body);

    // Ten units of product 1, set through B.
    let set = b
        .gql(
            Some(&token),
            "mutation($p: [ProductInput!]!) { importProducts(products: $p) { updated } }",
            json!({ "p": [{ "name": "Product 1", "sku": "SKU-0000001", "price": "2.50", "stockQuantity": 10 }] }),
        )
        .await;
    assert_eq!(set.data()["importProducts"]["updated"], 1);
    let sold = |server: &ServerProcess, token: String| {
        let addr = server.addr;
        async move {
            let r = crate::helpers::http_gql(
                addr,
                Some(&token),
                r#"{ product(id: "1") { stockQuantity orderItems { id } } }"#,
                json!({}),
            )
            .await;
            let p = r.data()["product"].clone();
            (
                p["stockQuantity"].as_i64().expect("stock"),
                p["orderItems"].as_array().map_or(0, Vec::len),
            )
        }
    };
    let (_, items_before) = sold(&a, token.clone()).await;

    let orders = (1..=50).map(|user: i64| {
        let addr = if user % 2 == 0 { a.addr } else { b.addr };
        let token = token.clone();
        async move {
            crate::helpers::http_gql(
                addr,
                Some(&token),
                "mutation($input: CreateOrderInput!) { createOrder(input: $input) { id } }",
                json!({ "input": { "userId": user.to_string(), "items": [{ "productId": "1", "quantity": 1 }] } }),
            )
            .await
        }
    });
    let results = futures_util::future::join_all(orders).await;
    let mut ok = 0;
    for r in &results {
        if r.body.get("errors").is_none() {
            ok += 1;
        } else {
            assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
            assert!(r.error_message().contains("insufficient stock"), "{}", r.body);
        }
    }
    assert_eq!(ok, 10, "exactly the ten units sold");
    for server in [&a, &b] {
        let (stock, items) = sold(server, token.clone()).await;
        assert_eq!((stock, items - items_before), (0, 10));
    }
}
