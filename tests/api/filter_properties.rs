//! Property tests of the filter and page rules, each against the naive evaluator of
//! [`crate::model::Model`] on the same rows: ASCII case folding, timestamp bounds finer
//! than the stored precision, offset pages of relation-filtered lists, the look-ahead row, and
//! canonical filters. Cases are drawn by proptest from a fixed seed plus a fresh one
//! (`EAGERQL_PROP_SEED` replays one); a failure prints its seed and case.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::model::Model;

/// Cases per property and seed.
const CASES: usize = 40;

/// The seeds to run: a fixed one, then a fresh one (or the one given).
fn seeds() -> Vec<u64> {
    match std::env::var("EAGERQL_PROP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => {
            let fresh = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64);
            vec![20_261_204, fresh]
        }
    }
}

/// `CASES` values of `strategy` drawn from `seed`.
fn draw<S: Strategy>(strategy: S, seed: u64) -> Vec<S::Value> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    );
    (0..CASES)
        .map(|_| strategy.new_tree(&mut runner).expect("a case").current())
        .collect()
}

/// Runs `query` on the server and on the reference model, and compares the answers.
async fn same(app: &TestApp, model: &Model, query: &str, seed: u64) -> crate::helpers::Gql {
    let r = app.gql(query).await;
    let want = model.eval(query, &json!({}));
    assert_eq!(
        r.data(),
        &want,
        "seed {seed} (EAGERQL_PROP_SEED={seed} replays it): {query}"
    );
    r
}

/// Text from an alphabet where ASCII and non-ASCII letters differ only in case, with LIKE's
/// wildcards among them.
fn text(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "e", "E", "é", "É", "a", "A", "ß", "ẞ", "%", "_", "ı", "I",
        ]),
        min..=max,
    )
    .prop_map(|parts| parts.concat())
}

#[tokio::test]
async fn contains_and_starts_with_fold_ascii_case_only() {
    let app = spawn_app().await;
    let names = draw(prop::collection::vec(text(1, 5), 12), 7).remove(0);
    let products: Vec<Value> = names
        .iter()
        .enumerate()
        .map(|(i, n)| json!({ "name": n, "sku": format!("P-{i}"), "price": "1.00", "stockQuantity": 1 }))
        .collect();
    let r = app
        .gql_vars(
            "mutation($p: [ProductInput!]!) { importProducts(products: $p) { inserted } }",
            json!({ "p": products }),
        )
        .await;
    assert_eq!(r.data()["importProducts"]["inserted"], 12);
    let model = Model::load(&app.db).await;
    for seed in seeds() {
        for (pattern, starts) in draw((text(1, 3), any::<bool>()), seed) {
            let op = if starts { "startsWith" } else { "contains" };
            let q = format!(
                "{{ products(where: {{ name: {{ {op}: {} }} }}) {{ id name }} \
                 productsAggregate(where: {{ name: {{ {op}: {} }} }}) {{ count }} }}",
                json!(pattern),
                json!(pattern)
            );
            same(&app, &model, &q, seed).await;
        }
    }
}

#[tokio::test]
async fn datetime_bounds_finer_than_storage_compare_exactly() {
    let app = spawn_app().await;
    app.seed(2, 0, 0, 1).await;
    let base = chrono::DateTime::parse_from_rfc3339("2026-10-01T00:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    // Orders on a few stored instants a millisecond apart.
    for ms in [0, 0, 1, 2, 2, 5] {
        crate::helpers::insert_order(
            &app,
            1,
            "pending",
            100,
            base + chrono::Duration::milliseconds(ms),
        )
        .await;
    }
    let model = Model::load(&app.db).await;
    let ops = vec!["eq", "gt", "gte", "lt", "lte", "in"];
    for seed in seeds() {
        let cases = draw(
            (
                prop::sample::select(ops.clone()),
                -2_000_000i64..7_000_000,
                prop::bool::ANY,
            ),
            seed,
        );
        for (op, ns, round) in cases {
            // Half the bounds on a whole millisecond, half anywhere to the nanosecond.
            let ns = if round {
                ns / 1_000_000 * 1_000_000
            } else {
                ns
            };
            let at = (base + chrono::Duration::nanoseconds(ns))
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            let value = if op == "in" {
                json!([at]).to_string()
            } else {
                json!(at).to_string()
            };
            let q = format!(
                "{{ orders(where: {{ createdAt: {{ {op}: {value} }} }}) {{ id }} \
                 n: orders(where: {{ not: {{ createdAt: {{ {op}: {value} }} }} }}) {{ id }} }}"
            );
            same(&app, &model, &q, seed).await;
        }
    }
}

#[tokio::test]
async fn offset_pages_of_relation_filtered_lists_are_the_naive_pages() {
    let app = spawn_app().await;
    app.seed(15, 3, 2, 6).await;
    // Some users without orders, so the filter has something to exclude.
    crate::helpers::exec(&app, "delete from order_products where order_id in (select id from orders where user_id in (3, 7, 8))", vec![]).await;
    crate::helpers::exec(&app, "delete from order_items where order_id in (select id from orders where user_id in (3, 7, 8))", vec![]).await;
    crate::helpers::exec(
        &app,
        "delete from orders where user_id in (3, 7, 8)",
        vec![],
    )
    .await;
    let model = Model::load(&app.db).await;
    for seed in seeds() {
        for (first, offset, none, min) in draw((0i64..5, 0i64..16, any::<bool>(), 1i32..4), seed) {
            let rel = if none { "none" } else { "some" };
            let q = format!(
                "{{ users(first: {first}, offset: {offset}, where: {{ orders: {{ {rel}: {{}} }} }}) {{ id }} \
                 orders(first: {first}, offset: {offset}, where: {{ items: {{ some: {{ quantity: {{ gte: {min} }} }} }} }}) {{ id }} \
                 products(first: {first}, offset: {offset}, where: {{ orders: {{ {rel}: {{ user: {{ id: {{ in: [\"1\", \"2\"] }} }} }} }} }}) {{ id }} }}"
            );
            same(&app, &model, &q, seed).await;
        }
    }
}

#[tokio::test]
async fn a_look_ahead_row_never_costs_a_statement_or_a_row() {
    let app = spawn_app().await;
    app.seed(4, 3, 3, 4).await;
    let model = Model::load(&app.db).await;
    for seed in seeds() {
        for (outer, inner) in draw((0i64..4, 0i64..4), seed) {
            let q = format!(
                "{{ ordersConnection(first: {outer}) {{ pageInfo {{ hasNextPage }} nodes {{ id \
                 itemsConnection(first: {inner}) {{ pageInfo {{ hasNextPage }} nodes {{ id }} }} }} }} }}"
            );
            let r = same(&app, &model, &q, seed).await;
            let shown = r.data()["ordersConnection"]["nodes"]
                .as_array()
                .map_or(0, Vec::len);
            // The orders page, then the items of the shown orders only, if any.
            let want = if shown == 0 { 1 } else { 2 };
            assert_eq!(r.statements, want, "seed {seed}: {q}: {}", r.body);
            if shown > 0 {
                let rows = r.body["extensions"]["sql"]["statements"][1]["rows"]
                    .as_u64()
                    .unwrap_or(0);
                let per_order = (inner as u64 + 1).min(3);
                assert!(
                    rows <= shown as u64 * per_order,
                    "seed {seed}: {q}: {} rows",
                    rows
                );
            }
        }
    }
}

#[tokio::test]
async fn equal_filters_in_any_order_share_one_batch() {
    let app = spawn_app().await;
    app.seed(3, 3, 3, 5).await;
    let model = Model::load(&app.db).await;
    let conds = vec![
        r#"quantity: { gte: 1 }"#,
        r#"id: { in: ["14", "13", "15"] }"#,
        r#"product: { name: { contains: "P" } }"#,
        r#"not: { quantity: { gt: 2 } }"#,
        r#"unitPrice: { gt: "0.5" }"#,
    ];
    for seed in seeds() {
        let cases = draw(
            (
                Just(conds.clone()).prop_shuffle(),
                Just(conds.clone()).prop_shuffle(),
                1usize..=5,
                any::<bool>(),
            ),
            seed,
        );
        for (a, b, n, wrap) in cases {
            let mut a: Vec<&str> = a.into_iter().take(n).collect();
            let chosen: Vec<&str> = b.into_iter().filter(|c| a.contains(c)).collect();
            let b = if wrap {
                // The same conditions as an `and` list.
                format!(
                    "and: [{}]",
                    chosen
                        .iter()
                        .map(|c| format!("{{ {c} }}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                chosen.join(", ")
            };
            a.sort_unstable();
            let q = format!(
                "{{ order(id: 5) {{ a: items(where: {{ {} }}) {{ id }} b: items(where: {{ {b} }}) {{ id }} }} }}",
                a.join(", ")
            );
            let r = same(&app, &model, &q, seed).await;
            assert_eq!(r.statements, 2, "seed {seed}: {q}: {}", r.body);
        }
    }
}
