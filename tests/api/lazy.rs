//! Relationships no plan loaded (non-strict mode) go through the per-request DataLoader: an
//! unplanned edge costs one statement per level, not one per parent, and answers the same as
//! the plan. `EAGERQL_PLAN=lazy` sends every relationship that way.

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const SHAPE: &str = "{ users(first: 1000) { id orders { id status items { quantity product { name } } products { sku } } } }";

async fn pair(users: u64) -> (TestApp, TestApp) {
    let eager = spawn_app().await;
    let lazy = spawn_app_with(&["--strict", "false", "--plan", "lazy"]).await;
    for app in [&eager, &lazy] {
        app.seed(users, 2, 2, 5).await;
    }
    (eager, lazy)
}

#[tokio::test]
async fn lazy_loading_batches_each_level_and_answers_like_the_plan() {
    for users in [1, 10, 1000] {
        let (eager, lazy) = pair(users).await;
        let planned = eager.gql(SHAPE).await;
        let loaded = lazy.gql(SHAPE).await;
        assert_eq!(loaded.data(), planned.data(), "at {users} users");
        // Planned: users, orders, items (products joined), order_products.
        assert_eq!(planned.statements, 4, "at {users} users");
        // Lazy: five levels (users, orders, items, item products, order products), each
        // one DataLoader batch of all its parents; loading per parent would take 1 + 9 per
        // user (9,001 at 1,000 users).
        assert_eq!(
            loaded.statements, 5,
            "at {users} users: {:#}",
            loaded.body["extensions"]
        );
    }
}

#[tokio::test]
async fn strict_mode_refuses_unplanned_loads() {
    let app = spawn_app_with(&["--plan", "lazy"]).await;
    app.seed(2, 1, 1, 1).await;
    let resp = app.gql("{ users { id orders { id } } }").await;
    assert_eq!(resp.error_code(), "UNPLANNED_LOAD", "{}", resp.body);
}

#[tokio::test]
async fn non_strict_eager_mode_plans_as_usual() {
    let app = spawn_app_with(&["--strict", "false"]).await;
    app.seed(10, 2, 2, 5).await;
    let resp = app.gql(SHAPE).await;
    assert_eq!(resp.statements, 4);
    assert_eq!(resp.data()["users"].as_array().map(Vec::len), Some(10));
}
