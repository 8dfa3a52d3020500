//! GraphQL over WebSocket (`graphql-transport-ws`) on `/graphql`, as a client of the
//! graphql-ws library sees it: the handshake, queries and mutations as single-result
//! operations with the same answers as over HTTP, errors as `error` messages, and the
//! protocol's close codes.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{TestApp, spawn_app};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves the app on a loopback port.
pub(crate) async fn serve(app: &TestApp) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let router = app.router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    addr
}

/// The upgrade request of a graphql-ws client.
fn upgrade_request(addr: SocketAddr) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = format!("ws://{addr}/graphql")
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().expect("header"),
    );
    req
}

pub(crate) async fn connect(addr: SocketAddr) -> Socket {
    let (socket, resp) = tokio_tungstenite::connect_async(upgrade_request(addr))
        .await
        .expect("the upgrade is accepted");
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    socket
}

pub(crate) async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("send");
}

/// The next protocol message, or the close frame's code as `{"close": code}`.
pub(crate) async fn receive(socket: &mut Socket) -> Value {
    let wait = async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str::<Value>(t.as_str()).expect("JSON");
                }
                Some(Ok(Message::Close(frame))) => {
                    return json!({ "close": frame.map(|f| u16::from(f.code)) });
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return json!({ "error": e.to_string() }),
                None => return json!({ "closed": true }),
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), wait)
        .await
        .expect("a message")
}

pub(crate) async fn acknowledged(addr: SocketAddr, token: &str) -> Socket {
    let mut socket = connect(addr).await;
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await,
        json!({ "type": "connection_ack" })
    );
    socket
}

#[tokio::test]
async fn queries_and_mutations_are_single_result_operations() {
    let app = spawn_app().await;
    app.seed(3, 2, 2, 4).await;
    let addr = serve(&app).await;
    let mut socket = acknowledged(addr, &app.token).await;

    let query = "query($id: ID!) { order(id: $id) { id status user { id } items { quantity product { name } } } }";
    let vars = json!({ "id": "2" });
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "q1", "payload": { "query": query, "variables": vars } }),
    )
    .await;
    let over_http = app.gql_vars(query, vars.clone()).await;
    let next = receive(&mut socket).await;
    assert_eq!(next["type"], "next");
    assert_eq!(next["id"], "q1");
    assert_eq!(next["payload"]["data"], over_http.data().clone());
    assert_eq!(
        receive(&mut socket).await,
        json!({ "type": "complete", "id": "q1" })
    );

    send(
        &mut socket,
        json!({ "type": "ping", "payload": { "n": 1 } }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await,
        json!({ "type": "pong", "payload": { "n": 1 } })
    );

    let mutation = "mutation { createOrder(input: { userId: \"2\", items: [{ productId: \"1\", quantity: 1 }] }) { id user { id } } }";
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "m1", "payload": { "query": mutation } }),
    )
    .await;
    let next = receive(&mut socket).await;
    assert_eq!(next["payload"]["data"]["createOrder"]["user"]["id"], "2");
    assert_eq!(receive(&mut socket).await["type"], "complete");
    // The id is free again once completed.
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "q1", "payload": { "query": "{ __typename }" } }),
    )
    .await;
    assert_eq!(
        receive(&mut socket).await["payload"]["data"],
        json!({ "__typename": "Query" })
    );
}

#[tokio::test]
async fn errors_are_messages_and_broken_rules_close_the_socket() {
    let app = spawn_app().await;
    app.seed(2, 1, 1, 2).await;
    let addr = serve(&app).await;

    // An operation that cannot run is an `error` message with the GraphQL errors.
    let mut socket = acknowledged(addr, &app.token).await;
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": "{ nope }" } }),
    )
    .await;
    let error = receive(&mut socket).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["id"], "1");
    assert_eq!(
        error["payload"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
    // The viewer's rules apply: an anonymous connection may not list users.
    let mut anonymous = connect(addr).await;
    send(&mut anonymous, json!({ "type": "connection_init" })).await;
    assert_eq!(receive(&mut anonymous).await["type"], "connection_ack");
    send(
        &mut anonymous,
        json!({ "type": "subscribe", "id": "u", "payload": { "query": "{ users { id } }" } }),
    )
    .await;
    let next = receive(&mut anonymous).await;
    assert_eq!(
        next["payload"]["errors"][0]["extensions"]["code"],
        "UNAUTHENTICATED"
    );

    // A second connection_init: 4429.
    send(&mut socket, json!({ "type": "connection_init" })).await;
    assert_eq!(receive(&mut socket).await, json!({ "close": 4429 }));

    // A subscription before the acknowledgement: 4401.
    let mut early = connect(addr).await;
    send(
        &mut early,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": "{ __typename }" } }),
    )
    .await;
    assert_eq!(receive(&mut early).await, json!({ "close": 4401 }));

    // Not a protocol message: 4400.
    let mut bad = acknowledged(addr, &app.token).await;
    send(&mut bad, json!({ "type": "start", "id": "1" })).await;
    assert_eq!(receive(&mut bad).await, json!({ "close": 4400 }));

    // A refused token: 4403.
    let mut forged = connect(addr).await;
    send(
        &mut forged,
        json!({ "type": "connection_init", "payload": { "Authorization": "Bearer not-a-token" } }),
    )
    .await;
    assert_eq!(receive(&mut forged).await, json!({ "close": 4403 }));

    // Without the subprotocol the upgrade is refused.
    let req = format!("ws://{addr}/graphql")
        .into_client_request()
        .expect("request");
    let refused = tokio_tungstenite::connect_async(req).await;
    assert!(refused.is_err(), "an upgrade without graphql-transport-ws");
}

/// A message is bounded like a request body (EAGERQL_MAX_BODY_BYTES): a larger one ends the
/// socket instead of growing the server's memory.
#[tokio::test]
async fn a_message_over_the_body_limit_ends_the_socket() {
    let app = crate::helpers::spawn_app_with(&["--max-body-bytes", "2048"]).await;
    let addr = serve(&app).await;
    let mut socket = acknowledged(addr, &app.token).await;
    let huge = format!("{{ __typename {} }}", " ".repeat(10_000));
    send(
        &mut socket,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": huge } }),
    )
    .await;
    let end = receive(&mut socket).await;
    assert!(
        end.get("close").is_some() || end.get("error").is_some() || end.get("closed").is_some(),
        "{end}"
    );
    // The server still answers others.
    let mut other = acknowledged(addr, &app.token).await;
    send(
        &mut other,
        json!({ "type": "subscribe", "id": "1", "payload": { "query": "{ __typename }" } }),
    )
    .await;
    assert_eq!(receive(&mut other).await["type"], "next");
}

/// An instance holds at most EAGERQL_WS_MAX_CONNECTIONS sockets: one more upgrade is a 503,
/// and a closed socket frees its place.
#[tokio::test]
async fn sockets_per_instance_are_bounded() {
    let app = crate::helpers::spawn_app_with(&["--ws-max-connections", "1"]).await;
    let addr = serve(&app).await;
    let mut first = acknowledged(addr, &app.token).await;
    let req = upgrade_request(addr);
    match tokio_tungstenite::connect_async(req.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 503);
        }
        other => panic!("a second socket: {:?}", other.map(|_| ())),
    }
    first.close(None).await.expect("close");
    // The place is freed once the server has seen the close: poll for it.
    let mut again = None;
    for _ in 0..200 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(req.clone()).await {
            again = Some(socket);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(again.is_some(), "a socket after the first closed");
}
