//! `Subscription.orderEvents`, the order life cycle as an event stream: one message per
//! event, in commit order, to the order's customer and to administrators; writes through the
//! API and plain SQL alike; a resume after an event id; and the statements a change costs,
//! whatever the number of subscribers.

use std::time::Duration;

use eagerql::model::Role;
use serde_json::{Value, json};

use crate::helpers::{TestApp, exec, spawn_app};
use crate::live::{next, orders, refresh_of, settled, subscribe};
use crate::websocket::{Socket, acknowledged, receive, send, serve};

const EVENTS: &str = "subscription Events { orderEvents { id kind status previousStatus \
                      order { id status } } }";

/// Waits until the refresher has answered `n` subscribers more than `before` (a stream's
/// first refresh finds where it stands and sends nothing).
async fn answered(app: &TestApp, before: u64, n: u64) {
    for _ in 0..3000 {
        let done = app
            .state
            .live
            .counts()
            .refreshed
            .load(std::sync::atomic::Ordering::Acquire);
        if done >= before + n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the subscribers were not answered");
}

fn refreshed(app: &TestApp) -> u64 {
    app.state
        .live
        .counts()
        .refreshed
        .load(std::sync::atomic::Ordering::Acquire)
}

/// The socket's next message is a `pong`: nothing else was queued for it before.
async fn quiet(socket: &mut Socket) {
    send(socket, json!({ "type": "ping" })).await;
    let m = receive(socket).await;
    assert_eq!(m["type"], "pong", "nothing else was sent: {m}");
}

/// The viewer's events now, by the query root.
async fn events_of(app: &TestApp, token: &str) -> Value {
    let r = app
        .gql_as(
            Some(token),
            "{ orderEvents(first: 1000) { id kind status previousStatus order { id } } }",
            json!({}),
        )
        .await;
    r.data()["orderEvents"].clone()
}

#[tokio::test]
async fn order_events_reach_their_customer_and_administrators_in_commit_order() {
    let app = spawn_app().await;
    app.seed(3, 2, 2, 4).await;
    let addr = serve(&app).await;
    let all = orders(&app).await;
    let (order, owner) = all[0];
    let other = all
        .iter()
        .find(|(_, u)| *u != owner)
        .expect("another customer")
        .1;
    let customer = app.token_for(owner, Role::Customer);
    let stranger = app.token_for(other, Role::Customer);
    let admin = app.token_for(1, Role::Admin);
    // The order starts pending (the seed draws statuses).
    exec(
        &app,
        &format!("update orders set status = 'pending' where id = {order}"),
        vec![],
    )
    .await;

    let before = refreshed(&app);
    let mut mine = acknowledged(addr, &customer).await;
    send(&mut mine, subscribe("e", EVENTS, json!({}))).await;
    let mut theirs = acknowledged(addr, &stranger).await;
    send(&mut theirs, subscribe("e", EVENTS, json!({}))).await;
    let mut all_events = acknowledged(addr, &admin).await;
    send(
        &mut all_events,
        subscribe(
            "c",
            "subscription { cancelled: orderEvents(kind: CANCELLED) { kind order { id } } }",
            json!({}),
        ),
    )
    .await;
    answered(&app, before, 3).await;

    // Plain SQL, outside the server: the triggers write the event.
    exec(
        &app,
        &format!("update orders set status = 'shipped' where id = {order}"),
        vec![],
    )
    .await;
    let shipped = next(&mut mine, "e").await;
    let event = &shipped["data"]["orderEvents"];
    assert_eq!(event["kind"], "STATUS_CHANGED", "{shipped}");
    assert_eq!(event["status"], "SHIPPED");
    assert_eq!(event["previousStatus"], "PENDING");
    assert_eq!(
        event["order"],
        json!({ "id": order.to_string(), "status": "SHIPPED" })
    );

    // Through the API (an administrator's): a cancellation reaches the customer and the administrator's filtered
    // stream.
    let cancelled = app
        .gql_as(
            Some(&admin),
            "mutation($id: ID!) { updateOrderStatus(id: $id, status: CANCELLED) { status } }",
            json!({ "id": order.to_string() }),
        )
        .await;
    assert_eq!(
        cancelled.data()["updateOrderStatus"]["status"],
        "CANCELLED",
        "{cancelled:?}"
    );
    let m = next(&mut mine, "e").await;
    assert_eq!(m["data"]["orderEvents"]["kind"], "CANCELLED");
    assert_eq!(m["data"]["orderEvents"]["previousStatus"], "SHIPPED");
    let m = next(&mut all_events, "c").await;
    assert_eq!(
        m["data"],
        json!({ "cancelled": { "kind": "CANCELLED", "order": { "id": order.to_string() } } })
    );

    // A new order: CREATED, pending, no previous status.
    let placed = app
        .gql_as(
            Some(&customer),
            "mutation { createOrder(input: { items: [{ productId: \"1\", quantity: 1 }] }) { id } }",
            json!({}),
        )
        .await;
    let new_order = placed.data()["createOrder"]["id"].clone();
    let m = next(&mut mine, "e").await;
    let event = &m["data"]["orderEvents"];
    assert_eq!(event["kind"], "CREATED", "{m}");
    assert_eq!(event["status"], "PENDING");
    assert_eq!(event["previousStatus"], Value::Null);
    assert_eq!(event["order"]["id"], new_order);

    // Every message the customer got is, in order, the tail of what the query root shows.
    let listed = events_of(&app, &customer).await;
    let listed = listed.as_array().expect("events");
    let tail: Vec<&Value> = listed[listed.len() - 3..].iter().collect();
    assert_eq!(tail[0]["id"], shipped["data"]["orderEvents"]["id"]);
    assert_eq!(tail[2]["kind"], "CREATED");

    // Nothing of this reached the other customer, nor the administrator's stream beyond the
    // cancellation.
    quiet(&mut theirs).await;
    quiet(&mut all_events).await;
}

#[tokio::test]
async fn a_stream_resumes_after_an_event_id_and_a_customer_sees_only_their_own() {
    let app = spawn_app().await;
    app.seed(3, 2, 2, 4).await;
    let addr = serve(&app).await;
    let (order, owner) = orders(&app).await[0];
    let customer = app.token_for(owner, Role::Customer);
    for status in ["shipped", "completed"] {
        exec(
            &app,
            &format!("update orders set status = '{status}' where id = {order}"),
            vec![],
        )
        .await;
    }
    let listed = events_of(&app, &customer).await;
    let listed = listed.as_array().expect("events").clone();
    assert!(listed.len() >= 3, "{listed:?}");
    // Only the customer's own orders' events.
    let own: Vec<String> = orders(&app)
        .await
        .iter()
        .filter(|(_, u)| *u == owner)
        .map(|(o, _)| o.to_string())
        .collect();
    assert!(
        listed
            .iter()
            .all(|e| own.contains(&e["order"]["id"].as_str().unwrap_or("").to_owned()))
    );

    // Resuming after the first event sends every later one at once, in order.
    let mut socket = acknowledged(addr, &customer).await;
    send(
        &mut socket,
        subscribe(
            "r",
            "subscription($after: ID) { orderEvents(after: $after) { id kind } }",
            json!({ "after": listed[0]["id"] }),
        ),
    )
    .await;
    for expected in &listed[1..] {
        let m = next(&mut socket, "r").await;
        assert_eq!(m["data"]["orderEvents"]["id"], expected["id"]);
        assert_eq!(m["data"]["orderEvents"]["kind"], expected["kind"]);
    }
    quiet(&mut socket).await;

    // A fragment around the stream field is refused with a clear error.
    send(
        &mut socket,
        subscribe(
            "f",
            "subscription { ... on Subscription { orderEvents { id } } }",
            json!({}),
        ),
    )
    .await;
    let m = receive(&mut socket).await;
    assert_eq!(m["type"], "error", "{m}");
    assert_eq!(
        m["payload"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{m}"
    );
}

/// `n` customers, each following their events on their own connection; one status change;
/// the refresh's statements.
async fn one_event_for(n: usize) {
    let app = spawn_app().await;
    let mut feed = app.db.changes().subscribe();
    app.seed(n as u64, 2, 1, 4).await;
    let addr = serve(&app).await;
    let all = orders(&app).await;
    let mut owners: Vec<i64> = all.iter().map(|(_, u)| *u).collect();
    owners.sort_unstable();
    owners.dedup();
    let owners = &owners[..n];
    let before = refreshed(&app);
    let mut sockets = Vec::new();
    for owner in owners {
        let token = app.token_for(*owner, Role::Customer);
        let mut socket = acknowledged(addr, &token).await;
        send(&mut socket, subscribe("e", EVENTS, json!({}))).await;
        sockets.push(socket);
    }
    answered(&app, before, n as u64).await;
    settled(&app, &mut feed).await;
    let (order, owner) = *all
        .iter()
        .find(|(_, u)| *u == owners[0])
        .expect("an order of the first customer");
    assert_eq!(owner, owners[0]);
    exec(
        &app,
        &format!("update orders set status = 'cancelled' where id = {order}"),
        vec![],
    )
    .await;
    let m = next(&mut sockets[0], "e").await;
    assert_eq!(m["data"]["orderEvents"]["kind"], "CANCELLED");
    let refresh = refresh_of(&app, &mut feed, "order_events").await;
    let recent = app.state.live.counts().recent();
    assert_eq!(
        refresh.group, n,
        "every subscriber refreshed together: {recent:?}"
    );
    assert_eq!(
        refresh.statements, 1,
        "{n} subscribers: the shape's one statement"
    );
    assert_eq!(refresh.sent, 1, "one event, one message");
    for socket in &mut sockets[1..] {
        quiet(socket).await;
    }
}

#[tokio::test]
async fn one_event_stream_subscriber_one_change_costs_the_shapes_statements() {
    one_event_for(1).await;
}

#[tokio::test]
async fn ten_event_stream_subscribers_one_change_cost_the_shapes_statements() {
    one_event_for(10).await;
}

#[tokio::test]
async fn a_thousand_event_stream_subscribers_one_change_cost_the_shapes_statements() {
    one_event_for(1000).await;
}

/// A resume far back: more events than a transport's send queue holds (an event stream's
/// 64). They come a page at a time, each page once the last is written, all in order, and
/// the stream goes on.
#[tokio::test]
async fn a_long_backlog_drains_in_order_over_an_event_stream_and_a_websocket() {
    let app = spawn_app().await;
    app.seed(2, 1, 1, 2).await;
    let addr = serve(&app).await;
    let (order, owner) = orders(&app).await[0];
    let customer = app.token_for(owner, Role::Customer);
    for k in 0..150 {
        let status = if k % 2 == 0 { "shipped" } else { "pending" };
        exec(
            &app,
            &format!("update orders set status = '{status}' where id = {order}"),
            vec![],
        )
        .await;
    }
    let listed = events_of(&app, &customer).await;
    let listed = listed.as_array().expect("events").clone();
    assert!(listed.len() > 150, "{}", listed.len());
    let doc = "subscription($after: ID) { orderEvents(after: $after) { id } }";
    let after = json!({ "after": listed[0]["id"] });

    let mut stream = crate::live::Events::open(&app, Some(&customer), doc, after.clone()).await;
    for expected in &listed[1..] {
        let m = stream.result().await;
        assert_eq!(m["data"]["orderEvents"]["id"], expected["id"], "{m}");
    }
    let mut socket = acknowledged(addr, &customer).await;
    send(&mut socket, subscribe("r", doc, after)).await;
    for expected in &listed[1..] {
        let m = next(&mut socket, "r").await;
        assert_eq!(m["data"]["orderEvents"]["id"], expected["id"], "{m}");
    }
    quiet(&mut socket).await;
    // Both go on with the next event.
    exec(
        &app,
        &format!("update orders set status = 'cancelled' where id = {order}"),
        vec![],
    )
    .await;
    assert_eq!(
        next(&mut socket, "r").await["data"]["orderEvents"]["id"],
        stream.result().await["data"]["orderEvents"]["id"]
    );
}
