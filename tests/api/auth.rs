//! Accounts, tokens and the permission table: every cell for anonymous viewers, customers
//! and administrators, and every path to another customer's data closed.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use eagerql::model::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, deactivate, scalar_i64, spawn_app, spawn_app_with};

const PASSWORD: &str = "correct horse battery";

/// Signs up `name` (anonymously, as a frontend would) and gives its id.
async fn sign_up(app: &TestApp, name: &str) -> i64 {
    let r = app
        .gql_as(
            None,
            "mutation($e: String!, $u: String!, $p: String!) { createUser(input: { email: $e, username: $u, password: $p }) { id email role } }",
            json!({ "e": format!("{name}@example.com"), "u": name, "p": PASSWORD }),
        )
        .await;
    let user = &r.data()["createUser"];
    assert_eq!(user["role"], "CUSTOMER", "{}", r.body);
    user["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id")
}

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken expiresAt refreshToken user { id username role } } }";

async fn login(app: &TestApp, email: &str, password: &str) -> crate::helpers::Gql {
    app.gql_as(None, LOGIN, json!({ "e": email, "p": password }))
        .await
}

const REFRESH: &str =
    "mutation($t: String!) { refreshToken(token: $t) { accessToken refreshToken user { id } } }";

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn login_gives_tokens_that_name_the_viewer() {
    let app = spawn_app().await;
    let id = sign_up(&app, "alice").await;
    let r = login(&app, "Alice@Example.com", PASSWORD).await;
    let payload = &r.data()["login"];
    assert_eq!(payload["user"]["username"], "alice");
    let access = s(&payload["accessToken"]);
    assert!(!s(&payload["refreshToken"]).is_empty());
    let expires =
        chrono::DateTime::parse_from_rfc3339(&s(&payload["expiresAt"])).expect("expiresAt");
    let ttl = expires
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!(
        (880..=900).contains(&ttl),
        "default lifetime 900 s, got {ttl}"
    );
    let me = app
        .gql_as(Some(&access), "{ me { id username role } }", json!({}))
        .await;
    assert_eq!(
        me.data()["me"],
        json!({ "id": id.to_string(), "username": "alice", "role": "CUSTOMER" })
    );
    let anonymous = app.gql_as(None, "{ me { id } }", json!({})).await;
    assert_eq!(anonymous.data()["me"], Value::Null);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_address_are_the_same_error() {
    let app = spawn_app().await;
    // Seeded demo users have no usable password.
    app.seed(2, 0, 0, 0).await;
    sign_up(&app, "bob").await;
    let wrong = login(&app, "bob@example.com", "not the password").await;
    let unknown = login(&app, "nobody@example.com", PASSWORD).await;
    for r in [&wrong, &unknown] {
        assert_eq!(r.error_code(), "UNAUTHENTICATED", "{}", r.body);
        assert_eq!(r.body["data"], Value::Null);
    }
    assert_eq!(wrong.error_message(), unknown.error_message());
    assert_eq!(
        login(&app, "user1@example.com", "!").await.error_code(),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn inactive_accounts_cannot_sign_in_and_lose_their_refresh_tokens() {
    let app = spawn_app().await;
    let id = sign_up(&app, "carol").await;
    let r = login(&app, "carol@example.com", PASSWORD).await;
    let refresh = s(&r.data()["login"]["refreshToken"]);
    let off = app
        .gql(&format!(
            "mutation {{ deactivateUser(id: \"{id}\") {{ isActive }} }}"
        ))
        .await;
    assert_eq!(off.data()["deactivateUser"]["isActive"], false);
    assert_eq!(
        login(&app, "carol@example.com", PASSWORD)
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
    let again = app.gql_as(None, REFRESH, json!({ "t": refresh })).await;
    assert_eq!(again.error_code(), "UNAUTHENTICATED", "{}", again.body);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_its_family() {
    let app = spawn_app().await;
    sign_up(&app, "dave").await;
    let first = s(&login(&app, "dave@example.com", PASSWORD).await.data()["login"]["refreshToken"]);
    let r = app.gql_as(None, REFRESH, json!({ "t": first })).await;
    let second = s(&r.data()["refreshToken"]["refreshToken"]);
    assert_ne!(first, second);
    let access = s(&r.data()["refreshToken"]["accessToken"]);
    assert!(
        app.gql_as(Some(&access), "{ me { id } }", json!({}))
            .await
            .data()["me"]
            .is_object()
    );
    // The first token again: refused, and the whole family with it.
    let reuse = app.gql_as(None, REFRESH, json!({ "t": first })).await;
    assert_eq!(reuse.error_code(), "UNAUTHENTICATED");
    let after = app.gql_as(None, REFRESH, json!({ "t": second })).await;
    assert_eq!(
        after.error_code(),
        "UNAUTHENTICATED",
        "the family is revoked"
    );
    assert_eq!(
        app.gql_as(None, REFRESH, json!({ "t": "made up" }))
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let app = spawn_app().await;
    sign_up(&app, "erin").await;
    let refresh =
        s(&login(&app, "erin@example.com", PASSWORD).await.data()["login"]["refreshToken"]);
    let out = app
        .gql_as(
            None,
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": refresh }),
        )
        .await;
    assert_eq!(out.data()["logout"], true);
    let again = app
        .gql_as(
            None,
            "mutation($t: String!) { logout(refreshToken: $t) }",
            json!({ "t": refresh }),
        )
        .await;
    assert_eq!(again.data()["logout"], false);
    assert_eq!(
        app.gql_as(None, REFRESH, json!({ "t": refresh }))
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
}

async fn post_with_authorization(
    app: &TestApp,
    value: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("authorization", value)
        .body(Body::from(
            json!({ "query": "{ products { id } }" }).to_string(),
        ))
        .expect("request");
    app.send(req).await
}

#[tokio::test]
async fn a_bad_token_is_401_with_www_authenticate_never_anonymous() {
    let app = spawn_app_with(&["--jwt-secret", "this server's secret"]).await;
    let other = spawn_app_with(&["--jwt-secret", "another secret"]).await;
    let foreign = other.token_for(1, Role::Admin);
    // Correctly signed, expired a minute ago.
    let now = chrono::Utc::now().timestamp();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "1", "role": "admin", "iss": "eagerql", "iat": now - 120, "exp": now - 60 }),
        &jsonwebtoken::EncodingKey::from_secret(b"this server's secret").expect("key"),
    )
    .expect("token");
    let unexpired = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "1", "role": "admin", "iss": "eagerql", "iat": now, "exp": now + 60 }),
        &jsonwebtoken::EncodingKey::from_secret(b"this server's secret").expect("key"),
    )
    .expect("token");
    let (status, _, _) = post_with_authorization(&app, &format!("Bearer {unexpired}")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same claims, unexpired, are accepted"
    );
    for value in [
        "Bearer not-a-token".to_owned(),
        format!("Bearer {foreign}"),
        format!("Bearer {expired}"),
        "Basic dXNlcjpwYXNz".to_owned(),
        "Bearer".to_owned(),
    ] {
        let (status, headers, body) = post_with_authorization(&app, &value).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}: {body}");
        assert_eq!(
            headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer error=\"invalid_token\""),
            "{value}"
        );
        let body: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }
    let (status, _, _) = post_with_authorization(&app, &format!("bearer {}", app.token)).await;
    assert_eq!(status, StatusCode::OK, "the scheme is case-insensitive");
}

#[tokio::test]
async fn every_instance_on_one_database_accepts_the_same_tokens() {
    let app = spawn_app().await;
    let token = app.token_for(7, Role::Customer);
    // A second instance (a restart, or another process) on the same database.
    let keys = eagerql::auth::Keys::load(
        &eagerql::db::Session::unmetered(app.db.clone()),
        None,
        app.state.config.auth.tokens(),
    )
    .await
    .unwrap_or_else(|e| panic!("{}", e.detail()));
    assert_eq!(
        keys.verify(&token).await.ok(),
        Some(eagerql::model::Viewer::User {
            id: 7,
            role: Role::Customer
        })
    );
}

#[tokio::test]
async fn failed_logins_are_rate_limited_with_retry_after() {
    let app = spawn_app_with(&["--login-failures-per-account", "3"]).await;
    sign_up(&app, "frank").await;
    for _ in 0..3 {
        assert_eq!(
            login(&app, "frank@example.com", "wrong password")
                .await
                .error_code(),
            "UNAUTHENTICATED"
        );
    }
    let req = Request::post("/graphql")
        .header("content-type", "application/json")
        .body(Body::from(
            json!({ "query": LOGIN, "variables": { "e": "frank@example.com", "p": PASSWORD } })
                .to_string(),
        ))
        .expect("request");
    let (_, headers, body) = app.send(req).await;
    let body: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    let retry: u64 = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=300).contains(&retry));
    // Another account is not affected.
    sign_up(&app, "grace").await;
    assert!(login(&app, "grace@example.com", PASSWORD).await.data()["login"].is_object());
}

/// Seeds three customers with orders, and gives a customer token for user 1.
async fn shop() -> (TestApp, String) {
    let app = spawn_app().await;
    app.seed(3, 2, 2, 4).await;
    let token = app.token_for(1, Role::Customer);
    (app, token)
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(|o| s(&o["id"])).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn anonymous_viewers_see_the_catalogue_only() {
    let (app, _) = shop().await;
    let q = async |query: &str| app.gql_as(None, query, json!({})).await;
    let products = q(
        "{ products { id orders { id } orderItems { id } } product(id: 1) { name orders { id } } }",
    )
    .await;
    let list = products.data()["products"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(list.len(), 4);
    assert!(
        list.iter()
            .all(|p| p["orders"] == json!([]) && p["orderItems"] == json!([]))
    );
    assert_eq!(products.data()["product"]["orders"], json!([]));
    for root in [
        "{ users { id } }",
        "{ user(id: 1) { id } }",
        "{ orders { id } }",
        "{ order(id: 1) { id } }",
        "{ analytics { topCustomers { orderCount } } }",
        "{ ordersAggregate { count } }",
        "{ usersAggregate { count } }",
    ] {
        assert_eq!(q(root).await.error_code(), "UNAUTHENTICATED", "{root}");
    }
    assert_eq!(
        q("{ productsAggregate { count } }").await.data()["productsAggregate"]["count"],
        4
    );
    let counts =
        q("{ products { ordersAggregate { count } orderItemsAggregate { count } } }").await;
    assert!(
        counts.data()["products"].as_array().is_some_and(|a| a
            .iter()
            .all(|p| p["ordersAggregate"]["count"] == 0 && p["orderItemsAggregate"]["count"] == 0)),
        "{}",
        counts.body
    );
    for mutation in [
        "mutation { createOrder(input: { userId: \"1\", items: [{ productId: \"1\", quantity: 1 }] }) { id } }",
        "mutation { updateOrderStatus(id: \"1\", status: CANCELLED) { id } }",
        "mutation { deactivateUser(id: \"2\") { id } }",
        "mutation { importProducts(products: []) { inserted } }",
    ] {
        assert_eq!(
            q(mutation).await.error_code(),
            "UNAUTHENTICATED",
            "{mutation}"
        );
    }
    // Nothing changed.
    let admin = app
        .gql("{ user(id: 2) { isActive } order(id: 1) { status } }")
        .await;
    assert_eq!(admin.data()["user"]["isActive"], true);
    assert_ne!(admin.data()["order"]["status"], "CANCELLED");
}

#[tokio::test]
async fn a_customer_sees_only_their_own_account_and_orders() {
    let (app, me) = shop().await;
    let q = async |query: &str| app.gql_as(Some(&me), query, json!({})).await;
    assert_eq!(q("{ me { id } }").await.data()["me"]["id"], "1");
    assert_eq!(q("{ user(id: 1) { id } }").await.data()["user"]["id"], "1");
    assert_eq!(
        q("{ user(id: 2) { id } }").await.data()["user"],
        Value::Null
    );
    assert_eq!(q("{ users { id } }").await.error_code(), "FORBIDDEN");
    assert_eq!(
        q("{ usersAggregate { count } }").await.error_code(),
        "FORBIDDEN"
    );
    assert_eq!(
        q("{ ordersAggregate { count } }").await.data()["ordersAggregate"]["count"],
        2,
        "their own orders only"
    );
    assert_eq!(
        q("{ analytics { topCustomers { orderCount } } }")
            .await
            .error_code(),
        "FORBIDDEN"
    );
    let mine = q("{ orders(first: 100) { id user { id } } }").await;
    let orders = mine.data()["orders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(orders.len(), 2);
    assert!(orders.iter().all(|o| o["user"]["id"] == "1"));
    // Another customer's order: null, exactly as a missing one.
    let others = app.gql("{ user(id: 2) { orders { id } } }").await;
    let theirs = s(&others.data()["user"]["orders"][0]["id"]);
    let r = q(&format!(
        "{{ order(id: \"{theirs}\") {{ id }} missing: order(id: \"999\") {{ id }} }}"
    ))
    .await;
    assert_eq!(r.data(), &json!({ "order": null, "missing": null }));
    assert_eq!(
        q("{ orders(userId: \"2\") { id } }").await.data()["orders"],
        json!([])
    );
}

#[tokio::test]
async fn no_path_reaches_another_customers_data() {
    let (app, me) = shop().await;
    let mine: Vec<String> =
        ids(&app.gql("{ user(id: 1) { orders { id } } }").await.data()["user"]["orders"]);
    // Every way to reach orders, items and users from the catalogue, with aliases and
    // fragments, and through nested edges.
    let probe = "query { products { a: orders { id user { id email orders { id } } } ...P } \
                 product(id: 1) { orderItems { order { id user { id } items { id order { id } } } } } } \
                 fragment P on Product { b: orderItems { id order { id user { id } } } \
                 ... on Product { c: orders(first: 50) { id products { orders { id } } } } }";
    let r = app.gql_as(Some(&me), probe, json!({})).await;
    let text = r.data().to_string();
    let data: Value = r.data().clone();
    let mut seen_orders = Vec::new();
    let mut seen_users = Vec::new();
    fn walk(v: &Value, key: Option<&str>, orders: &mut Vec<String>, users: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let (Some(k), Some(Value::String(id))) = (key, m.get("id")) {
                    match k {
                        "a" | "c" | "orders" | "order" => orders.push(id.clone()),
                        "user" => users.push(id.clone()),
                        _ => {}
                    }
                }
                for (k, child) in m {
                    walk(child, Some(k), orders, users);
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, key, orders, users)),
            _ => {}
        }
    }
    walk(&data, None, &mut seen_orders, &mut seen_users);
    assert!(
        !seen_orders.is_empty(),
        "the probe reaches the customer's own orders: {text}"
    );
    assert!(
        seen_orders.iter().all(|o| mine.contains(o)),
        "{seen_orders:?} vs {mine:?}"
    );
    assert!(seen_users.iter().all(|u| u == "1"), "{seen_users:?}");
    assert!(
        !text.contains("user2@") && !text.contains("user3@"),
        "{text}"
    );
    // Mutation results show only what the customer may see as well.
    let placed = app
        .gql_as(
            Some(&me),
            "mutation { createOrder(input: { items: [{ productId: \"1\", quantity: 1 }] }) { user { id } products { orders { id user { id } } } } }",
            json!({}),
        )
        .await;
    let users: Vec<String> = placed.data()["createOrder"]["products"][0]["orders"]
        .as_array()
        .map(|a| a.iter().map(|o| s(&o["user"]["id"])).collect())
        .unwrap_or_default();
    assert!(
        !users.is_empty() && users.iter().all(|u| u == "1"),
        "{users:?}"
    );
}

#[tokio::test]
async fn a_customer_orders_for_themselves_and_may_only_cancel_their_pending_orders() {
    let (app, me) = shop().await;
    let q = async |query: String| app.gql_as(Some(&me), &query, json!({})).await;
    let own = q("mutation { createOrder(input: { items: [{ productId: \"2\", quantity: 1 }] }) { id status user { id } } }".into()).await;
    assert_eq!(own.data()["createOrder"]["user"]["id"], "1");
    let id = s(&own.data()["createOrder"]["id"]);
    let explicit = q("mutation { createOrder(input: { userId: \"1\", items: [{ productId: \"2\", quantity: 1 }] }) { id } }".into()).await;
    assert!(explicit.data()["createOrder"]["id"].is_string());
    let for_other = q("mutation { createOrder(input: { userId: \"2\", items: [{ productId: \"2\", quantity: 1 }] }) { id } }".into()).await;
    assert_eq!(for_other.error_code(), "FORBIDDEN");
    let ship = q(format!(
        "mutation {{ updateOrderStatus(id: \"{id}\", status: SHIPPED) {{ id }} }}"
    ))
    .await;
    assert_eq!(ship.error_code(), "FORBIDDEN");
    let theirs =
        s(&app.gql("{ user(id: 2) { orders { id } } }").await.data()["user"]["orders"][0]["id"]);
    let other = q(format!(
        "mutation {{ updateOrderStatus(id: \"{theirs}\", status: CANCELLED) {{ id }} }}"
    ))
    .await;
    assert_eq!(
        other.error_code(),
        "NOT_FOUND",
        "another's order does not exist for them"
    );
    let cancel = q(format!(
        "mutation {{ updateOrderStatus(id: \"{id}\", status: CANCELLED) {{ status }} }}"
    ))
    .await;
    assert_eq!(cancel.data()["updateOrderStatus"]["status"], "CANCELLED");
    for admin_only in [
        "mutation { deactivateUser(id: \"2\") { id } }".to_owned(),
        "mutation { importProducts(products: []) { inserted } }".to_owned(),
    ] {
        assert_eq!(
            q(admin_only.clone()).await.error_code(),
            "FORBIDDEN",
            "{admin_only}"
        );
    }
    assert_ne!(
        app.gql(&format!("{{ order(id: \"{theirs}\") {{ status }} }}"))
            .await
            .data()["order"]["status"],
        "CANCELLED"
    );
}

#[tokio::test]
async fn an_administrator_sees_and_changes_everything() {
    let (app, _) = shop().await;
    let r = app
        .gql("{ users { id } orders(first: 100) { id } analytics { spendingSummary(first: 3) { user { id } } } }")
        .await;
    assert_eq!(r.data()["users"].as_array().map(Vec::len), Some(3));
    assert_eq!(r.data()["orders"].as_array().map(Vec::len), Some(6));
    let off = app
        .gql("mutation { deactivateUser(id: \"3\") { isActive orders { id } } }")
        .await;
    assert_eq!(off.data()["deactivateUser"]["isActive"], false);
    assert_eq!(
        off.data()["deactivateUser"]["orders"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let other = app
        .gql("{ user(id: 2) { email } order(id: 5) { user { id } } }")
        .await;
    assert_eq!(other.data()["user"]["email"], "user2@example.com");
    assert_eq!(other.data()["order"]["user"]["id"], "3");
    deactivate(&app, 2).await;
}

#[tokio::test]
async fn the_viewer_costs_no_statement() {
    let (app, me) = shop().await;
    let anonymous = app
        .gql_as(None, "{ products { id orders { id } } }", json!({}))
        .await;
    let customer = app
        .gql_as(Some(&me), "{ products { id orders { id } } }", json!({}))
        .await;
    let admin = app.gql("{ products { id orders { id } } }").await;
    assert_eq!(admin.statements, 2);
    assert_eq!(customer.statements, 2);
    assert_eq!(
        anonymous.statements, 2,
        "the predicate is in the statement, even when it matches nothing"
    );
    let sql = customer.body["extensions"]["sql"]["statements"].to_string();
    assert!(
        !sql.contains("from users"),
        "no lookup of the viewer: {sql}"
    );
}

/// A login's answer is bounded like any other: one whose `user { ... }` fans out past the
/// byte cap is refused whole and starts no session (no refresh token is stored), and a
/// refresh refused so keeps the old refresh token valid.
#[tokio::test]
async fn a_login_whose_answer_is_over_the_byte_cap_starts_no_session() {
    let app = spawn_app_with(&["--max-response-bytes", "1500"]).await;
    app.seed(4, 3, 2, 3).await;
    let id = sign_up(&app, "dora").await;
    // Three orders of the same three products: each level multiplies the answer by three.
    for _ in 0..3 {
        let r = app
            .gql(&format!(
                "mutation {{ createOrder(input: {{ userId: \"{id}\", items: [{{ productId: \"1\", quantity: 1 }}, \
                 {{ productId: \"2\", quantity: 1 }}, {{ productId: \"3\", quantity: 1 }}] }}) {{ id }} }}"
            ))
            .await;
        assert!(r.data()["createOrder"]["id"].is_string());
    }
    let fan_out = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { \
                   accessToken user { orders { products { orders { products { orders { id createdAt } } } } } } } }";
    let r = app
        .gql_as(
            None,
            fan_out,
            json!({ "e": "dora@example.com", "p": PASSWORD }),
        )
        .await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);
    assert!(
        r.error_message().contains("nothing was written"),
        "{}",
        r.body
    );
    assert_eq!(r.body["data"], Value::Null, "{}", r.body);
    assert!(
        r.body["errors"].to_string().len() < 2_000,
        "no giant body: {}",
        r.body
    );
    let sessions = format!("select count(*) from refresh_tokens where user_id = {id}");
    assert_eq!(
        scalar_i64(&app, &sessions).await,
        0,
        "no session was started"
    );

    // A small answer signs in; a refresh whose answer is too large leaves the token usable.
    let r = login(&app, "dora@example.com", PASSWORD).await;
    let refresh = s(&r.data()["login"]["refreshToken"]);
    let big_refresh = "mutation($t: String!) { refreshToken(token: $t) { accessToken \
                       user { orders { products { orders { products { orders { id createdAt } } } } } } } }";
    let r = app.gql_as(None, big_refresh, json!({ "t": refresh })).await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);
    let r = app.gql_as(None, REFRESH, json!({ "t": refresh })).await;
    assert!(
        r.data()["refreshToken"]["accessToken"].is_string(),
        "the refused rotation was rolled back: {}",
        r.body
    );
}

/// Every root generated from the description applies its described access rule, for every
/// role, before any SQL: whoever it excludes gets `UNAUTHENTICATED` (anonymous) or
/// `FORBIDDEN` (a customer at an administrators' root) and no statement runs.
#[tokio::test]
async fn every_generated_root_applies_its_described_access() {
    use eagerql::entities::Access;
    use eagerql::planner::roots::{RootKind, root_fields};
    let (app, _) = shop().await;
    let customer = app.token_for(2, Role::Customer);
    let viewers = [
        ("anonymous", None),
        ("customer", Some(customer.as_str())),
        ("administrator", Some(app.token.as_str())),
    ];
    let roots = root_fields();
    let names: Vec<&str> = roots.iter().map(|r| r.name.as_str()).collect();
    for known in [
        "users",
        "user",
        "ordersConnection",
        "productsAggregate",
        "order",
    ] {
        assert!(names.contains(&known), "{known} in {names:?}");
    }
    for root in roots {
        let query = match root.kind {
            RootKind::ById => format!("{{ {}(id: \"1\") {{ __typename }} }}", root.name),
            RootKind::List => format!("{{ {} {{ __typename }} }}", root.name),
            RootKind::Connection => format!("{{ {} {{ totalCount }} }}", root.name),
            RootKind::Aggregate => format!("{{ {} {{ count }} }}", root.name),
        };
        for (who, token) in viewers {
            let refused = match (root.access, who) {
                (Access::Anyone, _) | (_, "administrator") => None,
                (_, "anonymous") => Some("UNAUTHENTICATED"),
                (Access::SignedIn, _) => None,
                (Access::Admin, _) => Some("FORBIDDEN"),
            };
            let r = app.gql_as(token, &query, json!({})).await;
            match refused {
                None => assert!(
                    r.body.get("errors").is_none(),
                    "{who} at {}: {}",
                    root.name,
                    r.body
                ),
                Some(code) => {
                    assert_eq!(r.error_code(), code, "{who} at {}: {}", root.name, r.body);
                    assert_eq!(r.statements, 0, "{who} at {}", root.name);
                    assert_eq!(r.body["errors"][0]["path"], json!([root.name]));
                }
            }
        }
    }
}
