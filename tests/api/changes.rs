//! The change feed: every committed write to the model's tables reaches it, whoever made it
//! (a mutation, or on PostgreSQL plain SQL from another connection), as sets of changed rows
//! by table; a bulk write is a table-wide change, a lost listening connection is opened again
//! and reported as "everything may have changed", and on PostgreSQL only the tables some
//! instance follows are announced.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use eagerql::db::Backend;
use eagerql::db::changes::{ChangeSet, Rows, TABLES};
use serde_json::json;
use tokio::sync::broadcast;

use crate::helpers::{TestApp, backend, exec, spawn_app};

/// Receives sets until `done` holds for one (or every change so far, merged), failing after
/// a long bound: a change that never comes fails the test instead of hanging it.
async fn until(
    rx: &mut broadcast::Receiver<Arc<ChangeSet>>,
    what: &str,
    mut done: impl FnMut(&ChangeSet) -> bool,
) -> Arc<ChangeSet> {
    let wait = async {
        loop {
            match rx.recv().await {
                Ok(set) if done(&set) => return set,
                Ok(_) => {}
                Err(e) => panic!("change feed: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .unwrap_or_else(|_| panic!("no change set with {what}"))
}

/// Every set received up to and including the first for which `done` holds.
async fn sets_until(
    rx: &mut broadcast::Receiver<Arc<ChangeSet>>,
    what: &str,
    done: impl Fn(&ChangeSet) -> bool,
) -> Vec<Arc<ChangeSet>> {
    let mut sets = Vec::new();
    let last = until(rx, what, |set| {
        let d = done(set);
        if !d {
            sets.push(Arc::new(set.clone()));
        }
        d
    })
    .await;
    sets.push(last);
    sets
}

fn has(set: &ChangeSet, table: &str, id: i64) -> bool {
    match set.tables.get(table) {
        Some(Rows::All) => true,
        Some(Rows::Ids(ids)) => ids.contains(&id),
        None => false,
    }
}

/// Plain SQL on a connection of its own, as an operator's `psql` would.
async fn outside(app: &TestApp, sql: &str) {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(app.database_url())
        .await
        .expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test]
async fn a_mutation_reaches_the_feed_with_the_rows_it_wrote() {
    let app = spawn_app().await;
    app.seed(3, 1, 1, 4).await;
    let mut rx = app.db.changes().subscribe();
    app.db.follow(&TABLES).await.expect("follow");
    let r = app
        .gql_vars(
            "mutation($i: CreateOrderInput!) { createOrder(input: $i) { id items { id } } }",
            json!({ "i": { "userId": "2", "items": [{ "productId": "1", "quantity": 1 }, { "productId": "2", "quantity": 1 }] } }),
        )
        .await;
    let order: i64 = r.data()["createOrder"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("order id");
    let items: BTreeSet<i64> = r.data()["createOrder"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str().and_then(|s| s.parse().ok()))
        .collect();
    let mut seen = ChangeSet::default();
    until(
        &mut rx,
        "the new order, its lines, links and stock",
        |set| {
            for (t, rows) in &set.tables {
                let merged = seen.tables.entry(t).or_insert(Rows::Ids(BTreeSet::new()));
                match (merged, rows) {
                    (Rows::Ids(m), Rows::Ids(ids)) => m.extend(ids),
                    (m, _) => *m = Rows::All,
                }
            }
            has(&seen, "orders", order)
                && items.iter().all(|i| has(&seen, "order_items", *i))
                && has(&seen, "order_products", order)
                && has(&seen, "products", 1)
                && has(&seen, "products", 2)
        },
    )
    .await;
}

#[tokio::test]
async fn a_rolled_back_mutation_sends_nothing() {
    // No seed, and answers of at most 1,500 bytes: an order with a long answer is written, then
    // rolled back (its answer is over the cap). Nothing else writes `orders` here.
    // One connection: the later write commits on the connection the order was written on.
    let app =
        crate::helpers::spawn_app_with(&["--max-response-bytes", "1500", "--pool-size", "1"]).await;
    let mut rx = app.db.changes().subscribe();
    app.db.follow(&TABLES).await.expect("follow");
    let money = if backend() == Backend::Postgres {
        "1.00"
    } else {
        "100"
    };
    exec(
        &app,
        "insert into users (email, username, password_hash) values ('a@example.com', 'a', '!')",
        vec![],
    )
    .await;
    let product = |sku: &str| {
        format!(
            "insert into products (name, sku, price, stock_quantity) values ('{sku}', '{sku}', {money}, 5)"
        )
    };
    exec(&app, &product("p-1"), vec![]).await;
    let r = app
        .gql(&format!(
            "mutation {{ createOrder(input: {{ userId: \"1\", items: [{{ productId: \"1\", quantity: 1 }}] }}) {{ id {} }} }}",
            (0..25)
                .map(|i| format!("u{i}: user {{ email username createdAt updatedAt isActive }}"))
                .collect::<Vec<_>>()
                .join(" ")
        ))
        .await;
    assert_eq!(r.error_code(), "LIMIT_EXCEEDED", "{}", r.body);
    assert_eq!(
        crate::model::Model::load(&app.db).await.orders.len(),
        0,
        "the order was rolled back"
    );
    // A later write, in program order after the refused one: every set up to its own was
    // sent before it or with it.
    exec(&app, &product("p-2"), vec![]).await;
    for set in sets_until(&mut rx, "product 2", |set| has(set, "products", 2)).await {
        assert!(
            !set.tables.contains_key("orders"),
            "a rolled-back order was sent: {set:?}"
        );
    }
}

#[tokio::test]
async fn postgres_writes_from_outside_bulk_writes_and_a_lost_connection() {
    if backend() != Backend::Postgres {
        return;
    }
    let app = spawn_app().await;
    app.seed(3, 1, 1, 600).await;
    let mut rx = app.db.changes().subscribe();
    app.db.follow(&TABLES).await.expect("follow");
    outside(
        &app,
        "update products set stock_quantity = stock_quantity + 1 where id in (3, 5)",
    )
    .await;
    until(&mut rx, "products 3 and 5", |set| {
        has(set, "products", 3) && has(set, "products", 5)
    })
    .await;
    // Over 500 rows: any product may have changed.
    outside(
        &app,
        "update products set stock_quantity = stock_quantity + 1",
    )
    .await;
    until(&mut rx, "every product", |set| {
        set.tables.get("products") == Some(&Rows::All)
    })
    .await;
    // The listening connection is cut (as by a restart): it is opened again, says that
    // anything may have changed meanwhile, and hears the next write.
    outside(
        &app,
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = current_database() and query like 'LISTEN%'",
    )
    .await;
    until(&mut rx, "everything, after the reconnection", |set| {
        set.everything
    })
    .await;
    let connects = || {
        app.db
            .changes()
            .counts()
            .connects
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert!(connects() >= 2, "reconnected: {}", connects());
    outside(&app, "update users set bio = 'after' where id = 2").await;
    until(&mut rx, "user 2", |set| has(set, "users", 2)).await;
    // TRUNCATE names no row: any row of the table.
    outside(&app, "truncate order_products").await;
    until(&mut rx, "every link", |set| {
        set.tables.get("order_products") == Some(&Rows::All)
    })
    .await;
}

/// A write already running when a table is followed checked the followers before: it is not
/// announced, so following waits until it has ended, and a read made after it sees the write.
#[tokio::test]
async fn postgres_following_waits_for_writes_begun_before_it() {
    if backend() != Backend::Postgres {
        return;
    }
    let app = spawn_app().await;
    app.seed(2, 1, 1, 2).await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(app.database_url())
        .await
        .expect("connect");
    sqlx::raw_sql("begin; update products set stock_quantity = 77 where id = 1")
        .execute(&mut conn)
        .await
        .expect("a write, not committed");
    let committed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let db = app.db.clone();
    let seen = committed.clone();
    // Whether the write had committed when following returned.
    let follow = tokio::spawn(async move {
        let r = db.follow(&["products"]).await;
        (r, seen.load(std::sync::atomic::Ordering::SeqCst))
    });
    // Hold the transaction open a moment, then commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    committed.store(true, std::sync::atomic::Ordering::SeqCst);
    sqlx::raw_sql("commit")
        .execute(&mut conn)
        .await
        .expect("commit");
    let (r, after_commit) = follow.await.expect("joined");
    r.expect("follow");
    assert!(
        after_commit,
        "following returned while an earlier write was still running"
    );
    let model = crate::model::Model::load(&app.db).await;
    assert_eq!(
        model.products[0].stock_quantity, 77,
        "the write is seen after following"
    );
}

#[tokio::test]
async fn postgres_announces_only_the_tables_some_instance_follows() {
    if backend() != Backend::Postgres {
        return;
    }
    let app = spawn_app().await;
    app.seed(2, 1, 1, 3).await;
    let mut rx = app.db.changes().subscribe();
    app.db.follow(&["users"]).await.expect("follow");
    // Products are followed by no instance: the write pays for no notification.
    outside(
        &app,
        "update products set stock_quantity = stock_quantity + 1 where id = 1",
    )
    .await;
    outside(&app, "update users set bio = 'marker' where id = 2").await;
    for set in sets_until(&mut rx, "user 2", |set| has(set, "users", 2)).await {
        assert!(!set.tables.contains_key("products"), "{set:?}");
    }
    // Once followed (by this instance, or another on the same database), they are told.
    app.db.follow(&["products"]).await.expect("follow");
    outside(
        &app,
        "update products set stock_quantity = stock_quantity + 1 where id = 1",
    )
    .await;
    until(&mut rx, "product 1", |set| has(set, "products", 1)).await;
}
