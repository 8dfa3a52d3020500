//! Cursor connections from a client's side: walking every page forward and backward gives
//! the whole list once, in order, at one statement a page; cursors are keyset positions
//! (stable while rows are inserted) valid only for their list and order; bad pages are
//! `BAD_USER_INPUT`; nested pages are per parent.

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, insert_order, spawn_app, spawn_app_with};
use crate::model::Model;

const FORWARD: &str = "query($after: String) { ordersConnection(first: 7, after: $after, orderBy: [STATUS_ASC, TOTAL_AMOUNT_DESC]) { totalCount edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage endCursor } } }";
const BACKWARD: &str = "query($before: String) { ordersConnection(last: 7, before: $before, orderBy: [STATUS_ASC, TOTAL_AMOUNT_DESC]) { nodes { id } pageInfo { hasPreviousPage hasNextPage startCursor } } }";

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|n| n["id"].as_str().expect("an id").to_owned())
        .collect()
}

/// Every order in the reference's order.
fn expected_order(model: &Model) -> Vec<String> {
    let all = model.eval(
        "{ orders(first: 1000, orderBy: [STATUS_ASC, TOTAL_AMOUNT_DESC]) { id } }",
        &json!({}),
    );
    ids(&all["orders"])
}

#[tokio::test]
async fn walking_forward_and_backward_visits_every_row_once_in_order() {
    let app = spawn_app().await;
    app.seed(12, 4, 1, 5).await;
    let model = Model::load(&app.db).await;
    let expected = expected_order(&model);
    assert_eq!(expected.len(), 48);

    let mut seen = Vec::new();
    let mut after = Value::Null;
    let mut pages = 0;
    loop {
        let r = app.gql_vars(FORWARD, json!({ "after": after })).await;
        let conn = r.data()["ordersConnection"].clone();
        // One statement for the page and one for the count, whatever the page.
        assert_eq!(r.statements, 2);
        assert_eq!(conn["totalCount"], 48);
        assert_eq!(conn["pageInfo"]["hasPreviousPage"], false);
        let edges = conn["edges"].as_array().expect("edges").clone();
        for e in &edges {
            seen.push(e["node"]["id"].as_str().expect("id").to_owned());
        }
        pages += 1;
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        assert_eq!(edges.len(), 7);
        assert_eq!(conn["pageInfo"]["endCursor"], edges[6]["cursor"]);
        after = conn["pageInfo"]["endCursor"].clone();
        assert!(pages < 20, "pagination does not end");
    }
    assert_eq!(pages, 7);
    assert_eq!(seen, expected);

    let mut back = Vec::new();
    let mut before = Value::Null;
    loop {
        let r = app.gql_vars(BACKWARD, json!({ "before": before })).await;
        assert_eq!(r.statements, 1);
        let conn = r.data()["ordersConnection"].clone();
        let mut page = ids(&conn["nodes"]);
        page.extend(back);
        back = page;
        if conn["pageInfo"]["hasPreviousPage"] == false {
            break;
        }
        before = conn["pageInfo"]["startCursor"].clone();
    }
    assert_eq!(back, expected);
}

#[tokio::test]
async fn a_cursor_is_a_keyset_position_stable_while_rows_are_inserted() {
    let app = spawn_app().await;
    app.seed(3, 4, 1, 2).await;
    let q = "query($after: String) { ordersConnection(first: 3, after: $after, orderBy: CREATED_AT_DESC) { nodes { id } pageInfo { endCursor } } }";
    let first = app.gql_vars(q, json!({ "after": null })).await;
    let page1 = ids(&first.data()["ordersConnection"]["nodes"]);
    let cursor = first.data()["ordersConnection"]["pageInfo"]["endCursor"].clone();
    let before = app.gql_vars(q, json!({ "after": cursor })).await;
    // New orders (the newest, so at the head of the list) do not shift the next page, as
    // an offset would.
    for _ in 0..2 {
        insert_order(&app, 1, "pending", 1000, Utc::now() + Duration::days(1)).await;
    }
    let after = app.gql_vars(q, json!({ "after": cursor })).await;
    assert_eq!(
        after.data()["ordersConnection"]["nodes"],
        before.data()["ordersConnection"]["nodes"]
    );
    let page2 = ids(&after.data()["ordersConnection"]["nodes"]);
    assert!(page2.iter().all(|id| !page1.contains(id)));
}

#[tokio::test]
async fn nested_pages_are_per_parent_and_cursors_apply_to_each_parent() {
    let app = spawn_app().await;
    app.seed(6, 5, 1, 3).await;
    let model = Model::load(&app.db).await;
    let first = app
        .gql("{ users(first: 6) { ordersConnection(first: 2, orderBy: TOTAL_AMOUNT_ASC) { edges { cursor } } } }")
        .await;
    let cursor = first.data()["users"][0]["ordersConnection"]["edges"][1]["cursor"].clone();
    let q = "query($c: String!) { users(first: 6) { id a: ordersConnection(first: 2, after: $c, orderBy: TOTAL_AMOUNT_ASC) { totalCount edges { cursor node { id totalAmount } } pageInfo { hasNextPage endCursor } } b: ordersConnection(last: 2, before: $c, orderBy: TOTAL_AMOUNT_ASC) { nodes { id } pageInfo { hasPreviousPage startCursor } } } }";
    let vars = json!({ "c": cursor });
    let r = app.gql_vars(q, vars.clone()).await;
    // users, page a, page b and the count: the same at any number of users.
    assert_eq!(r.statements, 4);
    assert_eq!(r.data().clone(), model.eval(q, &vars));
    for u in r.data()["users"].as_array().expect("users") {
        assert_eq!(u["a"]["totalCount"], 5);
    }
}

#[tokio::test]
async fn bad_pages_and_foreign_cursors_are_bad_user_input() {
    let app = spawn_app().await;
    app.seed(2, 2, 1, 2).await;
    let r = app
        .gql("{ ordersConnection(first: 1, orderBy: CREATED_AT_DESC) { pageInfo { endCursor } } }")
        .await;
    let cursor = r.data()["ordersConnection"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let users = app
        .gql("{ usersConnection(first: 1) { pageInfo { endCursor } } }")
        .await;
    let user_cursor = users.data()["usersConnection"]["pageInfo"]["endCursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let cases = [
        (
            format!(
                "{{ ordersConnection(first: 1, after: \"{cursor}\", orderBy: TOTAL_AMOUNT_ASC) {{ nodes {{ id }} }} }}"
            ),
            "another `orderBy`",
        ),
        (
            format!(
                "{{ ordersConnection(first: 1, after: \"{user_cursor}\") {{ nodes {{ id }} }} }}"
            ),
            "another type",
        ),
        (
            "{ ordersConnection(after: \"bm90IGEgY3Vyc29y\") { nodes { id } } }".to_owned(),
            "malformed",
        ),
        (
            "{ ordersConnection(after: \"%%%\") { nodes { id } } }".to_owned(),
            "malformed",
        ),
        (
            "{ ordersConnection(first: 1, last: 1) { nodes { id } } }".to_owned(),
            "not both",
        ),
        (
            "{ productsConnection(first: 1001) { nodes { id } } }".to_owned(),
            "at most 1000",
        ),
        (
            "{ productsConnection(last: -1) { nodes { id } } }".to_owned(),
            "negative",
        ),
        (
            "{ users(first: 1) { ordersConnection(first: 1001) { nodes { id } } } }".to_owned(),
            "at most 1000",
        ),
        (
            format!(
                "{{ users(first: 1) {{ ordersConnection(before: \"{cursor}\") {{ nodes {{ id }} }} }} }}"
            ),
            "another `orderBy`",
        ),
    ];
    // Well-formed cursors with values their columns cannot hold.
    let forged = |ty: &str, order: &str, value: serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(json!([ty, order, [value], 1]).to_string())
    };
    let nul = forged("User", "USERNAME_ASC", json!("a\u{0}b"));
    let cents = forged("Order", "TOTAL_AMOUNT_ASC", json!("1.001"));
    let cases = cases.into_iter().chain([
        (
            format!(
                "{{ usersConnection(after: \"{nul}\", orderBy: USERNAME_ASC) {{ nodes {{ id }} }} }}"
            ),
            "malformed",
        ),
        (
            format!(
                "{{ ordersConnection(after: \"{cents}\", orderBy: TOTAL_AMOUNT_ASC) {{ nodes {{ id }} }} }}"
            ),
            "malformed",
        ),
    ]);
    for (q, why) in cases {
        let r = app.gql(&q).await;
        assert_eq!(r.error_code(), "BAD_USER_INPUT", "{q}: {}", r.body);
        assert!(r.error_message().contains(why), "{q}: {}", r.body);
        assert_eq!(r.statements, 0, "{q}: refused before any SQL");
    }
}

#[tokio::test]
async fn a_customer_pages_through_their_own_orders_only() {
    let app = spawn_app().await;
    app.seed(4, 3, 1, 2).await;
    let token = app.token_for(2, eagerql::model::Role::Customer);
    let q = "{ ordersConnection(first: 2) { totalCount nodes { id user { id } } pageInfo { hasNextPage } } me { ordersConnection(last: 5) { totalCount nodes { id } } } }";
    let r = app.gql_as(Some(&token), q, json!({})).await;
    let conn = &r.data()["ordersConnection"];
    assert_eq!(conn["totalCount"], 3);
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
    for n in conn["nodes"].as_array().expect("nodes") {
        assert_eq!(n["user"]["id"], "2");
    }
    assert_eq!(r.data()["me"]["ordersConnection"]["totalCount"], 3);
    let refused = app
        .gql_as(
            Some(&token),
            "{ usersConnection { totalCount } }",
            json!({}),
        )
        .await;
    assert_eq!(refused.error_code(), "FORBIDDEN");
}

#[tokio::test]
async fn connections_load_lazily_in_one_statement_per_level() {
    let q = "{ users(first: 20) { ordersConnection(first: 2, orderBy: CREATED_AT_DESC) { totalCount edges { cursor node { id itemsConnection { nodes { id } } } } } } }";
    let mut counts = Vec::new();
    for n in [3u64, 20] {
        let eager: TestApp = spawn_app().await;
        let lazy = spawn_app_with(&["--strict", "false", "--plan", "lazy"]).await;
        for app in [&eager, &lazy] {
            app.seed(n, 3, 2, 4).await;
        }
        let planned = eager.gql(q).await;
        let loaded = lazy.gql(q).await;
        assert_eq!(planned.statements, 4);
        assert_eq!(
            loaded.body["data"].to_string(),
            planned.body["data"].to_string()
        );
        counts.push(loaded.statements);
    }
    assert_eq!(counts[0], counts[1]);
}

/// Walks `root(first: 4, orderBy: order)` to its end and returns the ids, in order.
async fn walk(app: &TestApp, root: &str, order: &str) -> Vec<String> {
    let q = format!(
        "query($after: String) {{ {root}(first: 4, after: $after, orderBy: {order}) {{ edges {{ cursor node {{ id }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    );
    let mut out = Vec::new();
    let mut after = Value::Null;
    for _ in 0..50 {
        let r = app.gql_vars(&q, json!({ "after": after })).await;
        let conn = r.data()[root].clone();
        for e in conn["edges"].as_array().expect("edges") {
            out.push(e["node"]["id"].as_str().expect("id").to_owned());
        }
        if conn["pageInfo"]["hasNextPage"] == false {
            return out;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    panic!("{root}: pagination does not end");
}

#[tokio::test]
async fn text_money_and_mixed_direction_keys_page_in_the_lists_order() {
    let app = spawn_app().await;
    app.seed(13, 1, 1, 11).await;
    // Ties on price, so the second key and the id decide.
    crate::helpers::exec(
        &app,
        "update products set price = (select price from products where id = 1) where id in (2, 3, 4)",
        vec![],
    )
    .await;
    let model = Model::load(&app.db).await;
    for (root, list, order) in [
        ("usersConnection", "users", "[USERNAME_DESC]"),
        ("usersConnection", "users", "[EMAIL_ASC, CREATED_AT_DESC]"),
        ("productsConnection", "products", "[PRICE_ASC, NAME_DESC]"),
        ("productsConnection", "products", "[SKU_DESC]"),
    ] {
        let all = model.eval(
            &format!("{{ {list}(first: 100, orderBy: {order}) {{ id }} }}"),
            &json!({}),
        );
        assert_eq!(
            walk(&app, root, order).await,
            ids(&all[list]),
            "{root} by {order}"
        );
    }
}
