//! The fast output path: JSON written straight from preloaded rows, and loads that read only
//! the columns a query selects.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

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
    let fallbacks = eagerql::graphql::fast::fallbacks();
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
    assert_eq!(eagerql::graphql::fast::fallbacks(), fallbacks, "fast path");
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
