//! Answers follow the GraphQL specification's execution algorithm: repeated response keys
//! merge into one execution, `@skip`/`@include` never turn an object into `null`, omitted
//! variables let argument defaults apply, keys come in selection order, and analytics windows
//! are exact to the microsecond. Each case here was once answered wrongly.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{insert_order, spawn_app};

fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_repeated_root_field_merges_its_selections_and_runs_once() {
    let app = spawn_app().await;
    app.seed(10, 2, 2, 5).await;
    let resp = app
        .gql(r#"{ product(id: "4") { name } product(id: "4") { stockQuantity } }"#)
        .await;
    let product = &resp.data()["product"];
    assert_eq!(keys(product), ["name", "stockQuantity"], "{}", resp.body);
    assert_eq!(resp.statements, 1, "one execution for one response key");

    let resp = app
        .gql("{ user(id: 5) { id orders { id } } user(id: 5) { isActive } }")
        .await;
    let user = &resp.data()["user"];
    assert_eq!(keys(user), ["id", "orders", "isActive"], "{}", resp.body);
    assert_eq!(user["orders"].as_array().map(Vec::len), Some(2));
    assert_eq!(resp.statements, 2);
}

#[tokio::test]
async fn repeated_fields_merge_in_analytics_rows_and_mutation_results() {
    let app = spawn_app().await;
    app.seed(10, 3, 2, 5).await;
    let resp = app
        .gql(
            "{ analytics { spendingSummary(first: 3) { user { email } } \
             spendingSummary(first: 3) { totalRevenue user { username } } } }",
        )
        .await;
    let rows = resp.data()["analytics"]["spendingSummary"]
        .as_array()
        .expect("rows")
        .clone();
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(keys(row), ["user", "totalRevenue"], "{row}");
        assert_eq!(keys(&row["user"]), ["email", "username"], "{row}");
    }
    assert_eq!(resp.statements, 1);

    let resp = app
        .gql(r#"mutation { deactivateUser(id: "3") { id } deactivateUser(id: "3") { isActive } }"#)
        .await;
    assert_eq!(
        resp.data(),
        &json!({ "deactivateUser": { "id": "3", "isActive": false } }),
        "{}",
        resp.body
    );
}

#[tokio::test]
async fn skipped_selections_leave_objects_not_nulls() {
    let app = spawn_app().await;
    app.seed(10, 3, 2, 5).await;
    let resp = app
        .gql(
            "{ analytics { spendingSummary(first: 2) { user { orders @skip(if: true) { status } } \
             user { email } } } }",
        )
        .await;
    for row in resp.data()["analytics"]["spendingSummary"]
        .as_array()
        .expect("rows")
    {
        assert!(row["user"]["email"].is_string(), "{}", resp.body);
        assert_eq!(keys(&row["user"]), ["email"]);
    }

    let resp = app
        .gql_vars(
            "query($s: OrderStatus) { users(first: 1) { orders(status: $s) { id @skip(if: true) } \
             orders(status: $s) { status } } }",
            json!({ "s": "COMPLETED" }),
        )
        .await;
    let orders = resp.data()["users"][0]["orders"]
        .as_array()
        .expect("orders")
        .clone();
    assert!(!orders.is_empty(), "{}", resp.body);
    for o in &orders {
        assert_eq!(o, &json!({ "status": "COMPLETED" }), "{}", resp.body);
    }

    let resp = app
        .gql("{ analytics { topCustomers @include(if: false) { totalRevenue } } }")
        .await;
    assert_eq!(resp.data(), &json!({ "analytics": {} }), "{}", resp.body);

    let resp = app
        .gql("{ order(id: 57) @skip(if: true) { __typename } }")
        .await;
    assert_eq!(resp.data(), &json!({}), "{}", resp.body);

    // A variable-driven skip of every field of a list's objects: each object is `{}`.
    let resp = app
        .gql_vars(
            "query($b: Boolean!) { orders(first: 2) { __typename @skip(if: $b) } }",
            json!({ "b": true }),
        )
        .await;
    assert_eq!(resp.data(), &json!({ "orders": [{}, {}] }), "{}", resp.body);
}

#[tokio::test]
async fn variables_used_only_in_directives_are_used() {
    let app = spawn_app().await;
    app.seed(5, 1, 1, 2).await;
    let resp = app
        .gql_vars(
            "query($b: Boolean!) { orders(first: 2) { __typename @skip(if: $b) } }",
            json!({ "b": false }),
        )
        .await;
    assert_eq!(
        resp.data(),
        &json!({ "orders": [{ "__typename": "Order" }, { "__typename": "Order" }] }),
        "{}",
        resp.body
    );
    // A default drives a directive when the variable is not sent.
    let resp = app
        .gql_vars(
            "query($b: Boolean = true) { users(first: 1) { id @include(if: $b) email @skip(if: $b) } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.data(),
        &json!({ "users": [{ "id": "1" }] }),
        "{}",
        resp.body
    );
}

#[tokio::test]
async fn an_omitted_variable_lets_the_argument_default_apply() {
    let app = spawn_app().await;
    app.seed(30, 1, 1, 2).await;
    let resp = app
        .gql_vars("query($f: Int) { users(first: $f) { id } }", json!({}))
        .await;
    assert!(resp.body.get("errors").is_none(), "{}", resp.body);
    assert_eq!(resp.data()["users"].as_array().map(Vec::len), Some(20));

    // Inside an input value too: an omitted variable is an absent field or argument.
    let resp = app
        .gql_vars(
            "query($s: OrderStatus, $n: Int) { users(first: 2) { orders(status: $s, first: $n) { id } } }",
            json!({}),
        )
        .await;
    assert!(resp.body.get("errors").is_none(), "{}", resp.body);

    // An explicit null for a non-null argument with a default is the client's error.
    let resp = app
        .gql_vars(
            "query($f: Int) { users(first: $f) { id } }",
            json!({ "f": null }),
        )
        .await;
    assert_eq!(resp.error_code(), "BAD_USER_INPUT", "{}", resp.body);
    assert_eq!(resp.body["errors"][0]["path"], json!(["users"]));
    assert_eq!(resp.statements, 0);
}

#[tokio::test]
async fn response_keys_follow_the_selection_order() {
    let app = spawn_app().await;
    app.seed(5, 2, 1, 3).await;
    let resp = app
        .gql(
            "{ z: products(first: 1) { id } __typename a: users(first: 1) { id } \
             analytics { revenueByDay(days: 1) { revenue day orderCount } \
             topCustomers(days: 3650) { totalRevenue user { id } orderCount } } m: user(id: 1) { email id } }",
        )
        .await;
    let data = resp.data();
    assert_eq!(keys(data), ["z", "__typename", "a", "analytics", "m"]);
    assert_eq!(keys(&data["analytics"]), ["revenueByDay", "topCustomers"]);
    assert_eq!(
        keys(&data["analytics"]["revenueByDay"][0]),
        ["revenue", "day", "orderCount"]
    );
    for row in data["analytics"]["topCustomers"].as_array().expect("rows") {
        assert_eq!(keys(row), ["totalRevenue", "user", "orderCount"]);
    }
    assert_eq!(keys(&data["m"]), ["email", "id"]);

    // Fragments and inline fragments place a key where it first occurs.
    let resp = app
        .gql(
            "query { ...Q users(first: 1) { ... on User { email } id } } \
             fragment Q on Query { products(first: 1) { sku } users(first: 1) { username } }",
        )
        .await;
    assert_eq!(keys(resp.data()), ["products", "users"]);
    assert_eq!(keys(&resp.data()["users"][0]), ["username", "email", "id"]);
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("timestamp")
        .with_timezone(&Utc)
}

#[tokio::test]
async fn analytics_windows_are_exact_to_the_microsecond() {
    let app = spawn_app().await;
    app.seed(3, 0, 0, 1).await;
    // One shipped order of user 1 at 03:14:38.000 UTC.
    let at = ts("2026-10-25T03:14:38.000Z");
    insert_order(&app, 1, "shipped", 1250, at).await;
    let top = |as_of: DateTime<Utc>| {
        format!(
            r#"{{ analytics {{ topCustomers(status: SHIPPED, days: 1, asOf: "{}") {{ orderCount }} }} }}"#,
            as_of.to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
        )
    };
    // The window [asOf - 1 day, asOf) starts 1 µs after the order: it is not counted.
    let resp = app
        .gql(&top(at + Duration::days(1) + Duration::microseconds(1)))
        .await;
    assert_eq!(
        resp.data()["analytics"]["topCustomers"],
        json!([]),
        "{}",
        resp.body
    );
    // The window ends 1 µs after the order: it is counted.
    let resp = app.gql(&top(at + Duration::microseconds(1))).await;
    assert_eq!(
        resp.data()["analytics"]["topCustomers"],
        json!([{ "orderCount": 1 }]),
        "{}",
        resp.body
    );
    // The window ends exactly at the order: not counted (the end is exclusive).
    let resp = app.gql(&top(at)).await;
    assert_eq!(resp.data()["analytics"]["topCustomers"], json!([]));
    // The window starts exactly at the order: counted (the start is inclusive).
    let resp = app.gql(&top(at + Duration::days(1))).await;
    assert_eq!(
        resp.data()["analytics"]["topCustomers"],
        json!([{ "orderCount": 1 }])
    );

    // revenueByDay at the other edge, with an offset given in another time zone.
    let resp = app
        .gql(
            r#"{ analytics { revenueByDay(status: SHIPPED, days: 1, asOf: "2026-10-25T05:14:38.000001+02:00") { day orderCount } } }"#,
        )
        .await;
    assert_eq!(
        resp.data()["analytics"]["revenueByDay"],
        json!([{ "day": "2026-10-24", "orderCount": 0 }, { "day": "2026-10-25", "orderCount": 1 }]),
        "{}",
        resp.body
    );
}

/// A document is validated and rewritten once, then reused for each request's variables: a
/// variable in a directive or inside a list changes the canonical form, a variable that is a
/// whole argument does not, and one that is not sent lets the argument's default apply.
#[tokio::test]
async fn one_document_answers_each_set_of_variables_as_if_new() {
    use axum::body::Body;
    use axum::http::Request;
    let app = spawn_app().await;
    app.seed(30, 1, 1, 2).await;
    let doc = "query Q($id: ID!, $b: Boolean!, $f: Int, $ids: ID!) { \
               user(id: $id) { id email @include(if: $b) } \
               users(first: $f, where: { id: { in: [$ids] } }) { id } }";
    for round in 0..2 {
        for (id, b, f, ids) in [
            ("1", true, Some(5), "2"),
            ("3", false, Some(5), "2"),
            ("4", true, None, "7"),
            ("5", false, None, "9"),
        ] {
            let mut vars = json!({ "id": id, "b": b, "ids": ids });
            if let Some(f) = f {
                vars["f"] = json!(f);
            }
            let resp = app.gql_vars(doc, vars).await;
            assert!(resp.body.get("errors").is_none(), "{}", resp.body);
            let user = &resp.data()["user"];
            assert_eq!(user["id"], json!(id), "round {round}: {}", resp.body);
            assert_eq!(
                user.get("email").is_some(),
                b,
                "round {round}: {}",
                resp.body
            );
            assert_eq!(
                resp.data()["users"],
                json!([{ "id": ids }]),
                "round {round}: {}",
                resp.body
            );
        }
    }
    // Variables are still coerced and checked on every request of a known document.
    let resp = app
        .gql_vars(doc, json!({ "id": "1", "b": "yes", "ids": "2" }))
        .await;
    assert_eq!(resp.error_code(), "BAD_USER_INPUT", "{}", resp.body);
    // Another operation of the same document is its own entry.
    let two = "query A { users(first: 1) { id } } query B { users(first: 2) { id } }";
    for (name, n) in [("A", 1), ("B", 2), ("A", 1)] {
        let body = json!({ "query": two, "operationName": name });
        let req = Request::post("/graphql")
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {}", app.token))
            .body(Body::from(body.to_string()))
            .expect("request");
        let (_, _, text) = app.send(req).await;
        let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            body["data"]["users"].as_array().map(Vec::len),
            Some(n),
            "{text}"
        );
    }
}

/// A root field's plan and view are made once per canonical form and kept with it, but only
/// when they depend on the form alone: a variable inside the field's selection (`orders(first:
/// $n)`) or the root's own order (`orderBy: $o`, whose keys a connection's rows must carry for
/// their cursors) is honoured on every request of the same document.
#[tokio::test]
async fn kept_root_plans_honour_each_request_variables() {
    let app = spawn_app().await;
    app.seed(4, 3, 3, 5).await;
    let nested = "query N($n: Int) { users(first: 2) { id orders(first: $n) { id } } \
                  again: users(first: 2) { id orders(first: 1) { id } } }";
    for round in 0..2 {
        for n in [1, 3, 2] {
            let resp = app.gql_vars(nested, json!({ "n": n })).await;
            assert!(resp.body.get("errors").is_none(), "{}", resp.body);
            for user in resp.data()["users"].as_array().expect("users") {
                assert_eq!(
                    user["orders"].as_array().map(Vec::len),
                    Some(n),
                    "round {round}, n = {n}: {}",
                    resp.body
                );
            }
            for user in resp.data()["again"].as_array().expect("again") {
                assert_eq!(user["orders"].as_array().map(Vec::len), Some(1));
            }
        }
    }
    let all = app
        .gql_vars(
            "{ orders(first: 100) { id totalAmount createdAt } }",
            json!({}),
        )
        .await;
    let all = all.data()["orders"].as_array().expect("orders").clone();
    let page = "query P($o: [OrderOrderBy!], $after: String) { \
                ordersConnection(first: 3, orderBy: $o, after: $after) { \
                edges { cursor node { id } } pageInfo { endCursor hasNextPage } } }";
    for round in 0..2 {
        for (order, key, desc) in [
            ("TOTAL_AMOUNT_DESC", "totalAmount", true),
            ("CREATED_AT_ASC", "createdAt", false),
        ] {
            // The whole list in that order, the id breaking ties, as the oracle for the pages.
            let mut want = all.clone();
            want.sort_by(|a, b| {
                let (x, y) = (&a[key], &b[key]);
                let by = match (x.as_str(), y.as_str()) {
                    (Some(x), Some(y)) if key == "totalAmount" => {
                        let (x, y): (f64, f64) = (x.parse().unwrap(), y.parse().unwrap());
                        x.partial_cmp(&y).unwrap()
                    }
                    (Some(x), Some(y)) => x.cmp(y),
                    _ => std::cmp::Ordering::Equal,
                };
                let by = if desc { by.reverse() } else { by };
                let id = |v: &serde_json::Value| v["id"].as_str().unwrap().parse::<i64>().unwrap();
                by.then(id(a).cmp(&id(b)))
            });
            let want: Vec<&serde_json::Value> = want.iter().map(|o| &o["id"]).collect();
            let mut got = Vec::new();
            let mut after = serde_json::Value::Null;
            loop {
                let resp = app
                    .gql_vars(page, json!({ "o": [order], "after": after }))
                    .await;
                assert!(resp.body.get("errors").is_none(), "{}", resp.body);
                let conn = &resp.data()["ordersConnection"];
                for edge in conn["edges"].as_array().expect("edges") {
                    got.push(edge["node"]["id"].clone());
                }
                if conn["pageInfo"]["hasNextPage"] != json!(true) {
                    break;
                }
                after = conn["pageInfo"]["endCursor"].clone();
            }
            let got: Vec<&serde_json::Value> = got.iter().collect();
            assert_eq!(got, want, "round {round}, {order}");
        }
    }
}

/// What a visible row names is visible too, checked against real rows: for every to-one edge
/// of the description and every kind of viewer (anonymous, two customers, an administrator),
/// selecting the edge (an inner join carrying the target's visibility) keeps exactly the rows
/// the viewer sees without it. The description shows it statically
/// (`entities::Rel::target_visibility`); this is that proof's check on the database.
#[tokio::test]
async fn every_to_one_edge_keeps_every_visible_row() {
    use eagerql::db::load::{RootQuery, fetch_root};
    use eagerql::db::{Session, StatementLog};
    use eagerql::entities::Entity;
    use eagerql::model::{Role, Viewer};
    use eagerql::planner::{Field, Limits, plan};
    let app = spawn_app().await;
    app.seed(4, 3, 2, 5).await;
    let viewers = [
        Viewer::Anonymous,
        Viewer::User {
            id: 2,
            role: Role::Customer,
        },
        Viewer::User {
            id: 3,
            role: Role::Customer,
        },
        Viewer::User {
            id: 1,
            role: Role::Admin,
        },
    ];
    let limits = Limits {
        max_page_size: 100_000,
    };
    let mut edges = 0;
    for entity in Entity::ALL {
        for rel in entity.desc().relations.iter().filter(|r| !r.is_many()) {
            edges += 1;
            for viewer in viewers {
                let session =
                    Session::new(app.db.clone(), std::sync::Arc::new(StatementLog::new(None)))
                        .as_viewer(viewer);
                let ids = |fields: Vec<Field>| {
                    let node = plan(entity, &fields, limits).expect("a plan");
                    let session = session.clone();
                    async move {
                        let q = RootQuery::Page {
                            first: 100_000,
                            offset: 0,
                            order: Default::default(),
                            filter: None,
                        };
                        let rows = fetch_root(&session, &node, q)
                            .await
                            .unwrap_or_else(|e| panic!("{}", e.detail()));
                        rows.iter().map(|l| l.row.id()).collect::<Vec<i64>>()
                    }
                };
                let plain = ids(vec![Field::leaf("id")]).await;
                let joined = ids(vec![
                    Field::leaf("id"),
                    Field::new(rel.field, vec![Field::leaf("id")]),
                ])
                .await;
                let what = format!("{}.{} as {viewer:?}", entity.desc().name, rel.field);
                assert_eq!(joined, plain, "{what}");
                if !matches!(viewer, Viewer::Anonymous) {
                    assert!(!plain.is_empty(), "{what}: the check needs rows");
                }
            }
        }
    }
    assert!(edges >= 3, "every to-one edge of the model");
}
