//! The differential test: random valid operations over the whole query schema, each sent by
//! an administrator, one of two customers (owner-only rows that differ) or an anonymous
//! viewer, run through the real HTTP stack, each answer compared exactly (data with its key order, null
//! propagation, error paths and codes) with the oracle's (`oracle.rs`), and each statement
//! count with the one the plan rules predict from the operation's shape.
//!
//! Each operation runs on two data sets, the second with about five times the rows, so the
//! same shape is checked at two row counts. `differential_fixed_seed` replays the same
//! operations every run; `differential_fresh_seed`
//! draws new ones and prints its seed. A failure is shrunk to a minimal operation and printed
//! with its variables, both answers and the seed:
//! `EAGERQL_DIFF_SEED=<seed> EAGERQL_DIFF_CASES=<n> scripts/test differential` replays it.

use chrono::{DateTime, Duration, Utc};
use eagerql::db::session::Arg;
use proptest::collection::vec;
use proptest::prelude::any;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use serde_json::Value;

use crate::helpers::{TestApp, backend, deactivate, exec, insert_order, spawn_app_with};
use crate::model::Model;
use crate::oracle::{self, Op, Pool, Viewer};
use eagerql::model::Role;

/// Operations per run (at least 2,000 per backend in CI).
pub(crate) fn cases() -> u32 {
    std::env::var("EAGERQL_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// A data set with the cases answers go wrong on: inactive users, users without orders,
/// zero totals, revenue ties, orders at the edges of windows (microseconds apart). `scale`
/// multiplies the seeded rows, so that the same operation also runs on more rows.
pub(crate) async fn data_set(scale: u64) -> (TestApp, Model, Pool) {
    // No statement budget: the oracle predicts counts of any size.
    let app = spawn_app_with(&["--statement-budget", "0"]).await;
    app.seed(24 * scale, 3 + scale, 2, 9 * scale).await;
    let base = DateTime::parse_from_rfc3339("2026-10-25T03:14:38.000Z")
        .expect("base")
        .with_timezone(&Utc);
    // Users without orders (one of them inactive).
    for i in 0..3 {
        exec(
            &app,
            "insert into users (email, username, password_hash, bio) values ($1, $2, '!', $3)",
            vec![
                Arg::Text(format!("idle{i}@example.com")),
                Arg::Text(format!("idle{i}")),
                Arg::OptText((i == 1).then(|| "likes \"quotes\" and ünïcode".to_owned())),
            ],
        )
        .await;
    }
    deactivate(&app, 3).await;
    deactivate(&app, 26).await;
    // Ties and zero totals at window edges, for several statuses.
    for (user, status, cents, at) in [
        (1, "completed", 1250, base),
        (2, "completed", 1250, base),
        (4, "completed", 0, base + Duration::microseconds(1)),
        (5, "shipped", 999, base - Duration::microseconds(1)),
        (6, "shipped", 999, base + Duration::days(1)),
        (
            7,
            "pending",
            0,
            base + Duration::days(1) - Duration::microseconds(1),
        ),
        (3, "completed", 5000, base),
        (8, "cancelled", 700, base + Duration::hours(5)),
    ] {
        insert_order(&app, user, status, cents, at).await;
    }
    let model = Model::load(&app.db).await;
    let mut as_of = vec![base, base + Duration::days(1), base + Duration::days(2)];
    for o in model.orders.iter().take(40) {
        as_of.push(o.created_at);
        as_of.push(o.created_at + Duration::microseconds(1));
        as_of.push(o.created_at + Duration::days(7));
    }
    for d in [-1, 1] {
        as_of.push(base + Duration::microseconds(d));
        as_of.push(base + Duration::days(1) + Duration::microseconds(d));
    }
    let mut with_orders = model
        .users
        .iter()
        .map(|u| u.id)
        .filter(|id| *id != 1 && model.orders.iter().any(|o| o.user_id == *id));
    let customers = [
        with_orders.next().expect("a customer with orders"),
        with_orders.next().expect("another customer with orders"),
    ];
    let pool = Pool {
        customers,
        user_ids: model.users.iter().map(|u| u.id).take(30).collect(),
        order_ids: model.orders.iter().map(|o| o.id).step_by(7).collect(),
        product_ids: model.products.iter().map(|p| p.id).collect(),
        as_of,
        rows: model.clone(),
    };
    (app, model, pool)
}

/// Runs `op` on the server and compares with the oracle. `Err`: the difference.
async fn check(app: &TestApp, model: &Model, op: &Op) -> Result<(), String> {
    let document = op.document();
    let variables = op.variables();
    let expected = oracle::evaluate(op, model);
    let token = match op.viewer {
        Viewer::Admin => Some(app.token.clone()),
        Viewer::Customer(id) => Some(app.token_for(id, Role::Customer)),
        Viewer::Anonymous => None,
    };
    let resp = app
        .gql_as(token.as_deref(), &document, variables.clone())
        .await;
    let mut problems = Vec::new();
    if resp.status != 200 {
        problems.push(format!("HTTP status {}", resp.status));
    }
    let data = resp
        .body
        .get("data")
        .cloned()
        .unwrap_or(Value::String("<absent>".into()));
    let (got, want) = (data.to_string(), expected.data.to_string());
    if got != want {
        problems.push(format!("data differs\n  server: {got}\n  oracle: {want}"));
    }
    let mut errors: Vec<(Value, String)> = resp
        .body
        .get("errors")
        .and_then(Value::as_array)
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    (
                        e.get("path").cloned().unwrap_or(Value::Null),
                        e["extensions"]["code"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    errors.sort_by_key(|e| e.0.to_string());
    let want_errors: Vec<(Value, String)> = expected
        .errors
        .iter()
        .map(|(p, c)| (p.clone(), (*c).to_owned()))
        .collect();
    if errors != want_errors {
        problems.push(format!(
            "errors differ\n  server: {errors:?}\n  oracle: {want_errors:?}\n  body: {}",
            resp.body
        ));
    }
    if resp.statements != expected.statements {
        problems.push(format!(
            "statements: server ran {}, the plan rules predict {}",
            resp.statements, expected.statements
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{}\n  document: {document}\n  variables: {variables}\n  viewer: {:?}",
            problems.join("\n"),
            op.viewer
        ))
    }
}

async fn run(seed: u64) {
    let (app, model, pool) = data_set(1).await;
    // The same operations on about five times the rows: same shape, other row counts, and
    // the statement count must still be what the shape predicts.
    let (big, big_model, _) = data_set(3).await;
    let cases = cases();
    eprintln!(
        "differential: {cases} operations on {:?}, seed {seed} (replay: EAGERQL_DIFF_SEED={seed})",
        backend()
    );
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 3000,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes));
    let handle = tokio::runtime::Handle::current();
    let result = tokio::task::block_in_place(|| {
        runner.run(&vec(any::<u32>(), 0..160), |choices| {
            let op = oracle::generate(&choices, &pool);
            handle
                .block_on(async {
                    check(&app, &model, &op).await?;
                    check(&big, &big_model, &op)
                        .await
                        .map_err(|e| format!("on the larger data set: {e}"))
                })
                .map_err(TestCaseError::fail)
        })
    });
    match result {
        Ok(()) => eprintln!("differential: {cases} operations, 0 mismatches"),
        Err(TestError::Fail(reason, choices)) => {
            let op = oracle::generate(&choices, &pool);
            panic!(
                "differential mismatch on {:?} (seed {seed}), shrunk to:\n{reason}\n  operation:\n{}",
                backend(),
                op.document()
            );
        }
        Err(other) => panic!("differential: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_fixed_seed() {
    run(seed_or(20_261_201)).await;
}

/// `EAGERQL_DIFF_SEED` when it is set (a replay), else `fixed`.
pub(crate) fn seed_or(fixed: u64) -> u64 {
    std::env::var("EAGERQL_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(fixed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_fresh_seed() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    run(seed).await;
}

/// The grammar reaches every feature the oracle evaluates: a change that stops drawing one
/// would otherwise leave it unchecked without a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grammar_draws_every_feature() {
    let (_app, _model, pool) = data_set(1).await;
    // A fixed xorshift sequence: the same operations every run.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 32) as u32
    };
    let mut documents = Vec::new();
    for _ in 0..3000 {
        let choices: Vec<u32> = (0..160).map(|_| next()).collect();
        let op = oracle::generate(&choices, &pool);
        documents.push(format!("{} {}", op.document(), op.variables()));
    }
    for feature in [
        "where:",
        "and:",
        "or:",
        "not:",
        "some:",
        "none:",
        "contains:",
        "startsWith:",
        "in:",
        "isNull:",
        "after:",
        "before:",
        "cursor",
        "startCursor",
        "endCursor",
        "me {",
        "Connection",
        "Aggregate",
        "orderBy:",
        "@skip",
        "@include",
        "...F",
    ] {
        let n = documents.iter().filter(|d| d.contains(feature)).count();
        assert!(n >= 10, "{feature} drawn in {n} of 3,000 operations");
    }
}

/// A fixed pseudo-random sequence (xorshift): the writes of a seed are the same every run.
pub(crate) struct Draw(pub(crate) u64);

impl Draw {
    pub(crate) fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 32) as usize) % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.next(items.len())]
    }
}

/// The fields a written order is answered with, and read back with.
const WRITTEN: &str = "id status totalAmount user { id isActive } items { quantity unitPrice product { id stockQuantity } }";

pub(crate) fn token(app: &TestApp, viewer: Viewer) -> Option<String> {
    match viewer {
        Viewer::Admin => Some(app.token.clone()),
        Viewer::Customer(id) => Some(app.token_for(id, Role::Customer)),
        Viewer::Anonymous => None,
    }
}

/// Sends a mutation as `viewer`, and compares its answer (the field `field`) with the oracle's
/// answer to `read_back` (a query of the written row by the same viewer) over the rows as they
/// are after it: a mutation answers exactly what a read of its row answers next.
async fn written(
    app: &TestApp,
    viewer: Viewer,
    mutation: (&str, Value),
    field: &str,
    read_back: &str,
) {
    let resp = app
        .gql_as(
            token(app, viewer).as_deref(),
            mutation.0,
            mutation.1.clone(),
        )
        .await;
    let answer = resp.data()[field].clone();
    let id = answer["id"]
        .as_str()
        .expect("the written row's id")
        .to_owned();
    let model = Model::load(&app.db).await;
    let query = read_back.replace("$ID", &id);
    let want = oracle::evaluate(&oracle::read(&query, &Value::Null, viewer), &model);
    let row = want
        .data
        .as_object()
        .and_then(|m| m.values().next())
        .cloned();
    assert_eq!(
        Some(answer),
        row,
        "{} as {viewer:?} with {}: the answer is not what reading the row answers",
        mutation.0,
        mutation.1
    );
}

/// One write: through the API (an order placed by a customer or for a user by an
/// administrator, a status move that the life cycle allows or refuses, a user deactivated)
/// or in plain SQL from outside (prices, stock, a status, a bio).
pub(crate) async fn write(app: &TestApp, draw: &mut Draw, pool: &Pool) {
    let model = Model::load(&app.db).await;
    match draw.next(6) {
        0 | 1 => {
            let in_stock: Vec<i64> = model
                .products
                .iter()
                .filter(|p| p.stock_quantity >= 2)
                .map(|p| p.id)
                .collect();
            let mut products = vec![draw.pick(&in_stock), draw.pick(&in_stock)];
            products.dedup();
            let items: Vec<Value> = products
                .iter()
                .map(|p| serde_json::json!({ "productId": p.to_string(), "quantity": 1 + draw.next(2) }))
                .collect();
            let active: Vec<i64> = model
                .users
                .iter()
                .filter(|u| u.is_active)
                .map(|u| u.id)
                .collect();
            let customers: Vec<i64> = pool
                .customers
                .iter()
                .copied()
                .filter(|c| active.contains(c))
                .collect();
            let (viewer, input) = if draw.next(2) == 0 && !customers.is_empty() {
                let c = draw.pick(&customers);
                (Viewer::Customer(c), serde_json::json!({ "items": items }))
            } else {
                let user = draw.pick(&active);
                (
                    Viewer::Admin,
                    serde_json::json!({ "userId": user.to_string(), "items": items }),
                )
            };
            let doc = format!(
                "mutation($input: CreateOrderInput!) {{ createOrder(input: $input) {{ {WRITTEN} }} }}"
            );
            let read_back = format!("{{ order(id: \"$ID\") {{ {WRITTEN} }} }}");
            written(
                app,
                viewer,
                (&doc, serde_json::json!({ "input": input })),
                "createOrder",
                &read_back,
            )
            .await;
        }
        2 | 3 => {
            let order = &model.orders[draw.next(model.orders.len())];
            let to = draw.pick(&["SHIPPED", "COMPLETED", "CANCELLED"]);
            let owner = pool.customers.contains(&order.user_id);
            let viewer = if owner && draw.next(2) == 0 {
                Viewer::Customer(order.user_id)
            } else {
                Viewer::Admin
            };
            let from = order.status.as_db();
            // The life cycle: PENDING -> SHIPPED -> COMPLETED, or PENDING | SHIPPED ->
            // CANCELLED; a customer may only cancel their own pending orders.
            let allowed = match (viewer, from, to) {
                (Viewer::Customer(_), "pending", "CANCELLED") => true,
                (Viewer::Customer(_), _, _) => false,
                (_, "pending", "SHIPPED" | "CANCELLED") => true,
                (_, "shipped", "COMPLETED" | "CANCELLED") => true,
                _ => false,
            };
            let doc = format!(
                "mutation {{ updateOrderStatus(id: \"{}\", status: {to}) {{ {WRITTEN} }} }}",
                order.id
            );
            if allowed {
                let read_back = format!("{{ order(id: \"$ID\") {{ {WRITTEN} }} }}");
                written(
                    app,
                    viewer,
                    (&doc, Value::Null),
                    "updateOrderStatus",
                    &read_back,
                )
                .await;
            } else {
                let resp = app
                    .gql_as(token(app, viewer).as_deref(), &doc, Value::Null)
                    .await;
                let errors = resp.body["errors"].as_array().cloned().unwrap_or_default();
                assert!(
                    !errors.is_empty() && resp.body["data"].is_null(),
                    "{doc} as {viewer:?} from {from}: refused, got {}",
                    resp.body
                );
                let after = Model::load(&app.db).await;
                assert_eq!(
                    after.orders, model.orders,
                    "{doc}: a refused move wrote nothing"
                );
                assert_eq!(
                    after.products, model.products,
                    "{doc}: a refused move wrote nothing"
                );
            }
        }
        4 => {
            // Neither user 1 (the administrator) nor the two customers the operations use.
            let others: Vec<i64> = model
                .users
                .iter()
                .map(|u| u.id)
                .filter(|id| *id != 1 && !pool.customers.contains(id))
                .collect();
            let id = draw.pick(&others);
            let doc = format!(
                "mutation {{ deactivateUser(id: \"{id}\") {{ id isActive orders(first: 2) {{ id status }} }} }}"
            );
            let read_back = "{ user(id: \"$ID\") { id isActive orders(first: 2) { id status } } }";
            written(
                app,
                Viewer::Admin,
                (&doc, Value::Null),
                "deactivateUser",
                read_back,
            )
            .await;
        }
        _ => {
            let product = draw.pick(&pool.product_ids);
            let order = model.orders[draw.next(model.orders.len())].id;
            let user = draw.pick(&pool.user_ids);
            let (sql, args) = match draw.next(4) {
                0 => {
                    let cent = if backend() == eagerql::db::Backend::Postgres {
                        "0.01"
                    } else {
                        "1"
                    };
                    (
                        format!("update products set price = price + {cent} where id = $1"),
                        vec![Arg::I64(product)],
                    )
                }
                1 => (
                    "update products set stock_quantity = stock_quantity + 3 where id = $1"
                        .to_owned(),
                    vec![Arg::I64(product)],
                ),
                2 => (
                    "update orders set status = 'shipped' where id = $1 and status = 'pending'"
                        .to_owned(),
                    vec![Arg::I64(order)],
                ),
                _ => (
                    "update users set bio = $1 where id = $2".to_owned(),
                    vec![
                        Arg::Text(format!("written from outside {}", draw.next(1000))),
                        Arg::I64(user),
                    ],
                ),
            };
            exec(app, &sql, args).await;
        }
    }
}

/// Mutations followed by reads: rounds of random writes (through the API, each answer
/// compared with a read of its row, and in plain SQL from outside), each followed by random
/// operations of every viewer that must agree with the oracle over the rows as they are now:
/// nothing the server keeps between requests (kept plans, statement texts, verified tokens)
/// may answer from before a write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_after_writes() {
    let seed = seed_or(20_261_206);
    let (app, _, pool) = data_set(1).await;
    let mut draw = Draw(seed | 1);
    let reads = (cases() / 40).max(10);
    eprintln!("differential after writes: 8 rounds of 4 writes and {reads} reads, seed {seed}");
    for round in 0..8 {
        for _ in 0..4 {
            write(&app, &mut draw, &pool).await;
        }
        let model = Model::load(&app.db).await;
        for _ in 0..reads {
            let choices: Vec<u32> = (0..160)
                .map(|_| draw.next(u32::MAX as usize) as u32)
                .collect();
            let op = oracle::generate(&choices, &pool);
            if let Err(e) = check(&app, &model, &op).await {
                panic!("round {round} (seed {seed}, replay: EAGERQL_DIFF_SEED={seed}):\n{e}");
            }
        }
    }
}
