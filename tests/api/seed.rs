//! `eagerql seed`: deterministic data written with bulk statements, never row by row.

use eagerql::db::Session;
use eagerql::db::seed::{self, SeedSpec};

use crate::helpers::spawn_app;
use crate::model::Model;

#[tokio::test]
async fn seeding_uses_a_bounded_number_of_bulk_statements() {
    let app = spawn_app().await;
    let session = Session::unmetered(app.db.clone());
    let spec = SeedSpec {
        users: 2000,
        orders_per_user: 5,
        items_per_order: 3,
        products: 100,
    };
    let report = seed::seed(&session, spec, |_| {})
        .await
        .unwrap_or_else(|e| panic!("{}", e.detail()));
    assert_eq!(report.orders, 10_000);
    assert_eq!(report.items, 30_000);
    // 72,100 rows; one bulk statement per table per batch of up to 50,000 rows, plus a few
    // bookkeeping statements: far from one per row.
    assert!(
        session.log().count() < 20,
        "{} statements",
        session.log().count()
    );

    let resp = app.gql("{ orders(first: 1000) { id totalAmount items { quantity unitPrice } products { id } } }").await;
    for order in resp.data()["orders"].as_array().expect("orders") {
        let total: rust_decimal::Decimal = order["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| {
                let price: rust_decimal::Decimal = i["unitPrice"]
                    .as_str()
                    .and_then(|p| p.parse().ok())
                    .expect("price");
                price * rust_decimal::Decimal::from(i["quantity"].as_i64().expect("quantity"))
            })
            .sum();
        assert_eq!(
            order["totalAmount"].as_str(),
            Some(total.to_string().as_str())
        );
        assert_eq!(order["products"].as_array().map(Vec::len), Some(3));
    }
}

#[tokio::test]
async fn seeding_is_deterministic() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    a.seed(30, 2, 2, 10).await;
    b.seed(30, 2, 2, 10).await;
    let query = "{ users(first: 30) { email orders { status totalAmount items { quantity unitPrice product { sku } } } } }";
    assert_eq!(a.gql(query).await.data(), b.gql(query).await.data());
    let model = Model::load(&a.db).await;
    assert_eq!(model.user_count(), 30);
}

#[tokio::test]
async fn seeding_refuses_a_database_with_data() {
    let app = spawn_app().await;
    app.seed(1, 1, 1, 1).await;
    let again = seed::seed(&Session::unmetered(app.db.clone()), SeedSpec::DEMO, |_| {}).await;
    assert!(again.is_err());
}

/// `eagerql seed` on a terminal (tmux) with a WARN line per slow statement: every log line
/// starts on a line of its own, and the progress bar never shares one with a log line.
#[test]
fn the_seed_progress_bar_and_warnings_do_not_overwrite_each_other() {
    if crate::helpers::backend() != eagerql::db::Backend::Sqlite {
        return; // The terminal is what is under test; one backend is enough.
    }
    let tmux = |args: &[&str]| {
        std::process::Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux (Debian's tmux) runs")
    };
    let dir = crate::helpers::scratch_dir("seed-tty");
    let db = dir.join("seed.db");
    let session = format!("eagerql-seed-{}", std::process::id());
    let command = format!(
        "EAGERQL_SLOW_STATEMENT_MS=1 {} seed --database-url sqlite:{} --users 40000 \
         --orders-per-user 3 --items-per-order 2 --products 300; echo SEED-DONE; sleep 60",
        env!("CARGO_BIN_EXE_eagerql"),
        db.display()
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "200",
        "-y",
        "60",
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let mut screens = Vec::new();
    for _ in 0..1200 {
        let shot = tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", &session]);
        let text = String::from_utf8_lossy(&shot.stdout).into_owned();
        let done = text.contains("SEED-DONE");
        screens.push(text);
        if done {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let _ = tmux(&["kill-session", "-t", &session]);
    let last = screens.last().cloned().unwrap_or_default();
    assert!(last.contains("SEED-DONE"), "seed did not finish:\n{last}");
    assert!(last.contains("seeded 40000 users"), "{last}");
    assert!(
        screens.iter().any(|s| s.contains(" rows (")),
        "the progress bar was never seen"
    );
    assert!(last.contains(" WARN "), "no warning was logged:\n{last}");
    for screen in &screens {
        for line in screen.lines() {
            if line.contains(" WARN ") {
                assert!(
                    line.starts_with("20"),
                    "a log line was written into another:\n{line}"
                );
            }
            if line.contains(" rows (") {
                assert!(
                    !line.contains("WARN"),
                    "the bar shares a line with a log line:\n{line}"
                );
            }
        }
    }
}
