//! `eagerql check`: a frontend's operations checked and planned with no database and no
//! server, with the server's own errors placed at the file and line they come from.

use serde_json::{Value, json};

use crate::helpers::{scratch_dir, spawn_app};

/// Runs `eagerql check ARGS...`: its exit status, its standard output.
fn check(args: &[&str], paths: &[&std::path::Path]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_eagerql"))
        .arg("check")
        .args(args)
        .args(paths)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run eagerql check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn report(args: &[&str], paths: &[&std::path::Path]) -> (bool, Value) {
    let mut all = vec!["--format", "json"];
    all.extend_from_slice(args);
    let (ok, out) = check(&all, paths);
    (ok, serde_json::from_str(&out).expect("a JSON report"))
}

fn op<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {report}"))
}

#[tokio::test]
async fn fragments_spread_over_files_and_errors_at_their_file_and_line() {
    let dir = scratch_dir("check-files");
    std::fs::write(
        dir.join("orders.graphql"),
        "# The dashboard.\nquery Dashboard {\n  me {\n    ...Me\n  }\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("fragments.graphql"),
        "fragment Me on User {\n  username\n  orders(first: 3) { ...Line }\n}\n\n\
         fragment Line on Order {\n  id\n  items { quantity product { name } }\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.graphql"),
        "query Broken {\n  products {\n    id\n    ...Bad\n  }\n}\n\nfragment Bad on Product {\n  nope\n}\n",
    )
    .unwrap();
    let (ok, r) = report(&["--role", "customer"], &[&dir]);
    assert!(!ok, "an invalid operation fails the check: {r}");
    assert_eq!(r["ok"], false);
    let dashboard = op(&r, "Dashboard");
    assert_eq!(dashboard["valid"], true, "{dashboard}");
    assert_eq!(
        dashboard["statements"], 3,
        "me, orders, items (product joined)"
    );
    assert!(
        dashboard["file"]
            .as_str()
            .unwrap()
            .ends_with("orders.graphql")
    );
    assert_eq!(dashboard["line"], 2);
    let broken = op(&r, "Broken");
    assert_eq!(broken["valid"], false);
    assert_eq!(broken["statements"], Value::Null);
    let err = &broken["errors"][0];
    assert_eq!(err["code"], "GRAPHQL_VALIDATION_FAILED");
    assert!(err["file"].as_str().unwrap().ends_with("broken.graphql"));
    assert_eq!(
        (err["line"].clone(), err["column"].clone()),
        (json!(9), json!(3))
    );
    // The message is the server's own for the document a client sends.
    let app = spawn_app().await;
    let sent = std::fs::read_to_string(dir.join("broken.graphql")).unwrap();
    let served = app.gql(&sent).await;
    assert_eq!(served.error_message(), err["message"], "{}", served.body);
    assert_eq!(served.body["errors"][0]["locations"][0]["line"], 9);

    // The text format: `file:line:column: error: message [CODE]`, a line per operation.
    let (ok, text) = check(&[], &[&dir]);
    assert!(!ok);
    assert!(text.contains("query Dashboard: 3 statements"), "{text}");
    assert!(
        text.contains("batch orders(first: 3): Order {id}"),
        "{text}"
    );
    assert!(text.contains("join product: Product {name}"), "{text}");
    assert!(
        text.contains("broken.graphql:9:3: error: type `Product` does not have a field `nope` [GRAPHQL_VALIDATION_FAILED]"),
        "{text}"
    );
    // Without the fragments' file, the spread is the error, where it is.
    let (ok, r) = report(&[], &[&dir.join("orders.graphql")]);
    assert!(!ok);
    let err = &op(&r, "Dashboard")["errors"][0];
    assert!(err["message"].as_str().unwrap().contains("`Me`"), "{err}");
    assert_eq!(err["line"], 4);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_budget_the_role_and_the_variables() {
    let dir = scratch_dir("check-budget");
    let file = dir.join("ops.graphql");
    std::fs::write(
        &file,
        "query Deep($n: Int!) { users(first: $n) { orders { items { product { name } } } } }\n\
         query Catalogue($after: String) { productsConnection(first: 5, after: $after) { totalCount nodes { name } } }\n",
    )
    .unwrap();
    let (ok, r) = report(&["--role", "admin", "--budget", "3"], &[&file]);
    assert!(ok, "{r}");
    assert_eq!(op(&r, "Deep")["statements"], 3);
    assert_eq!(op(&r, "Deep")["assumedVariables"], json!({ "n": 1 }));
    assert_eq!(
        op(&r, "Catalogue")["assumedVariables"],
        json!({}),
        "optional variables are left out"
    );
    assert_eq!(op(&r, "Catalogue")["statements"], 2);
    let (ok, r) = report(&["--role", "admin", "--budget", "2"], &[&file]);
    assert!(!ok, "over the budget fails the check");
    assert_eq!(op(&r, "Deep")["overBudget"], true);
    assert_eq!(op(&r, "Catalogue")["overBudget"], false);
    // A customer may not list users: refused as the server would, with its code.
    let (ok, r) = report(&["--role", "customer"], &[&file]);
    assert!(!ok);
    let deep = op(&r, "Deep");
    assert_eq!(deep["valid"], true);
    assert_eq!(deep["errors"][0]["code"], "FORBIDDEN", "{deep}");
    // Variables given by operation name are used as given (a wrong one is the server's error).
    let vars = dir.join("vars.json");
    std::fs::write(&vars, r#"{"Deep": {"n": "ten"}}"#).unwrap();
    let (ok, r) = report(
        &["--role", "admin", "--variables", vars.to_str().unwrap()],
        &[&file],
    );
    assert!(!ok);
    assert_eq!(op(&r, "Deep")["errors"][0]["code"], "BAD_USER_INPUT");
    // A Boolean that `@include` reads is planned both ways; the costlier counts.
    let flags = dir.join("flags.graphql");
    std::fs::write(
        &flags,
        "query Flags($with: Boolean!, $no: Boolean!) { products(first: 2) { id orders @include(if: $with) { id } orderItems @skip(if: $no) { id } } }\n",
    )
    .unwrap();
    let (ok, r) = report(&["--budget", "2"], &[&flags]);
    assert!(!ok, "3 statements when with = true and no = false: {r}");
    let f = op(&r, "Flags");
    assert_eq!(f["statements"], 3);
    assert_eq!(f["assumedVariables"], json!({ "with": true, "no": false }));
    // As on the server, a budget of 0 is no limit.
    let (ok, r) = report(&["--budget", "0"], &[&flags]);
    assert!(ok, "{r}");
    assert_eq!(r["budget"], Value::Null);
    // A name in the variables file that no operation has is a typo, reported.
    std::fs::write(&vars, r#"{"Dep": {"n": 1}}"#).unwrap();
    let (ok, r) = report(&["--variables", vars.to_str().unwrap()], &[&flags]);
    assert!(!ok);
    assert!(
        r["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Dep"),
        "{r}"
    );
    // Nothing to check is a failure too (a wrong path in CI must not pass); an empty or
    // comment-only file is nothing, not an error.
    let empty = scratch_dir("check-empty");
    std::fs::write(empty.join("moved.graphql"), "# moved to orders.graphql\n\n").unwrap();
    let (ok, r) = report(&[], &[&empty]);
    assert!(!ok);
    assert_eq!(r["problems"].as_array().map(Vec::len), Some(1), "{r}");
    assert!(
        r["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no operations"),
        "{r}"
    );
    std::fs::remove_dir_all(&dir).ok();
    std::fs::remove_dir_all(&empty).ok();
}

#[test]
fn apollo_and_relay_manifests() {
    let dir = scratch_dir("check-manifests");
    let apollo = json!({
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            { "id": "a1", "name": "Catalogue", "type": "query",
              "body": "query Catalogue { products(first: 5) { name orders { id } } }" },
            { "id": "a2", "name": "Order", "type": "mutation",
              "body": "mutation Order($i: CreateOrderInput!) { createOrder(input: $i) { id } }" }
        ]
    });
    std::fs::write(
        dir.join("persisted-query-manifest.json"),
        apollo.to_string(),
    )
    .unwrap();
    let relay = json!({ "r1": "query Mine { me { id orders { id } } }",
                        "r2": "query Bad { me { nope } }" });
    std::fs::write(dir.join("persisted_queries.json"), relay.to_string()).unwrap();
    let (ok, r) = report(&[], &[&dir]);
    assert!(!ok, "Bad is invalid");
    let catalogue = op(&r, "Catalogue");
    assert_eq!(catalogue["statements"], 2);
    assert_eq!(catalogue["id"], "a1");
    let order = op(&r, "Order");
    assert_eq!(order["valid"], true);
    assert_eq!(order["type"], "mutation");
    assert_eq!(
        order["statements"],
        Value::Null,
        "mutations are not planned ahead"
    );
    assert_eq!(op(&r, "Mine")["statements"], 2);
    let bad = op(&r, "Bad");
    assert_eq!(bad["valid"], false);
    assert!(
        bad["file"]
            .as_str()
            .unwrap()
            .ends_with("persisted_queries.json#r2")
    );
    // A frontend's other JSON files are not manifests: skipped when found in a directory.
    std::fs::write(
        dir.join("package.json"),
        r#"{"name": "shop", "scripts": {"x": "y"}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("en.json"), r#"{"greeting": "hello"}"#).unwrap();
    // A link cycle does not make the search endless.
    #[cfg(unix)]
    std::os::unix::fs::symlink(&dir, dir.join("loop")).unwrap();
    let (_, again) = report(&[], &[&dir]);
    assert_eq!(again["problems"], json!([]), "{again}");
    assert_eq!(again["operations"], r["operations"]);
    // Given by name, a file that is not a manifest is a problem.
    std::fs::write(dir.join("broken.json"), "{\"format\": \"other\"}").unwrap();
    let (_, r) = report(&[], &[&dir.join("broken.json")]);
    assert!(
        r["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("format")
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// The reports are planned like the lists: each answers the planning-only pass without its
/// statements and without an error, so the check passes and counts them.
#[test]
fn reports_are_checked_with_their_statements_and_no_error() {
    let dir = scratch_dir("check-reports");
    let file = dir.join("reports.graphql");
    std::fs::write(
        &file,
        "query Reports { analytics { \
         topCustomers(limit: 3) { user { id orders { id } } } revenueByDay { day } \
         productSales { product { name } } spendingSummary { user { email } } } \
         ordersAggregate { count } }\n",
    )
    .unwrap();
    let (ok, r) = report(&["--role", "admin"], &[&file]);
    assert!(ok, "{r}");
    assert_eq!(op(&r, "Reports")["errors"], json!([]), "{r}");
    assert_eq!(op(&r, "Reports")["statements"], 6, "{r}");
    std::fs::remove_dir_all(&dir).ok();
}
