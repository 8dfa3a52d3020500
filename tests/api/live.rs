//! Live queries: a subscription's first message is its query twin's answer, and after that it
//! is sent a message only when a committed write changes its answer. The subscribers of one
//! operation are refreshed together: a change costs the operation's planned statements
//! whether 1, 10 or 1,000 subscribers (different ids, different customers) follow it.

use std::time::Duration;

use eagerql::db::Session;
use eagerql::model::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, exec, spawn_app};
use crate::websocket::{Socket, acknowledged, receive, send, serve};

/// An order with its customer (joined) and its items with their products (one batch): two
/// statements.
const ORDER: &str = "subscription Order($id: ID!) { order(id: $id) { id status user { email } \
                     items { quantity product { name } } } }";

/// Every order's id and its customer's id.
async fn orders(app: &TestApp) -> Vec<(i64, i64)> {
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

fn subscribe(id: &str, query: &str, variables: Value) -> Value {
    json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } })
}

/// The next message on `socket`, which must be a `next` for `id`; its payload.
async fn next(socket: &mut Socket, id: &str) -> Value {
    let m = receive(socket).await;
    assert_eq!(m["type"], "next", "{m}");
    assert_eq!(m["id"], id, "{m}");
    m["payload"].clone()
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
    let (order, _) = followed[0];
    exec(
        &app,
        &format!("update orders set status = 'cancelled' where id = {order}"),
        vec![],
    )
    .await;
    let changed = next(&mut sockets[0].1, &format!("o{order}")).await;
    assert_eq!(changed["data"]["order"]["status"], "CANCELLED");
    // The refresh that sent it (the last: no write came after).
    let refresh = app.state.live.counts().last().expect("a refresh");
    assert_eq!(refresh.group, n, "every subscriber refreshed together");
    assert_eq!(
        refresh.statements, 2,
        "{n} subscribers: the shape's two statements"
    );
    assert_eq!(refresh.sent, 1, "only the changed answer is sent");
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
