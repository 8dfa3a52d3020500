//! Live queries: a subscription's first message is its query twin's answer, and after that it
//! is sent a message only when a committed write changes its answer. The subscribers of one
//! operation are refreshed together: a change costs the operation's planned statements
//! whether 1, 10 or 1,000 subscribers (different ids, different customers) follow it.

use std::collections::HashMap;
use std::time::Duration;

use eagerql::db::Session;
use eagerql::db::changes::Rows;
use eagerql::db::session::Arg;
use eagerql::model::Role;
use serde_json::{Value, json};

use crate::differential;
use crate::helpers::{TestApp, exec, scalar_i64, spawn_app};
use crate::oracle::{self, Viewer};
use crate::websocket::{Socket, acknowledged, connect, receive, send, serve};

/// An order with its customer (joined) and its items with their products (one batch): two
/// statements.
const ORDER: &str = "subscription Order($id: ID!) { order(id: $id) { id status user { email } \
                     items { quantity product { name } } } }";

/// Every order's id and its customer's id.
pub(crate) async fn orders(app: &TestApp) -> Vec<(i64, i64)> {
    Session::unmetered(app.db.clone())
        .fetch(
            "test.orders",
            "select id, user_id from orders order by id".to_owned(),
            vec![],
            |r| Ok((r.i64(0)?, r.i64(1)?)),
        )
        .await
        .expect("orders")
}

pub(crate) fn subscribe(id: &str, query: &str, variables: Value) -> Value {
    json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } })
}

/// The next message on `socket`, which must be a `next` for `id`; its payload.
pub(crate) async fn next(socket: &mut Socket, id: &str) -> Value {
    let m = receive(socket).await;
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(m["id"], id, "{m}");
    m["payload"].clone()
}

/// A socket of the first order's owner following it (`s`, its first answer read), and the
/// order's id.
async fn following_an_order(app: &TestApp) -> (Socket, i64) {
    let addr = serve(app).await;
    let (order, owner) = orders(app).await[0];
    let token = app.token_for(owner, Role::Customer);
    let mut socket = acknowledged(addr, &token).await;
    send(
        &mut socket,
        subscribe("s", ORDER, json!({ "id": order.to_string() })),
    )
    .await;
    next(&mut socket, "s").await;
    (socket, order)
}

/// A refresh that cannot reach the database is tried again, not left for a next change that
/// may never come: a write committed while the pool could not connect reaches its subscriber
/// once the database takes connections again.
#[tokio::test]
async fn a_refresh_that_cannot_reach_the_database_is_tried_again() {
    use sqlx::Connection as _;
    if crate::helpers::backend() != eagerql::db::Backend::Postgres {
        return;
    }
    let app = crate::helpers::spawn_app_with(&["--pool-timeout-secs", "1"]).await;
    app.seed(3, 2, 2, 4).await;
    let (mut socket, order) = following_an_order(&app).await;
    // The test's own connection stays; the database takes no new one, and every other
    // connection but the change feed's listener ends.
    let mut own = sqlx::PgConnection::connect(app.database_url())
        .await
        .expect("connect");
    let run = async |own: &mut sqlx::PgConnection, sql: String| {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(own)
            .await
            .expect("statement");
    };
    let name: String = sqlx::query_scalar("select current_database()")
        .fetch_one(&mut own)
        .await
        .expect("name");
    // A database's connections are allowed or not from another database.
    let url = app.database_url();
    let mut admin = sqlx::PgConnection::connect(&format!(
        "{}/postgres",
        &url[..url.rfind('/').expect("a database in the URL")]
    ))
    .await
    .expect("connect");
    run(
        &mut admin,
        format!("alter database \"{name}\" with allow_connections false"),
    )
    .await;
    run(
        &mut own,
        format!(
            "select count(pg_terminate_backend(pid)) from (select pid from pg_stat_activity \
             where datname = current_database() and pid <> pg_backend_pid() \
             and application_name <> '{}') t",
            eagerql::db::CHANGES_APPLICATION
        ),
    )
    .await;
    // Announced to the listener; its refresh finds no connection to open.
    run(
        &mut own,
        format!("update orders set status = 'cancelled' where id = {order}"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    run(
        &mut admin,
        format!("alter database \"{name}\" with allow_connections true"),
    )
    .await;
    let changed = next(&mut socket, "s").await;
    assert_eq!(changed["data"]["order"]["status"], "CANCELLED", "{changed}");
}

#[tokio::test]
async fn a_live_query_sends_its_answer_then_each_change_and_nothing_else() {
    let app = spawn_app().await;
    app.seed(3, 2, 2, 4).await;
    let addr = serve(&app).await;
    let (order, owner) = orders(&app).await[2];
    let token = app.token_for(owner, Role::Customer);
    let mut socket = acknowledged(addr, &token).await;
    let vars = json!({ "id": order.to_string() });
    send(&mut socket, subscribe("s1", ORDER, vars.clone())).await;

    let twin = ORDER.replacen("subscription", "query", 1);
    let first = next(&mut socket, "s1").await;
    let query = app.gql_as(Some(&token), &twin, vars.clone()).await;
    assert_eq!(first["data"], *query.data());

    // A write elsewhere (another order) changes nothing of this answer: no message. The
    // write after it does, and its message is the next one the socket receives.
    exec(
        &app,
        &format!(
            "update orders set status = 'shipped' where id = {}",
            order + 1
        ),
        vec![],
    )
    .await;
    exec(
        &app,
        &format!("update orders set status = 'cancelled' where id = {order}"),
        vec![],
    )
    .await;
    let changed = next(&mut socket, "s1").await;
    assert_eq!(changed["data"]["order"]["status"], "CANCELLED");
    let query = app.gql_as(Some(&token), &twin, vars.clone()).await;
    assert_eq!(changed["data"], *query.data());

    // `complete` from the client ends it: a later change sends nothing, and the
    // connection still answers.
    send(&mut socket, json!({ "type": "complete", "id": "s1" })).await;
    exec(
        &app,
        &format!("update orders set status = 'pending' where id = {order}"),
        vec![],
    )
    .await;
    send(&mut socket, json!({ "type": "ping" })).await;
    assert_eq!(receive(&mut socket).await["type"], "pong");
    for _ in 0..200 {
        if app.state.live.subscribers() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.state.live.subscribers(), 0);
}

/// `n` subscribers of [`ORDER`], each a different order followed by its own customer (one
/// connection per customer, with the customer's token); one write to one order; the
/// refresh's statements. Every subscriber's answer is its query twin's for its customer.
async fn one_change_for(n: usize) {
    let app = spawn_app().await;
    let mut feed = app.db.changes().subscribe();
    let users = n.div_ceil(2).max(1) as u64;
    app.seed(users, 2, 2, 6).await;
    let addr = serve(&app).await;
    let followed = &orders(&app).await[..n];
    let mut owners: Vec<i64> = followed.iter().map(|(_, u)| *u).collect();
    owners.dedup();
    let mut sockets = Vec::new();
    for owner in &owners {
        let token = app.token_for(*owner, Role::Customer);
        let mut socket = acknowledged(addr, &token).await;
        let mine: Vec<i64> = followed
            .iter()
            .filter(|(_, u)| u == owner)
            .map(|(o, _)| *o)
            .collect();
        for order in &mine {
            send(
                &mut socket,
                subscribe(
                    &format!("o{order}"),
                    ORDER,
                    json!({ "id": order.to_string() }),
                ),
            )
            .await;
        }
        sockets.push((token, socket, mine));
    }
    let twin = ORDER.replacen("subscription", "query", 1);
    for (token, socket, mine) in &mut sockets {
        let mut seen = Vec::new();
        for _ in 0..mine.len() {
            let m = receive(socket).await;
            assert_eq!(m["type"], "next", "{m}");
            seen.push(m);
        }
        // Spot checks against the query twin (every tenth customer).
        if mine[0] % 20 == 1 {
            for m in seen {
                let id = m["id"]
                    .as_str()
                    .expect("id")
                    .trim_start_matches('o')
                    .to_owned();
                let query = app.gql_as(Some(token), &twin, json!({ "id": id })).await;
                assert_eq!(m["payload"]["data"], *query.data());
            }
        }
    }
    // The set-up's writes (the seed) are refreshed and done with.
    settled(&app, &mut feed).await;
    // A change to an order item: every subscriber's answer reads the items of its order
    // through one batch, where a changed item may belong to any of them, so all are
    // refreshed, together; only the first order's answer changed.
    let (order, _) = followed[0];
    exec(
        &app,
        &format!(
            "update order_items set quantity = quantity + 10 where id = \
             (select min(id) from order_items where order_id = {order})"
        ),
        vec![],
    )
    .await;
    let changed = next(&mut sockets[0].1, &format!("o{order}")).await;
    let quantity = &changed["data"]["order"]["items"][0]["quantity"];
    assert!(quantity.as_i64().is_some_and(|q| q > 10), "{changed}");
    let refresh = refresh_of(&app, &mut feed, "order_items").await;
    assert_eq!(refresh.group, n, "every subscriber refreshed together");
    assert_eq!(
        refresh.statements, 2,
        "{n} subscribers: the shape's two statements"
    );
    assert_eq!(refresh.sent, 1, "only the changed answer is sent");

    // A change to one order's own row: each answer read its order by id, so only that
    // order's subscriber is refreshed.
    exec(
        &app,
        &format!("update orders set status = 'cancelled' where id = {order}"),
        vec![],
    )
    .await;
    let changed = next(&mut sockets[0].1, &format!("o{order}")).await;
    assert_eq!(changed["data"]["order"]["status"], "CANCELLED");
    let refresh = refresh_of(&app, &mut feed, "orders").await;
    assert_eq!((refresh.group, refresh.statements, refresh.sent), (1, 2, 1));
}

/// Waits until the sets of changes so far are refreshed and done with: none arrived for a
/// few coalescing windows, and none waits for the refresher. (A set handed on before the
/// refresher started is never its to handle: the wait is bounded.)
pub(crate) async fn settled(
    app: &TestApp,
    feed: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<eagerql::db::changes::ChangeSet>>,
) {
    let mut latest = 0;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut more = false;
        while let Ok(set) = feed.try_recv() {
            latest = set.seq;
            more = true;
        }
        if !more && app.state.live.counts().handled() >= latest {
            break;
        }
    }
}

/// The refresh that followed the next set of changes touching `table` (the test's only
/// group).
pub(crate) async fn refresh_of(
    app: &TestApp,
    feed: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<eagerql::db::changes::ChangeSet>>,
    table: &str,
) -> eagerql::live::Refresh {
    let seq = loop {
        let set = tokio::time::timeout(Duration::from_secs(30), feed.recv())
            .await
            .expect("a set of changes")
            .expect("the change feed");
        if set.tables.contains_key(table) {
            break set.seq;
        }
    };
    for _ in 0..3000 {
        let found = app
            .state
            .live
            .counts()
            .recent()
            .into_iter()
            .find(|r| r.seq == Some(seq));
        if let Some(r) = found {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no refresh followed set {seq}");
}

#[tokio::test]
async fn one_subscriber_one_change_costs_the_shapes_statements() {
    one_change_for(1).await;
}

#[tokio::test]
async fn ten_subscribers_one_change_cost_the_shapes_statements() {
    one_change_for(10).await;
}

#[tokio::test]
async fn a_thousand_subscribers_one_change_cost_the_shapes_statements() {
    one_change_for(1000).await;
}

/// A connection for `viewer`: with its token in `connection_init`, or none.
async fn connection(app: &TestApp, addr: std::net::SocketAddr, viewer: Viewer) -> Socket {
    match differential::token(app, viewer) {
        Some(token) => acknowledged(addr, &token).await,
        None => {
            let mut socket = connect(addr).await;
            send(&mut socket, json!({ "type": "connection_init" })).await;
            assert_eq!(receive(&mut socket).await["type"], "connection_ack");
            socket
        }
    }
}

/// A viewer's connection, and the operations it follows by id.
type Followed = (Viewer, Socket, Vec<(String, oracle::Op)>);

/// The `data` and the errors (path and code) of a response body, as compared.
fn outcome(body: &Value) -> (Value, Vec<(Value, Value)>) {
    let mut errors: Vec<(Value, Value)> = body["errors"]
        .as_array()
        .map(|errs| {
            errs.iter()
                .map(|e| (e["path"].clone(), e["extensions"]["code"].clone()))
                .collect()
        })
        .unwrap_or_default();
    errors.sort_by_key(|e| e.0.to_string());
    (body["data"].clone(), errors)
}

/// Random operations of every viewer, followed live through rounds of random writes
/// (through the API and in plain SQL): after each round, every subscriber's last message
/// is the answer its query twin gives the same viewer now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subscriber_ends_each_round_with_its_query_twins_answer() {
    let seed = differential::seed_or(20_261_206);
    let (app, _, pool) = differential::data_set(1).await;
    let addr = serve(&app).await;
    let mut draw = differential::Draw(seed | 1);
    // Per viewer: its connection, and its operations by id.
    let mut viewers: Vec<Followed> = Vec::new();
    let wanted = (differential::cases() / 25).clamp(40, 120);
    let mut tried = 0;
    let mut followed = 0;
    let mut latest: HashMap<String, Value> = HashMap::new();
    while followed < wanted && tried < wanted * 10 {
        tried += 1;
        let choices: Vec<u32> = (0..160)
            .map(|_| draw.next(u32::MAX as usize) as u32)
            .collect();
        let op = oracle::generate(&choices, &pool);
        let document = op.document().replacen("query", "subscription", 1);
        let at = match viewers.iter().position(|v| v.0 == op.viewer) {
            Some(at) => at,
            None => {
                let socket = connection(&app, addr, op.viewer).await;
                viewers.push((op.viewer, socket, Vec::new()));
                viewers.len() - 1
            }
        };
        if viewers[at].2.len() >= 90 {
            continue;
        }
        let id = format!("op{tried}");
        let (_, socket, ops) = &mut viewers[at];
        send(socket, subscribe(&id, &document, op.variables())).await;
        let m = receive(socket).await;
        match m["type"].as_str() {
            Some("next") => {
                latest.insert(id.clone(), m["payload"].clone());
                ops.push((id, op));
                followed += 1;
            }
            // A subscription selects one root field: operations of several are refused.
            Some("error") => {}
            _ => panic!("{m}"),
        }
    }
    eprintln!(
        "live differential: {followed} subscriptions by {} viewers, seed {seed}",
        viewers.len()
    );
    assert!(
        followed >= 40,
        "only {followed} of {tried} operations could be followed"
    );
    let mut feed = app.db.changes().subscribe();
    for round in 0..6 {
        for _ in 0..4 {
            differential::write(&app, &mut draw, &pool).await;
        }
        // A marker written last: a new product. Once the refresher is done with the set of
        // changes that holds it, every message the round's writes cause has been handed to
        // its connection, and a pong (queued behind them) tells when the client has them.
        exec(
            &app,
            "insert into products (name, sku, price, stock_quantity) values ($1, $1, 0, 1)",
            vec![Arg::Text(format!("marker-{round}"))],
        )
        .await;
        let marker = scalar_i64(&app, "select max(id) from products").await;
        let seq = loop {
            let set = tokio::time::timeout(Duration::from_secs(30), feed.recv())
                .await
                .expect("the marker's change set")
                .expect("the change feed");
            if matches!(set.tables.get("products"), Some(Rows::Ids(ids)) if ids.contains(&marker))
                || set.everything
            {
                break set.seq;
            }
        };
        for _ in 0..3000 {
            if app.state.live.counts().handled() >= seq {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            app.state.live.counts().handled() >= seq,
            "the refresher is stuck"
        );
        for (_, socket, _) in &mut viewers {
            send(socket, json!({ "type": "ping" })).await;
            loop {
                let m = receive(socket).await;
                let id = m["id"].as_str().unwrap_or_default().to_owned();
                match m["type"].as_str() {
                    Some("pong") => break,
                    Some("next") => {
                        latest.insert(id, m["payload"].clone());
                    }
                    _ => panic!("round {round}: a live operation ended: {m}"),
                }
            }
        }
        for (viewer, _, ops) in &viewers {
            let token = differential::token(&app, *viewer);
            for (id, op) in ops {
                let twin = app
                    .gql_as(token.as_deref(), &op.document(), op.variables())
                    .await;
                assert_eq!(
                    outcome(&latest[id]),
                    outcome(&twin.body),
                    "round {round} (seed {seed}): {viewer:?} {}\n  variables {}",
                    op.document(),
                    op.variables()
                );
            }
        }
    }
}

/// A Server-Sent Events response, read event by event.
pub(crate) struct Events {
    body: axum::body::Body,
    text: String,
}

impl Events {
    /// Sends `query` as POST accepting `text/event-stream`, with `token`.
    pub(crate) async fn open(
        app: &TestApp,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Events {
        use tower::ServiceExt as _;
        let mut req = axum::http::Request::post("/graphql")
            .header("content-type", "application/json")
            .header("accept", "text/event-stream");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .body(axum::body::Body::from(
                json!({ "query": query, "variables": variables }).to_string(),
            ))
            .expect("request");
        let resp = app.router.clone().oneshot(req).await.expect("response");
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        assert!(resp.headers().get("content-encoding").is_none());
        Events {
            body: resp.into_body(),
            text: String::new(),
        }
    }

    /// The next event (comments skipped): its name and data (`None`: the stream ended).
    async fn next(&mut self) -> Option<(String, String)> {
        // One bound for the event, not for each frame: keepalive comments come meanwhile.
        tokio::time::timeout(Duration::from_secs(30), self.event())
            .await
            .expect("an event")
    }

    async fn event(&mut self) -> Option<(String, String)> {
        use http_body_util::BodyExt as _;
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let (mut event, mut data) = (String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = v.to_owned();
                    }
                }
                if event.is_empty() {
                    continue;
                }
                return Some((event, data));
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.text
                            .push_str(std::str::from_utf8(&data).expect("UTF-8"));
                    }
                }
                _ => return None,
            }
        }
    }

    /// The next event, which must be `next`: its result.
    pub(crate) async fn result(&mut self) -> Value {
        let (event, data) = self.next().await.expect("an event");
        assert_eq!(event, "next", "{data}");
        serde_json::from_str(&data).expect("JSON")
    }
}

#[tokio::test]
async fn subscriptions_queries_and_errors_stream_as_server_sent_events() {
    let app = spawn_app().await;
    app.seed(3, 2, 2, 4).await;
    let (order, owner) = orders(&app).await[1];
    let token = app.token_for(owner, Role::Customer);
    let vars = json!({ "id": order.to_string() });
    let twin = ORDER.replacen("subscription", "query", 1);

    // A query: one result, then `complete`, then the end.
    let mut query = Events::open(&app, Some(&token), &twin, vars.clone()).await;
    let answer = app.gql_as(Some(&token), &twin, vars.clone()).await;
    assert_eq!(query.result().await["data"], *answer.data());
    assert_eq!(query.next().await.map(|e| e.0).as_deref(), Some("complete"));
    assert_eq!(query.next().await, None);

    // A document that does not validate: its errors as a result, then `complete`.
    let mut bad = Events::open(&app, Some(&token), "subscription { nothing }", json!({})).await;
    let result = bad.result().await;
    assert!(result["errors"][0]["message"].is_string(), "{result}");
    assert!(result.get("data").is_none(), "{result}");
    assert_eq!(bad.next().await.map(|e| e.0).as_deref(), Some("complete"));

    // A subscription: its answer now, then each change.
    let mut live = Events::open(&app, Some(&token), ORDER, vars.clone()).await;
    assert_eq!(live.result().await["data"], *answer.data());
    exec(
        &app,
        &format!("update orders set status = 'cancelled' where id = {order}"),
        vec![],
    )
    .await;
    let changed = live.result().await;
    assert_eq!(changed["data"]["order"]["status"], "CANCELLED");
    let answer = app.gql_as(Some(&token), &twin, vars.clone()).await;
    assert_eq!(changed["data"], *answer.data());

    // Closing the stream ends the subscription.
    drop(live);
    for _ in 0..200 {
        if app.state.live.subscribers() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(app.state.live.subscribers(), 0);
}

/// Shutting down: each WebSocket is closed with 1001 (after what was queued for it), each
/// event stream ends, and a connection that never sends `connection_init` is closed with 4408
/// after EAGERQL_WS_INIT_TIMEOUT_SECS.
#[tokio::test]
async fn shutdown_closes_sockets_with_1001_and_ends_streams() {
    let app = crate::helpers::spawn_app_with(&["--ws-init-timeout-secs", "1"]).await;
    app.seed(2, 1, 1, 2).await;
    let addr = serve(&app).await;
    let mut silent = connect(addr).await;
    assert_eq!(receive(&mut silent).await, json!({ "close": 4408 }));

    let query = "subscription { productsAggregate { count } }";
    let mut socket = acknowledged(addr, &app.token).await;
    send(&mut socket, subscribe("s", query, json!({}))).await;
    assert_eq!(
        next(&mut socket, "s").await["data"]["productsAggregate"]["count"],
        2
    );
    let mut stream = Events::open(&app, Some(&app.token), query, json!({})).await;
    assert_eq!(
        stream.result().await["data"]["productsAggregate"]["count"],
        2
    );

    app.state.closing.send_replace(true);
    assert_eq!(receive(&mut socket).await, json!({ "close": 1001 }));
    assert_eq!(stream.next().await, None);
}

/// An access token that expires ends what follows with it: the WebSocket is closed with 4403,
/// the event stream ends with an `UNAUTHENTICATED` error and `complete`, at the next change.
#[tokio::test]
async fn an_expired_token_ends_its_subscriptions() {
    // Tokens live 1 s (and 5 s of leeway).
    let app = crate::helpers::spawn_app_with(&["--access-token-ttl-secs", "1"]).await;
    app.seed(2, 1, 1, 2).await;
    let addr = serve(&app).await;
    let (order, owner) = orders(&app).await[0];
    let token = app.token_for(owner, Role::Customer);
    let vars = json!({ "id": order.to_string() });
    let mut socket = acknowledged(addr, &token).await;
    send(&mut socket, subscribe("s", ORDER, vars.clone())).await;
    next(&mut socket, "s").await;
    let mut stream = Events::open(&app, Some(&token), ORDER, vars).await;
    stream.result().await;

    // Past the token's life and leeway, a change to the order.
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    exec(
        &app,
        &format!("update orders set status = 'cancelled' where id = {order}"),
        vec![],
    )
    .await;
    assert_eq!(receive(&mut socket).await, json!({ "close": 4403 }));
    let ended = stream.result().await;
    assert_eq!(
        ended["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{ended}"
    );
    assert_eq!(
        stream.next().await.map(|e| e.0).as_deref(),
        Some("complete")
    );
}

#[tokio::test]
async fn each_message_says_what_its_refresh_did_when_the_client_asks() {
    let app = spawn_app().await;
    app.seed(3, 2, 2, 4).await;
    let addr = serve(&app).await;
    let (order, owner) = orders(&app).await[0];
    let token = app.token_for(owner, Role::Customer);
    let mut socket = crate::websocket::connect(addr).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": {
            "Authorization": format!("Bearer {token}"),
            "x-eagerql-debug": "sql",
        } }),
    )
    .await;
    assert_eq!(receive(&mut socket).await["type"], "connection_ack");
    send(
        &mut socket,
        subscribe("s", ORDER, json!({ "id": order.to_string() })),
    )
    .await;
    let first = next(&mut socket, "s").await;
    let refresh = &first["extensions"]["refresh"];
    assert_eq!(refresh["subscribers"], 1, "{first}");
    assert_eq!(refresh["statements"], 2, "the shape's statements: {first}");
    assert!(refresh["rows"].as_u64().is_some_and(|r| r >= 1), "{first}");
    assert!(refresh["sinceChangeMs"].as_f64().is_some(), "{first}");
    exec(
        &app,
        &format!("update orders set status = 'cancelled' where id = {order}"),
        vec![],
    )
    .await;
    let changed = next(&mut socket, "s").await;
    assert_eq!(changed["data"]["order"]["status"], "CANCELLED");
    assert_eq!(
        changed["extensions"]["refresh"]["statements"], 2,
        "{changed}"
    );

    // Without the header, a message is the answer alone.
    let mut plain = crate::websocket::acknowledged(addr, &token).await;
    send(
        &mut plain,
        subscribe("s", ORDER, json!({ "id": order.to_string() })),
    )
    .await;
    let m = next(&mut plain, "s").await;
    assert!(m.get("extensions").is_none(), "{m}");
}

/// PostgreSQL drops every connection of the database (as a restart does): the listener
/// connects again, every subscriber is refreshed, and a write made meanwhile is not missed.
#[tokio::test]
async fn subscriptions_survive_the_database_dropping_every_connection() {
    if crate::helpers::backend() != eagerql::db::Backend::Postgres {
        return;
    }
    let app = spawn_app().await;
    app.seed(3, 2, 2, 4).await;
    let (mut socket, order) = following_an_order(&app).await;
    let connects = || {
        app.db
            .changes()
            .counts()
            .connects
            .load(std::sync::atomic::Ordering::Acquire)
    };
    let before = connects();
    // Every other connection of the database ends (the listener's and the pool's), and a
    // write commits at once, while the listener is away or going.
    exec(
        &app,
        "select count(pg_terminate_backend(pid)) from pg_stat_activity \
         where datname = current_database() and pid <> pg_backend_pid()",
        vec![],
    )
    .await;
    // (A pooled connection the database ended fails once, cleanly: the write is retried.)
    let write = format!("update orders set status = 'cancelled' where id = {order}");
    let mut done = false;
    for _ in 0..50 {
        let r = Session::unmetered(app.db.clone())
            .execute("test.exec", write.clone(), vec![])
            .await;
        if r.is_ok() {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(done, "the write went through");
    let changed = next(&mut socket, "s").await;
    assert_eq!(changed["data"]["order"]["status"], "CANCELLED", "{changed}");
    for _ in 0..1000 {
        if connects() > before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(connects() > before, "the listener connected again");
    // And it follows the writes after it.
    exec(
        &app,
        &format!("update orders set status = 'pending' where id = {order}"),
        vec![],
    )
    .await;
    let again = next(&mut socket, "s").await;
    assert_eq!(again["data"]["order"]["status"], "PENDING", "{again}");
}
