//! The fast output path: JSON written straight from preloaded rows, and loads that read only
//! the columns a query selects.

use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

/// The SQL text of the statement named `name` in a response's `extensions.sql`.
fn sql_of<'a>(body: &'a Value, name: &str) -> &'a str {
    body["extensions"]["sql"]["statements"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == name))
        .and_then(|s| s["sql"].as_str())
        .unwrap_or_else(|| panic!("no statement {name} in {body}"))
}

#[tokio::test]
async fn loads_read_only_the_selected_columns_and_keys() {
    let app = spawn_app().await;
    app.seed(3, 2, 2, 4).await;

    let r = app
        .gql("{ users(first: 3) { id orders { totalAmount } } }")
        .await;
    assert_eq!(r.statements, 2, "{}", r.body);
    let users = sql_of(&r.body, "users.page");
    for unread in ["email", "username", "bio", "is_active", "created_at"] {
        assert!(!users.contains(unread), "{unread} read: {users}");
    }
    let orders = sql_of(&r.body, "orders.by_user_ids");
    assert!(orders.contains("total_amount"), "{orders}");
    for unread in ["status", "created_at"] {
        assert!(!orders.contains(unread), "{unread} read: {orders}");
    }
    let amounts = r.data()["users"][0]["orders"]
        .as_array()
        .map(|o| o.iter().filter(|o| o["totalAmount"].is_string()).count());
    assert_eq!(amounts, Some(2), "{}", r.body);

    // Selected on one alias only, a field's column is still read once for all of them.
    let r = app
        .gql("{ a: users(first: 1) { email } b: users(first: 1) { id username } }")
        .await;
    let users = sql_of(&r.body, "users.page");
    assert!(users.contains("email"), "{users}");
    assert_eq!(r.data()["a"][0].as_object().map(|o| o.len()), Some(1));
    assert!(
        r.data()["b"][0]["username"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
}

#[tokio::test]
async fn any_text_round_trips_through_the_json_writer() {
    let app = spawn_app().await;
    let bio = "quote \" backslash \\ slash / newline \n tab \t cr \r bell \u{7} esc \u{1b} \
               us \u{1f} del \u{7f} accents é ü ✓ emoji 😀 </script> \u{2028}";
    let r = app
        .gql_vars(
            "mutation($bio: String) { createUser(input: { email: \"t@example.com\", \
             username: \"tester\", password: \"correct horse\", bio: $bio }) { id bio } }",
            json!({ "bio": bio }),
        )
        .await;
    assert_eq!(r.data()["createUser"]["bio"], bio, "{}", r.body);
    // The password hash is bound but never shown in the statement log.
    let insert = r.body["extensions"]["sql"]["statements"][0]["params"].to_string();
    assert!(
        insert.contains("<redacted>") && !insert.contains("argon2"),
        "{insert}"
    );
    let r = app
        .gql("{ users { __typename id username bio orders { id } } }")
        .await;
    assert_eq!(
        r.data()["users"],
        json!([{ "__typename": "User", "id": r.data()["users"][0]["id"], "username": "tester",
                 "bio": bio, "orders": [] }]),
        "{}",
        r.body
    );
}

#[tokio::test]
async fn text_the_database_cannot_store_is_bad_input_on_both_backends() {
    let app = spawn_app().await;
    let r = app
        .gql_vars(
            "mutation($bio: String) { createUser(input: { email: \"n@example.com\", \
             username: \"nul-user\", password: \"correct horse\", bio: $bio }) { id } }",
            json!({ "bio": "before \u{0} after" }),
        )
        .await;
    assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
    assert!(r.error_message().contains("U+0000"), "{}", r.body);
    assert_eq!(app.gql("{ users { id } }").await.data()["users"], json!([]));
}

/// Mutation results and the users and products of analytics rows are written by the same
/// renderer as query roots: none of them falls back to the field-by-field executor, and their
/// answers have the selection's key order and aliases.
#[tokio::test]
async fn mutation_results_and_report_rows_use_the_one_renderer() {
    let app = spawn_app().await;
    app.seed(6, 2, 2, 4).await;
    let created = app
        .gql(
            "mutation { createUser(input: { email: \"r@example.com\", username: \"renderer\", \
             password: \"correct horse\" }) { __typename handle: username id orders { id } } }",
        )
        .await;
    let user = &created.data()["createUser"];
    assert_eq!(
        user.as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec![
            "__typename".into(),
            "handle".into(),
            "id".into(),
            "orders".into()
        ])
    );
    assert_eq!(user["handle"], "renderer");
    let order = app
        .gql(
            "mutation { createOrder(input: { userId: \"1\", items: [{ productId: \"2\", quantity: 1 }] }) \
             { id status user { username } items { quantity product { sku } } products { id } } }",
        )
        .await;
    assert_eq!(order.data()["createOrder"]["items"][0]["quantity"], 1);
    let id = order.data()["createOrder"]["id"].clone();
    let shipped = app
        .gql(&format!(
            "mutation {{ updateOrderStatus(id: {id}, status: SHIPPED) {{ status totalAmount }} }}"
        ))
        .await;
    assert_eq!(shipped.data()["updateOrderStatus"]["status"], "SHIPPED");
    let off = app
        .gql("mutation { deactivateUser(id: \"6\") { isActive orders { id } } }")
        .await;
    assert_eq!(off.data()["deactivateUser"]["isActive"], false);
    let reports = app
        .gql(
            "{ analytics { spendingSummary(first: 3) { user { username orders(first: 1) { id } } } \
             topCustomers(days: 3650) { user { email } } \
             productSales(days: 3650) { product { sku orderItems { id } } } } }",
        )
        .await;
    assert!(reports.data()["analytics"]["spendingSummary"][0]["user"]["username"].is_string());
}

/// A rule of the renderer (here the response byte cap) applies to report rows and mutation
/// results as it does to query roots, since the same renderer writes them. A mutation writes
/// its answer inside its transaction: one over the cap rolls the write back, so a client is
/// never told "too large" about a write that happened.
#[tokio::test]
async fn the_renderers_rules_apply_to_reports_and_mutation_results() {
    let app = spawn_app_with(&["--max-response-bytes", "400"]).await;
    app.seed(6, 4, 3, 4).await;
    let big = "{ analytics { spendingSummary(first: 6) { user { orders { id status totalAmount createdAt } } } } }";
    let r = app.gql(big).await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);

    let big = "mutation { deactivateUser(id: \"2\") { orders { id status totalAmount createdAt items { id } } } }";
    let r = app.gql(big).await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);
    assert!(
        r.error_message().contains("nothing was written"),
        "{}",
        r.body
    );
    assert_eq!(r.body["errors"][0]["path"], json!(["deactivateUser"]));
    assert!(
        r.body["errors"].to_string().len() < 2_000,
        "no giant body: {}",
        r.body
    );
    let still = app.gql("{ user(id: 2) { isActive } }").await;
    assert_eq!(still.data()["user"]["isActive"], true, "rolled back");
    // Within the cap, the same mutation is answered and committed.
    let r = app
        .gql("mutation { deactivateUser(id: \"2\") { orders { id } } }")
        .await;
    assert_eq!(
        r.data()["deactivateUser"]["orders"]
            .as_array()
            .map(Vec::len),
        Some(4)
    );

    // A new order whose answer fans out past the cap is not placed: no order, no stock taken.
    let before = app
        .gql("{ ordersAggregate { count } product(id: 1) { stockQuantity } }")
        .await;
    let r = app
        .gql(
            "mutation { createOrder(input: { userId: \"3\", items: [{ productId: \"1\", quantity: 1 }] }) \
             { id products { orders { products { orders { id totalAmount createdAt } } } } } }",
        )
        .await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);
    let after = app
        .gql("{ ordersAggregate { count } product(id: 1) { stockQuantity } }")
        .await;
    assert_eq!(after.data(), before.data(), "nothing was written");
    // Several mutation fields share the request's one budget: the second, over what the
    // first left, is rolled back; the first stays committed (its answer is lost to the
    // second's error: both fields are non-null, so `data` is null, as for any failure).
    let r = app
        .gql(
            "mutation { a: createOrder(input: { userId: \"3\", items: [{ productId: \"1\", quantity: 1 }] }) \
             { id user { username email } } \
             b: createOrder(input: { userId: \"3\", items: [{ productId: \"2\", quantity: 1 }] }) \
             { id user { orders { id status totalAmount createdAt } } } }",
        )
        .await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);
    assert_eq!(r.body["errors"][0]["path"], json!(["b"]), "{}", r.body);
    assert_eq!(r.body["errors"].as_array().map(Vec::len), Some(1));
    let count = |g: &crate::helpers::Gql| g.data()["ordersAggregate"]["count"].clone();
    let after = app.gql("{ ordersAggregate { count } }").await;
    assert_eq!(
        count(&after),
        json!(count(&before).as_i64().unwrap_or_default() + 1)
    );

    let tight = spawn_app_with(&["--max-rows", "5"]).await;
    tight.seed(6, 4, 3, 4).await;
    let r = tight
        .gql("mutation { deactivateUser(id: \"2\") { orders { items { id } } } }")
        .await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);
    let still = tight.gql("{ user(id: 2) { isActive } }").await;
    assert_eq!(
        still.data()["user"]["isActive"],
        true,
        "over the row budget, the mutation rolled back"
    );
    let small = app
        .gql("{ analytics { spendingSummary(first: 1) { user { id } } } }")
        .await;
    assert!(small.data()["analytics"]["spendingSummary"][0]["user"]["id"].is_string());
}

/// The byte cap holds for an answer without lists too: one object whose size comes from
/// aliased to-one edges (no list item to check before) is refused whole, on a query root and
/// on a mutation's answer (whose write is rolled back).
#[tokio::test]
async fn the_byte_cap_holds_for_an_answer_without_lists() {
    let app = spawn_app_with(&["--max-response-bytes", "1500"]).await;
    app.seed(2, 1, 1, 2).await;
    let fields = (0..25)
        .map(|i| format!("u{i}: user {{ email username createdAt updatedAt isActive }}"))
        .collect::<Vec<_>>()
        .join(" ");
    let r = app
        .gql(&format!("{{ order(id: \"1\") {{ id {fields} }} }}"))
        .await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);
    let small = app
        .gql("{ order(id: \"1\") { id u: user { email } } }")
        .await;
    assert_eq!(small.data()["order"]["id"], "1");

    let before = crate::model::Model::load(&app.db).await.orders.len();
    let r = app
        .gql(&format!(
            "mutation {{ createOrder(input: {{ userId: \"1\", items: [{{ productId: \"1\", quantity: 1 }}] }}) {{ id {fields} }} }}"
        ))
        .await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);
    let after = crate::model::Model::load(&app.db).await.orders.len();
    assert_eq!(before, after, "the refused order was rolled back");
}
