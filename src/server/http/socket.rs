//! GraphQL over WebSocket on `/graphql`: the `graphql-transport-ws` subprotocol (Apollo
//! Client's `GraphQLWsLink`, urql, GraphiQL), driven by the protocol's state machine
//! ([`crate::server::ws`]). Queries and mutations are single-result operations: each runs
//! through the same pipeline as an HTTP request ([`handler::handle`]), under the viewer of the
//! access token given in `connection_init`'s payload (`{"Authorization": "Bearer ..."}`,
//! checked again for each operation: an expired token closes the socket with 4403), and is
//! answered with `next` and `complete`, or with `error` when it could not run. Operations of
//! one connection run side by side, at most [`MAX_OPERATIONS`] at a time; a client that sends
//! no `connection_init` within [`INIT_TIMEOUT`] is closed with 4408.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Map, Value as Json, json};
use tokio::sync::{Notify, mpsc};

use super::{authenticate, bearer};
use crate::graphql::handler::{self, DEBUG_HEADER, DebugAsks, Incoming, Outcome, Params};
use crate::live::{Deliver, Delivery, Subscriber, refresh};
use crate::server::state::AppState;
use crate::server::ws::{self as protocol, Closing, Connection, Step};

/// How often the server pings a connection (a WebSocket ping frame, which clients answer
/// by themselves), keeping it open through proxies and finding peers that are gone.
pub const KEEPALIVE: Duration = Duration::from_secs(15);
/// Operations one connection may run at a time.
pub const MAX_OPERATIONS: usize = 100;
/// Messages waiting to be written to one socket (a few per operation): a client that does
/// not read stops its own operations, and a live query's message that finds the queue full
/// closes the connection (1008), never grows the server's memory.
const QUEUE: usize = 4 * MAX_OPERATIONS;

/// The initial read buffer of a connection.
const READ_BUFFER: usize = 4 * 1024;

/// Accepts a WebSocket upgrade that offers the `graphql-transport-ws` subprotocol.
pub(super) fn upgrade(ws: WebSocketUpgrade, state: AppState, client: Option<IpAddr>) -> Response {
    let ws = ws.protocols([protocol::SUBPROTOCOL]);
    if ws.selected_protocol().is_none() {
        return super::error_response(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "a WebSocket to /graphql speaks the graphql-transport-ws subprotocol: offer it in \
             Sec-WebSocket-Protocol",
        );
    }
    let Ok(open) = state.sockets.clone().try_acquire_owned() else {
        return super::error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            "too many WebSocket connections are open on this server \
             (EAGERQL_WS_MAX_CONNECTIONS); try again later",
        );
    };
    // A message is bounded like a request body (EAGERQL_MAX_BODY_BYTES).
    let most = state.config.limits.max_body_bytes;
    // A connection's read buffer starts small (subscribe messages are small) and grows for a
    // larger message: 128 KiB each up front was most of what an idle connection held.
    ws.max_message_size(most)
        .max_frame_size(most)
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            serve(socket, state, client).await;
            drop(open);
        })
}

/// What an operation's task hands to the socket's writer.
enum Out {
    /// A message to send.
    Text(String),
    /// Operation `id` is over (its id is free again).
    Done(String),
    /// Operation `id` is the live subscription `u64` (see [`crate::live`]).
    Joined(String, u64),
    /// The connection ends.
    Close(Closing),
}

async fn serve(socket: WebSocket, state: AppState, client: Option<IpAddr>) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Out>(QUEUE);
    let mut conn = Connection::new(MAX_OPERATIONS);
    let mut auth = HeaderMap::new();
    let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    // Live subscriptions by operation id.
    let mut live: HashMap<String, u64> = HashMap::new();
    let not_reading = Arc::new(Notify::new());
    // Where every operation's messages go; its token is the one `connection_init` gave
    // (shared by the connection's subscriptions).
    let mut to = Sender::new(out_tx.clone(), not_reading.clone(), None, false);
    let init = tokio::time::sleep(Duration::from_secs(
        state.config.limits.ws_init_timeout_secs,
    ));
    tokio::pin!(init);
    let mut shutdown = state.closing.subscribe();
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = Instant::now();
    let closing = loop {
        let text = tokio::select! {
            () = &mut init, if !conn.acknowledged() => break Some(Closing::init_timeout()),
            () = not_reading.notified() => break Some(Closing::not_reading()),
            closed = shutdown.wait_for(|closing| *closing).map(|r| r.is_ok()) => {
                let _ = closed;
                // What is queued already is sent before the close frame.
                while let Ok(Out::Text(t)) = out_rx.try_recv() {
                    if sink.send(Message::Text(t.into())).await.is_err() {
                        break;
                    }
                }
                break Some(Closing::going_away());
            }
            _ = keepalive.tick() => {
                // A peer that answered nothing (not even a pong) for three intervals is gone.
                if heard.elapsed() > 3 * KEEPALIVE {
                    break None;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break None;
                }
                continue;
            }
            out = out_rx.recv() => {
                match out {
                    Some(Out::Text(t)) => {
                        if sink.send(Message::Text(t.into())).await.is_err() {
                            break None;
                        }
                    }
                    Some(Out::Done(id)) => {
                        conn.finished(&id);
                        running.remove(&id);
                        if let Some(sub) = live.remove(&id) {
                            state.live.leave(sub);
                        }
                    }
                    // Stopped meanwhile: it leaves at once.
                    Some(Out::Joined(id, sub)) if !running.contains_key(&id) => {
                        state.live.leave(sub);
                    }
                    Some(Out::Joined(id, sub)) => {
                        live.insert(id, sub);
                    }
                    Some(Out::Close(c)) => break Some(c),
                    None => break None,
                }
                continue;
            }
            frame = stream.next() => match frame.inspect(|_| heard = Instant::now()) {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(_))) => {
                    break Some(Closing::bad_request("Invalid message: a binary frame"))
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                // WebSocket pings and pongs are answered by the WebSocket layer.
                Some(Ok(_)) => continue,
            },
        };
        let step = match conn.receive(text.as_str()) {
            Ok(step) => step,
            Err(c) => break Some(c),
        };
        let reply = match step {
            Step::Init(payload) => {
                let headers = init_headers(payload.as_ref());
                if let Err(refused) = authenticate(&state, &headers).await {
                    break Some(refused.closing());
                }
                auth = headers;
                // `x-eagerql-debug` in the payload: each live message says what its refresh did.
                let debug = DebugAsks::read(&auth).is_some_and(|a| a.sql || a.plan)
                    && state.config.debug_sql_allowed();
                to = Sender::new(
                    out_tx.clone(),
                    to.not_reading.clone(),
                    bearer(&auth).map(Arc::from),
                    debug,
                );
                conn.acknowledge();
                protocol::ack()
            }
            // Queued behind the messages already waiting: once a client has the pong, it
            // has every message sent before its ping.
            Step::Ping(payload) => {
                if out_tx
                    .try_send(Out::Text(protocol::pong(payload.as_ref())))
                    .is_err()
                {
                    break Some(Closing::not_reading());
                }
                continue;
            }
            Step::Nothing => continue,
            Step::Refuse { id } => protocol::error(
                &id,
                &json!([{
                    "message": format!("at most {MAX_OPERATIONS} operations run at a time on one connection"),
                    "extensions": { "code": "LIMIT_EXCEEDED" },
                }]),
            ),
            Step::Stop { id } => {
                if let Some(task) = running.remove(&id) {
                    task.abort();
                }
                if let Some(sub) = live.remove(&id) {
                    state.live.leave(sub);
                }
                continue;
            }
            Step::Subscribe { id, operation } => {
                // The token is checked again: one that has expired ends the connection.
                let viewer = match authenticate(&state, &auth).await {
                    Ok(v) => v,
                    Err(refused) => break Some(refused.closing()),
                };
                let params = Params {
                    query: operation.query,
                    document_id: None,
                    operation_name: operation.operation_name,
                    variables: object(operation.variables),
                    extensions: object(operation.extensions),
                };
                let task = tokio::spawn(run(
                    state.clone(),
                    Incoming {
                        viewer,
                        client,
                        params,
                        asks: DebugAsks::default(),
                        queries_only: false,
                        request_error_status: StatusCode::OK,
                        started: Instant::now(),
                    },
                    id.clone(),
                    to.clone(),
                ));
                running.insert(id, task.abort_handle());
                continue;
            }
        };
        if sink.send(Message::Text(reply.into())).await.is_err() {
            break None;
        }
    };
    for task in running.values() {
        task.abort();
    }
    for sub in live.values() {
        state.live.leave(*sub);
    }
    if let Some(c) = closing {
        let frame = CloseFrame {
            code: c.code,
            reason: c.reason.into(),
        };
        let _ = sink.send(Message::Close(Some(frame))).await;
    }
}

/// Where an operation's messages go: one per connection, shared by its operations.
#[derive(Clone)]
struct Sender {
    out: mpsc::Sender<Out>,
    /// Told when a live query's message finds the queue full.
    not_reading: Arc<Notify>,
    /// The connection's access token, checked again before each live message.
    token: Option<Arc<str>>,
    /// How the live engine reaches this connection.
    deliver: Deliver,
    /// Live messages carry `extensions.refresh`.
    debug: bool,
}

impl Sender {
    fn new(
        out: mpsc::Sender<Out>,
        not_reading: Arc<Notify>,
        token: Option<Arc<str>>,
        debug: bool,
    ) -> Self {
        let deliver = Self::deliver(out.clone(), not_reading.clone());
        Sender {
            out,
            not_reading,
            token,
            deliver,
            debug,
        }
    }

    fn deliver(out: mpsc::Sender<Out>, not_reading: Arc<Notify>) -> Deliver {
        Arc::new(move |d: Delivery| {
            let sent = match d {
                Delivery::Next { op, body } => {
                    out.try_send(Out::Text(text(protocol::next(&op, &body))))
                }
                Delivery::Errors { op, errors } => out
                    .try_send(Out::Text(protocol::error(&op, &errors)))
                    .and_then(|()| out.try_send(Out::Done(op.to_string()))),
                Delivery::Expired(reason) => out.try_send(Out::Close(Closing::forbidden(reason))),
            };
            match sent {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    not_reading.notify_one();
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        })
    }
}

/// A message's bytes as the text frame they are (JSON is UTF-8).
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Runs one operation and hands its messages to the socket's writer; a subscription joins
/// the live engine, which sends its messages from then on.
async fn run(state: AppState, incoming: Incoming, id: String, to: Sender) {
    let client = incoming.client;
    let out = to.out.clone();
    let messages = match handler::handle(&state, incoming).await {
        Outcome::Subscription(mut operation) => {
            state.live.share_text(&mut operation);
            let sub = Arc::new(
                Subscriber::new(&id, operation, to.token.clone(), client, to.deliver.clone())
                    .debugged(to.debug),
            );
            let sub_id = sub.id;
            if state
                .live
                .join(sub, state.config.limits.live_max_subscriptions)
            {
                refresh::start(&state);
                let _ = out.send(Out::Joined(id, sub_id)).await;
                return;
            }
            vec![protocol::error(
                &id,
                &json!([{
                    "message": "this server follows as many live subscriptions as it may (EAGERQL_LIVE_MAX_SUBSCRIPTIONS); try again later",
                    "extensions": { "code": "LIMIT_EXCEEDED" },
                }]),
            )]
        }
        Outcome::Answered(answer) => {
            let body: Json = serde_json::from_slice(&answer.body).unwrap_or(Json::Null);
            if body.get("data").is_some() {
                vec![
                    text(protocol::next(&id, &answer.body)),
                    protocol::complete(&id),
                ]
            } else {
                // Request errors: the operation did not run.
                vec![protocol::error(&id, &body["errors"])]
            }
        }
        Outcome::Document(e) => vec![protocol::error(
            &id,
            &json!([{ "message": e.message(), "extensions": { "code": e.code() } }]),
        )],
        // Not asked for: every operation may run on a socket.
        Outcome::QueriesOnly => vec![protocol::error(
            &id,
            &json!([{ "message": "this operation may not run here", "extensions": { "code": "BAD_REQUEST" } }]),
        )],
    };
    for m in messages {
        if out.send(Out::Text(m)).await.is_err() {
            return;
        }
    }
    let _ = out.send(Out::Done(id)).await;
}

/// `connection_init`'s payload as the headers the access token is read from (its
/// `Authorization` entry, in any letter case).
fn init_headers(payload: Option<&Map<String, Json>>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value = payload.and_then(|p| {
        p.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .and_then(|(_, v)| v.as_str())
    });
    if let Some(v) = value.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(header::AUTHORIZATION, v);
    }
    // The debug header, as a client that cannot set a WebSocket's headers sends it.
    let debug = payload.and_then(|p| {
        p.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(DEBUG_HEADER))
            .and_then(|(_, v)| v.as_str())
    });
    if let Some(v) = debug.and_then(|v| HeaderValue::from_str(v).ok()) {
        headers.insert(DEBUG_HEADER, v);
    }
    headers
}

fn object(v: Option<Json>) -> Option<Map<String, Json>> {
    match v {
        Some(Json::Object(m)) => Some(m),
        _ => None,
    }
}
