//! Past one server: several stateless instances on one database, a transaction-mode
//! connection pooler, and read replicas.

use serde_json::json;

use crate::helpers::{ServerProcess, TestDb};

const LOGIN: &str = r#"mutation { login(email: "user1@example.com", password: "eagerql-demo") { accessToken refreshToken } }"#;

/// Signs in as the demo administrator: `(access token, refresh token)`.
async fn login(server: &ServerProcess) -> (String, String) {
    let r = server.gql(None, LOGIN, json!({})).await;
    let p = &r.data()["login"];
    (
        p["accessToken"].as_str().expect("token").to_owned(),
        p["refreshToken"].as_str().expect("refresh").to_owned(),
    )
}

/// Two server processes on one database: a token signed by one is accepted by the other, a
/// refresh token works once across both, and 50 concurrent orders for 10 units, split across
/// the two, sell exactly 10.
#[tokio::test]
async fn two_instances_on_one_database_share_tokens_and_never_oversell() {
    let tdb = TestDb::create().await;
    let a = ServerProcess::start(&tdb.url, &["--demo-data", "true"], &[]);
    let b = ServerProcess::start(&tdb.url, &["--demo-data", "false"], &[]);
    let (token, refresh) = login(&a).await;

    // Signed by A, accepted by B.
    let me = b.gql(Some(&token), "{ me { id role } }", json!({})).await;
    assert_eq!(me.data()["me"], json!({ "id": "1", "role": "ADMIN" }));

    // A refresh token made by A works once, on B, and is then spent for A too.
    let renewed = b
        .gql(
            None,
            "mutation($t: String!) { refreshToken(token: $t) { accessToken } }",
            json!({ "t": refresh }),
        )
        .await;
    assert!(renewed.data()["refreshToken"]["accessToken"].is_string());
    let again = a
        .gql(
            None,
            "mutation($t: String!) { refreshToken(token: $t) { accessToken } }",
            json!({ "t": refresh }),
        )
        .await;
    assert_eq!(again.error_code(), "UNAUTHENTICATED", "{}", again.body);

    // Ten units of product 1, set through B.
    let set = b
        .gql(
            Some(&token),
            "mutation($p: [ProductInput!]!) { importProducts(products: $p) { updated } }",
            json!({ "p": [{ "name": "Product 1", "sku": "SKU-0000001", "price": "2.50", "stockQuantity": 10 }] }),
        )
        .await;
    assert_eq!(set.data()["importProducts"]["updated"], 1);
    let sold = |server: &ServerProcess, token: String| {
        let addr = server.addr;
        async move {
            let r = crate::helpers::http_gql(
                addr,
                Some(&token),
                r#"{ product(id: "1") { stockQuantity orderItems { id } } }"#,
                json!({}),
            )
            .await;
            let p = r.data()["product"].clone();
            (
                p["stockQuantity"].as_i64().expect("stock"),
                p["orderItems"].as_array().map_or(0, Vec::len),
            )
        }
    };
    let (_, items_before) = sold(&a, token.clone()).await;

    let orders = (1..=50).map(|user: i64| {
        let addr = if user % 2 == 0 { a.addr } else { b.addr };
        let token = token.clone();
        async move {
            crate::helpers::http_gql(
                addr,
                Some(&token),
                "mutation($input: CreateOrderInput!) { createOrder(input: $input) { id } }",
                json!({ "input": { "userId": user.to_string(), "items": [{ "productId": "1", "quantity": 1 }] } }),
            )
            .await
        }
    });
    let results = futures_util::future::join_all(orders).await;
    let mut ok = 0;
    for r in &results {
        if r.body.get("errors").is_none() {
            ok += 1;
        } else {
            assert_eq!(r.error_code(), "BAD_USER_INPUT", "{}", r.body);
            assert!(
                r.error_message().contains("insufficient stock"),
                "{}",
                r.body
            );
        }
    }
    assert_eq!(ok, 10, "exactly the ten units sold");
    for server in [&a, &b] {
        let (stock, items) = sold(server, token.clone()).await;
        assert_eq!((stock, items - items_before), (0, 10));
    }
}

/// The URL of a component `scripts/test` started for the PostgreSQL run (`var`), or `None`
/// (the test is skipped) outside it. CI requires them.
fn component(var: &str) -> Option<String> {
    if crate::helpers::backend() != eagerql::db::Backend::Postgres {
        return None;
    }
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("EAGERQL_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "{var} is not set: scripts/test starts it for the PostgreSQL run"
            );
            eprintln!("{var} not set: skipped");
            None
        }
    }
}

/// `url`'s database (path and query) on the server `server` names.
fn same_database_at(url: &str, server: &str) -> String {
    let authority = |u: &str| {
        let rest = u.split_once("://").map_or(u, |(_, r)| r);
        rest.split(['/', '?']).next().unwrap_or_default().to_owned()
    };
    url.replacen(&authority(url), &authority(server), 1)
}

/// Runs a project script (`scripts/NAME ARGS`), failing the test when it fails.
fn script(name: &str, args: &[&str]) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    let out = std::process::Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        out.status.success(),
        "scripts/{name} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One row of one query on its own connection.
async fn scalar(url: &str, sql: &str) -> String {
    try_scalar(url, sql).await.unwrap_or_else(|e| panic!("{e}"))
}

/// [`scalar`], or why it could not be read.
async fn try_scalar(url: &str, sql: &str) -> Result<String, String> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let v = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("select ({sql})::text")))
        .fetch_one(&mut conn)
        .await
        .map_err(|e| format!("{sql}: {e}"));
    let _ = sqlx::Connection::close(conn).await;
    v
}

/// Migrates and seeds the database at `url` directly (not through a pooler).
async fn migrated_and_seeded(url: &str, users: u64) {
    let app = crate::helpers::build_app(url, &[]).await.expect("migrates");
    eagerql::db::seed::seed(
        &eagerql::db::Session::unmetered(app.state().db.clone()),
        eagerql::db::seed::SeedSpec {
            users,
            orders_per_user: 3,
            items_per_order: 2,
            products: 12,
        },
        |_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("seed: {}", e.detail()));
    app.state().db.close().await;
}

const SHAPES: &[(&str, usize)] = &[
    ("{ users(first: 20) { id email } }", 1),
    (
        "{ users(first: 20) { id orders { id items { quantity product { name } } } } }",
        3,
    ),
    (
        "{ order(id: 1) { id user { email } items { product { sku } } } }",
        2,
    ),
    (
        "{ productsConnection(first: 3) { totalCount edges { cursor node { id orders { id } } } } }",
        3,
    ),
    (
        "{ analytics { topCustomers(days: 3650) { user { id } totalRevenue } } }",
        1,
    ),
];

/// PgBouncer in transaction mode (`scripts/pgbouncer`), with fewer server connections than
/// the server's pool: the statement timeout still applies, in read snapshots and outside
/// them; 200 concurrent requests of the same shapes (the same statements, re-prepared on
/// whichever server connection each transaction gets) all answer as the server reached
/// directly does, with the same statement counts; writes work; and the mistakes of setting
/// it up are refused with a message that says what to do.
#[tokio::test]
async fn through_pgbouncer_in_transaction_mode() {
    let Some(bouncer) = component("EAGERQL_TEST_PGBOUNCER_URL") else {
        return;
    };
    let tdb = TestDb::create().await;
    let via = same_database_at(&tdb.url, &bouncer);

    // Migrations cannot run through it: they are checked, and missing ones are an error.
    let err = crate::helpers::build_app(&via, &["--pooler", "transaction"])
        .await
        .err()
        .expect("an unmigrated database is refused")
        .to_string();
    assert!(err.contains("eagerql migrate"), "{err}");
    migrated_and_seeded(&tdb.url, 30).await;

    // Without the setting, the pooler refuses the startup options: the error says which.
    let err = crate::helpers::build_app(&via, &[])
        .await
        .err()
        .expect("startup options are refused")
        .to_string();
    assert!(err.contains("EAGERQL_POOLER=transaction"), "{err}");

    let pooled = crate::helpers::build_app(
        &via,
        &[
            "--pooler",
            "transaction",
            "--statement-timeout-ms",
            "300",
            "--pool-size",
            "12",
            "--debug-sql",
            "on",
        ],
    )
    .await
    .expect("starts through PgBouncer");
    let db = pooled.state().db.clone();
    let pooled_addr = pooled.local_addr().unwrap();
    let direct = crate::helpers::build_app(&tdb.url, &[])
        .await
        .expect("starts");
    let direct_addr = direct.local_addr().unwrap();
    let token = direct
        .state()
        .keys
        .issue(1, eagerql::model::Role::Admin)
        .expect("a token")
        .0;
    let servers = [
        tokio::spawn(pooled.run_until_stopped()),
        tokio::spawn(direct.run_until_stopped()),
    ];

    // The statement timeout applies in a read snapshot and outside one.
    let snapshot = eagerql::db::Session::new(
        db.clone(),
        std::sync::Arc::new(eagerql::db::StatementLog::new(None)),
    )
    .as_viewer(eagerql::model::Viewer::OPERATOR)
    .begin_read();
    let shown = snapshot
        .fetch(
            "test.show",
            "select current_setting('statement_timeout')".into(),
            vec![],
            |r| r.text(0),
        )
        .await
        .unwrap_or_else(|e| panic!("{}", e.detail()));
    assert_eq!(shown, ["300ms"]);
    snapshot.rollback().await;
    let err = eagerql::db::Session::unmetered(db.clone())
        .fetch(
            "test.sleep",
            "select 1::int8 from pg_sleep(2)".into(),
            vec![],
            |r| r.i64(0),
        )
        .await
        .expect_err("cut off by the statement timeout");
    assert_eq!(err.code(), "LIMIT_EXCEEDED", "{}", err.detail());

    // The same shapes, concurrently: every answer equals the direct server's.
    let mut expected = Vec::new();
    for (shape, statements) in SHAPES {
        let r = crate::helpers::http_gql(direct_addr, Some(&token), shape, json!({})).await;
        assert_eq!(r.statements, *statements, "{shape}: {}", r.body);
        expected.push(r.data().clone());
    }
    let runs = (0..200).map(|i| {
        let (shape, statements) = SHAPES[i % SHAPES.len()];
        let token = token.clone();
        async move {
            let r = crate::helpers::http_gql(pooled_addr, Some(&token), shape, json!({})).await;
            (i % SHAPES.len(), statements, r)
        }
    });
    for (n, statements, r) in futures_util::future::join_all(runs).await {
        assert_eq!(r.data(), &expected[n], "{}", SHAPES[n].0);
        assert_eq!(r.statements, statements, "{}", SHAPES[n].0);
    }

    // Writes: an order, and a conflict reported as such.
    let order = crate::helpers::http_gql(
        pooled_addr,
        Some(&token),
        "mutation($input: CreateOrderInput!) { createOrder(input: $input) { id items { quantity } } }",
        json!({ "input": { "userId": "2", "items": [{ "productId": "3", "quantity": 1 }] } }),
    )
    .await;
    assert_eq!(
        order.data()["createOrder"]["items"],
        json!([{ "quantity": 1 }])
    );
    let dup = crate::helpers::http_gql(
        pooled_addr,
        Some(&token),
        r#"mutation { createUser(input: { email: "user1@example.com", username: "someone", password: "correct horse" }) { id } }"#,
        json!({}),
    )
    .await;
    assert_eq!(dup.error_code(), "CONFLICT", "{}", dup.body);
    for s in servers {
        s.abort();
    }
}

/// Waits until the replica at `replica` has replayed everything the primary at `primary` has
/// written so far.
async fn replayed(primary: &str, replica: &str) {
    let target = scalar(primary, "pg_current_wal_lsn()").await;
    let mut last = String::new();
    for _ in 0..200 {
        // The test's database itself may not be on the replica yet (its creation is one of
        // the writes to replay): not reachable is not caught up.
        match try_scalar(
            replica,
            &format!("coalesce(pg_last_wal_replay_lsn() >= '{target}'::pg_lsn, false)"),
        )
        .await
        {
            Ok(caught_up) if caught_up == "true" => return,
            Ok(caught_up) => last = caught_up,
            Err(e) => last = e,
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the replica did not replay up to {target}: {last}");
}

/// `/readyz`'s status and body.
async fn readyz(addr: std::net::SocketAddr) -> (u16, String) {
    let (status, _, body) =
        crate::helpers::http_request(addr, "GET", "/readyz", &[], String::new()).await;
    (status.as_u16(), body)
}

/// A metric's value in `/metrics`.
async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let (_, _, text) =
        crate::helpers::http_request(addr, "GET", "/metrics", &[], String::new()).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in {text}"))
}

/// Resumes the replica's replay at `.0` when dropped.
struct Resume(String);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([self.0.as_str(), "-XAtqc", "select pg_wal_replay_resume()"])
            .output();
    }
}

/// Held by the tests that stop, start or pause the streaming replica.
static REPLICA: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A query with `x-eagerql-debug: sql`: the answer and the server its snapshot was read on.
async fn read_on(
    addr: std::net::SocketAddr,
    token: &str,
    query: &str,
) -> (crate::helpers::Gql, String) {
    let auth = format!("Bearer {token}");
    let (status, h, text) = crate::helpers::http_request(
        addr,
        "POST",
        "/graphql",
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
            ("x-eagerql-debug", "sql"),
        ],
        json!({ "query": query }).to_string(),
    )
    .await;
    let body: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let server = body["extensions"]["sql"]["server"]
        .as_str()
        .unwrap_or("none")
        .to_owned();
    let statements = h["x-eagerql-sql-statements"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    (
        crate::helpers::Gql {
            status,
            body,
            statements,
        },
        server,
    )
}

/// A streaming replica (`scripts/pg-replica`, made with `pg_basebackup -R`): query operations
/// read there, with the statement counts PostgreSQL's own statistics on the replica show;
/// mutations and their answers use the primary. Stopped while requests run, the replica is
/// skipped (reads fall back to the primary, `/readyz` says "degraded"); started again, it is
/// back in rotation within a health check.
#[tokio::test]
async fn reads_use_the_replica_and_fall_back_to_the_primary_when_it_stops() {
    // One at a time on the one replica (nextest runs them in the `replica` group too).
    let _replica = REPLICA.lock().await;
    let Some(replica_server) = component("EAGERQL_TEST_REPLICA_URL") else {
        return;
    };
    let tdb = TestDb::create().await;
    let replica = same_database_at(&tdb.url, &replica_server);
    migrated_and_seeded(&tdb.url, 20).await;
    // PostgreSQL's statement statistics, read on the replica itself.
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&tdb.url)
        .await
        .unwrap();
    sqlx::raw_sql("create extension if not exists pg_stat_statements")
        .execute(&mut admin)
        .await
        .unwrap();
    replayed(&tdb.url, &replica).await;

    let app =
        crate::helpers::build_app(&tdb.url, &["--replica-urls", &replica, "--debug-sql", "on"])
            .await
            .expect("starts with a replica");
    let addr = app.local_addr().unwrap();
    let token = app
        .state()
        .keys
        .issue(1, eagerql::model::Role::Admin)
        .unwrap()
        .0;
    let server = tokio::spawn(app.run_until_stopped());
    assert_eq!(
        readyz(addr).await,
        (200, "ready (1 of 1 read replicas in use)".to_owned())
    );

    // Reads: on the replica, counted there as the server counts them (where the replica has
    // pg_stat_statements loaded: CI loads it; elsewhere that count is skipped).
    let stats = scalar(
        &replica,
        "(select count(*) from pg_settings where name = 'shared_preload_libraries' \
          and setting like '%pg_stat_statements%')",
    )
    .await
        == "1";
    assert!(
        stats || std::env::var("EAGERQL_REQUIRE_PG_STATS").as_deref() != Ok("1"),
        "pg_stat_statements is not loaded on the replica (shared_preload_libraries)"
    );
    for (shape, statements) in SHAPES {
        let (warm, on) = read_on(addr, &token, shape).await;
        warm.data();
        assert_eq!(on, "replica-1", "{shape}");
        if stats {
            scalar(
                &replica,
                "(select 1 from (select pg_stat_statements_reset()) r)",
            )
            .await;
        }
        let (r, on) = read_on(addr, &token, shape).await;
        r.data();
        assert_eq!(
            (on.as_str(), r.statements),
            ("replica-1", *statements),
            "{shape}"
        );
        if !stats {
            continue;
        }
        let counted = scalar(
            &replica,
            "(select coalesce(sum(calls), 0) from pg_stat_statements \
              where dbid = (select oid from pg_database where datname = current_database()) \
              and query !~* '^\\s*(begin|commit|rollback|select pg_stat_statements_reset)' \
              and query not like '%pg_stat_statements%' and query not like 'select (%' \
              and query not like '%pg_last_wal_replay_lsn%' \
              and query <> 'select $1')",
        )
        .await;
        assert_eq!(
            counted,
            statements.to_string(),
            "{shape}: statements on the replica"
        );
    }

    // A mutation and the answer it returns: the primary.
    let auth = format!("Bearer {token}");
    let (_, h, text) = crate::helpers::http_request(
        addr,
        "POST",
        "/graphql",
        &[("content-type", "application/json"), ("authorization", &auth), ("x-eagerql-debug", "sql")],
        json!({
            "query": "mutation($input: CreateOrderInput!) { createOrder(input: $input) { id items { quantity product { id } } } }",
            "variables": { "input": { "userId": "2", "items": [{ "productId": "4", "quantity": 2 }] } },
        })
        .to_string(),
    )
    .await;
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["data"]["createOrder"]["items"],
        json!([{ "quantity": 2, "product": { "id": "4" } }]),
        "{body}"
    );
    assert_eq!(body["extensions"]["sql"]["server"], "primary", "{body}");
    assert!(h.contains_key("x-eagerql-sql-statements"));
    assert!(metric(addr, "eagerql_read_snapshots_total{server=\"replica-1\"}").await >= 10.0);

    // Stopped while requests run: every request answers; those begun after the stop read
    // on the primary.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let load = {
        let (token, answered) = (token.clone(), answered.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for i in 0..60 {
                let (r, on) = read_on(addr, &token, SHAPES[i % SHAPES.len()].0).await;
                answers.push((r, on));
                answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            answers
        })
    };
    // Stopped once the load is under way (a few requests answered), not after a guess.
    for _ in 0..500 {
        if answered.load(std::sync::atomic::Ordering::Relaxed) >= 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        answered.load(std::sync::atomic::Ordering::Relaxed) >= 5,
        "the load runs"
    );
    script("pg-replica", &["stop"]);
    let stopped_at = std::time::Instant::now();
    for (shape, statements) in SHAPES {
        let (r, on) = read_on(addr, &token, shape).await;
        r.data();
        assert_eq!(
            (on.as_str(), r.statements),
            ("primary", *statements),
            "{shape}"
        );
    }
    let answers = load.await.unwrap();
    let failed: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|(r, _)| r.body.get("errors").is_some())
        .map(|(r, _)| &r.body)
        .collect();
    // Only a request whose snapshot was open on the replica at the moment it stopped may
    // fail, with a clean error that names no SQL.
    assert!(failed.len() <= 2, "{failed:?}");
    for body in failed {
        let text = body["errors"].to_string();
        assert!(!text.contains("select "), "{text}");
        assert!(
            body["errors"][0]["extensions"]["code"].is_string(),
            "{text}"
        );
    }
    assert!(answers.iter().any(|(_, on)| on == "primary"));
    // A read that found the replica's pool busy (a loaded machine) falls back without
    // marking it down; the background health check, once a second, does: poll for it.
    let mut ready = readyz(addr).await;
    for _ in 0..100 {
        if ready.1.starts_with("degraded") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        ready = readyz(addr).await;
    }
    let (status, body) = ready;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        "degraded: none of 1 read replicas in use; reads use the primary"
    );
    assert_eq!(
        metric(addr, "eagerql_replica_healthy{replica=\"replica-1\"}").await,
        0.0
    );
    eprintln!("fell back within {:?}", stopped_at.elapsed());

    // Started again: back in rotation after a health check.
    script("pg-replica", &["start"]);
    replayed(&tdb.url, &replica).await;
    let mut back = false;
    for _ in 0..100 {
        if read_on(addr, &token, SHAPES[0].0).await.1 == "replica-1" {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "the replica is back in rotation");
    assert_eq!(readyz(addr).await.0, 200);
    server.abort();
}

/// POSTs `query` with `variables` as `token` to `addr`; the body.
async fn post(
    addr: std::net::SocketAddr,
    token: &str,
    query: &str,
    variables: serde_json::Value,
) -> serde_json::Value {
    let auth = format!("Bearer {token}");
    let (_, _, text) = crate::helpers::http_request(
        addr,
        "POST",
        "/graphql",
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        json!({ "query": query, "variables": variables }).to_string(),
    )
    .await;
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

/// Polls `check` every 100 ms for up to `seconds`; whether it passed.
async fn within(seconds: u64, mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..seconds * 10 {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

/// A replica whose replay is paused (`pg_wal_replay_pause()`) falls behind: a customer who
/// has just ordered reads the order at once, on the instance that took it and on another
/// one (its reads use the primary until a replica has replayed the write), while other
/// viewers keep reading the replica; once the replica is further behind than
/// EAGERQL_REPLICA_MAX_LAG nobody reads from it (`/readyz` and the lag metric say so);
/// resumed, it is back in rotation, for the writer too once it has replayed the write.
#[tokio::test]
async fn a_lagging_replica_leaves_the_rotation_and_a_writer_always_reads_its_own_writes() {
    // One at a time on the one replica (nextest runs them in the `replica` group too).
    let _replica = REPLICA.lock().await;
    let Some(replica_server) = component("EAGERQL_TEST_REPLICA_URL") else {
        return;
    };
    let tdb = TestDb::create().await;
    let replica = same_database_at(&tdb.url, &replica_server);
    migrated_and_seeded(&tdb.url, 5).await;
    replayed(&tdb.url, &replica).await;
    let settings = [
        "--replica-urls",
        &replica,
        "--debug-sql",
        "on",
        "--replica-max-lag",
        "2s",
        "--read-your-writes",
        "60s",
    ];
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    let mut admin = String::new();
    let mut customer = String::new();
    for _ in 0..2 {
        let app = crate::helpers::build_app(&tdb.url, &settings)
            .await
            .expect("starts");
        addrs.push(app.local_addr().unwrap());
        admin = app
            .state()
            .keys
            .issue(1, eagerql::model::Role::Admin)
            .unwrap()
            .0;
        customer = app
            .state()
            .keys
            .issue(2, eagerql::model::Role::Customer)
            .unwrap()
            .0;
        servers.push(tokio::spawn(app.run_until_stopped()));
    }
    let (a, b) = (addrs[0], addrs[1]);
    const MINE: &str = "{ me { orders(first: 100) { id } } }";
    let orders = |r: &crate::helpers::Gql| -> Vec<String> {
        r.data()["me"]["orders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // In rotation for everyone before any write.
    assert!(
        within(10, async || read_on(a, &customer, MINE).await.1
            == "replica-1")
        .await,
        "the customer reads the replica"
    );
    assert_eq!(readyz(a).await.1, "ready (1 of 1 read replicas in use)");

    scalar(&replica, "(select 1 from (select pg_wal_replay_pause()) p)").await;
    // Resumed whatever happens below, so a failure here does not stall the other tests.
    let _resume = Resume(replica.clone());
    let placed = post(
        a,
        &customer,
        "mutation($input: CreateOrderInput!) { createOrder(input: $input) { id } }",
        json!({ "input": { "userId": "2", "items": [{ "productId": "4", "quantity": 1 }] } }),
    )
    .await;
    let id = placed["data"]["createOrder"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{placed}"))
        .to_owned();
    // The writer, on either instance, at once: its order, read on the primary.
    for addr in [a, b] {
        let (r, on) = read_on(addr, &customer, MINE).await;
        assert!(orders(&r).contains(&id), "{addr}: {}", r.body);
        assert_eq!(on, "primary", "{addr}");
    }
    // Another viewer still reads the replica while it is within the allowed lag.
    assert_eq!(read_on(b, &admin, SHAPES[0].0).await.1, "replica-1");
    // Past the allowed lag nobody reads it.
    assert!(
        within(20, async || readyz(b).await.1.contains("1 behind")).await,
        "{:?}",
        readyz(b).await
    );
    assert_eq!(
        readyz(b).await,
        (
            200,
            "degraded: none of 1 read replicas in use, 1 behind by more than \
             EAGERQL_REPLICA_MAX_LAG; reads use the primary"
                .to_owned()
        )
    );
    assert!(metric(b, "eagerql_replica_lag_seconds{replica=\"replica-1\"}").await > 2.0);
    assert_eq!(
        metric(b, "eagerql_replica_healthy{replica=\"replica-1\"}").await,
        0.0
    );
    assert_eq!(read_on(b, &admin, SHAPES[0].0).await.1, "primary");

    // Resumed: back in rotation, for the writer too, with its order.
    scalar(
        &replica,
        "(select 1 from (select pg_wal_replay_resume()) p)",
    )
    .await;
    assert!(
        within(20, async || read_on(b, &admin, SHAPES[0].0).await.1
            == "replica-1")
        .await,
        "the replica is back"
    );
    let (r, on) = read_on(b, &customer, MINE).await;
    assert!(orders(&r).contains(&id), "{}", r.body);
    assert!(
        within(10, async || read_on(a, &customer, MINE).await.1
            == "replica-1")
        .await,
        "the writer reads the replica once it has replayed the write ({on} before)"
    );
    assert_eq!(readyz(a).await.1, "ready (1 of 1 read replicas in use)");
    for s in servers {
        s.abort();
    }
}

/// A replica that is down when the server starts: the server starts, reads use the
/// primary, and `/readyz` says so.
#[tokio::test]
async fn a_replica_down_at_start_leaves_reads_on_the_primary() {
    if crate::helpers::backend() != eagerql::db::Backend::Postgres {
        return;
    }
    let tdb = TestDb::create().await;
    migrated_and_seeded(&tdb.url, 3).await;
    let nowhere = same_database_at(&tdb.url, "postgres://postgres@127.0.0.1:9");
    let app =
        crate::helpers::build_app(&tdb.url, &["--replica-urls", &nowhere, "--debug-sql", "on"])
            .await
            .expect("starts while the replica is down");
    let addr = app.local_addr().unwrap();
    let token = app
        .state()
        .keys
        .issue(1, eagerql::model::Role::Admin)
        .unwrap()
        .0;
    let server = tokio::spawn(app.run_until_stopped());
    let (r, on) = read_on(addr, &token, SHAPES[1].0).await;
    r.data();
    assert_eq!((on.as_str(), r.statements), ("primary", 3));
    assert_eq!(
        readyz(addr).await,
        (
            200,
            "degraded: none of 1 read replicas in use; reads use the primary".to_owned()
        )
    );
    server.abort();
}

/// Login limits live in the database: two instances and a restart count as one server, and
/// each attempt is counted before its password is checked, so of 40 concurrent attempts on
/// one account (39 wrong passwords, the last right), split across two instances, exactly 5
/// are checked and 35 refused.
#[tokio::test]
async fn login_limits_are_one_count_across_instances_restarts_and_concurrent_attempts() {
    let tdb = TestDb::create().await;
    let a = ServerProcess::start(&tdb.url, &["--demo-data", "true"], &[]);
    let b = ServerProcess::start(&tdb.url, &["--demo-data", "false"], &[]);
    let attempt = |server: &ServerProcess, email: &str, password: &str| {
        let (addr, email, password) = (server.addr, email.to_owned(), password.to_owned());
        async move {
            let r = crate::helpers::http_gql(
                addr,
                None,
                "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
                json!({ "e": email, "p": password }),
            )
            .await;
            match r.body["errors"][0]["extensions"]["code"].as_str() {
                Some(code) => code.to_owned(),
                None => "OK".to_owned(),
            }
        }
    };
    // Five wrong passwords on A lock the account on B too, even for the right password.
    for _ in 0..5 {
        assert_eq!(
            attempt(&a, "user2@example.com", "wrong").await,
            "UNAUTHENTICATED"
        );
    }
    assert_eq!(
        attempt(&b, "user2@example.com", "eagerql-demo").await,
        "RATE_LIMITED"
    );
    // A restart keeps the count.
    drop(b);
    let c = ServerProcess::start(&tdb.url, &["--demo-data", "false"], &[]);
    assert_eq!(
        attempt(&c, "user2@example.com", "eagerql-demo").await,
        "RATE_LIMITED"
    );
    // Another account from the same address still signs in.
    assert_eq!(attempt(&c, "user1@example.com", "eagerql-demo").await, "OK");

    let tries = (0..40).map(|i| {
        let server = if i % 2 == 0 { &a } else { &c };
        let password = if i == 39 { "eagerql-demo" } else { "wrong" };
        attempt(server, "user3@example.com", password)
    });
    let codes = futures_util::future::join_all(tries).await;
    let limited = codes.iter().filter(|c| *c == "RATE_LIMITED").count();
    let checked = codes
        .iter()
        .filter(|c| *c == "UNAUTHENTICATED" || *c == "OK")
        .count();
    assert_eq!((checked, limited), (5, 35), "{codes:?}");
}

/// Automatic persisted queries are shared through the database: a document registered
/// through one instance is found by its hash alone through another, which has never seen it.
#[tokio::test]
async fn a_persisted_query_registered_on_one_instance_is_found_on_another() {
    use sha2::Digest as _;
    let tdb = TestDb::create().await;
    let a = ServerProcess::start(&tdb.url, &["--demo-data", "true"], &[]);
    let b = ServerProcess::start(&tdb.url, &["--demo-data", "false"], &[]);
    let query = "{ products(first: 2) { id name } }";
    let hash = hex::encode(sha2::Sha256::digest(query.as_bytes()));
    let apq = |query: Option<&str>| {
        let mut body =
            json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash } } });
        if let Some(q) = query {
            body["query"] = json!(q);
        }
        body
    };
    let post = |server: &ServerProcess, body: serde_json::Value| {
        let addr = server.addr;
        async move {
            let (_, _, text) = crate::helpers::http_request(
                addr,
                "POST",
                "/graphql",
                &[("content-type", "application/json")],
                body.to_string(),
            )
            .await;
            serde_json::from_str::<serde_json::Value>(&text).expect("JSON")
        }
    };
    let unknown = post(&b, apq(None)).await;
    assert_eq!(
        unknown["errors"][0]["extensions"]["code"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    let registered = post(&a, apq(Some(query))).await;
    assert_eq!(
        registered["data"]["products"].as_array().map(Vec::len),
        Some(2)
    );
    let found = post(&b, apq(None)).await;
    assert_eq!(found["data"], registered["data"], "{found}");
}
