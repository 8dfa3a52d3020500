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
use crate::oracle::{self, Op, Pool, Viewer};
use crate::reference::Model;
use eagerql::model::Role;

/// Operations per run (at least 2,000 per backend in CI).
fn cases() -> u32 {
    std::env::var("EAGERQL_DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// A data set with the cases answers go wrong on: inactive users, users without orders,
/// zero totals, revenue ties, orders at the edges of windows (microseconds apart). `scale`
/// multiplies the seeded rows, so that the same operation also runs on more rows.
async fn data_set(scale: u64) -> (TestApp, Model, Pool) {
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
    let seed = std::env::var("EAGERQL_DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_261_201);
    run(seed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differential_fresh_seed() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    run(seed).await;
}
