//! GraphQL over Server-Sent Events on `/graphql`: graphql-sse's "distinct connections" mode,
//! for clients and proxies without WebSockets. A request (POST, or GET for queries and
//! subscriptions) that accepts `text/event-stream` is answered with an event stream: a query
//! or a mutation is one `next` event and `complete`; a subscription is a `next` event with
//! its first answer and one more each time a committed write changes it, until the client
//! closes the stream. Errors found before execution are a `next` event with the errors, then
//! `complete`, as the protocol asks. The access token is the usual `Authorization` header,
//! checked again before every message: once it has expired, the stream ends with an
//! `UNAUTHENTICATED` error. A comment is sent every [`KEEPALIVE`] so that proxies keep an idle
//! stream open.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};

use crate::graphql::handler::{self, Incoming, Outcome};
use crate::live::{Deliver, Delivery, Subscriber, refresh};
use crate::server::state::AppState;

/// How often an idle stream is sent a comment.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Events waiting to be written to one stream; a live message that finds it full ends the
/// stream (the client does not read), never grows the server's memory.
const QUEUE: usize = 64;

/// A `next` event carrying a JSON result.
fn next(result: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(result.len() + 20);
    out.extend_from_slice(b"event: next\ndata: ");
    out.extend_from_slice(result);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The `complete` event.
fn complete() -> Bytes {
    Bytes::from_static(b"event: complete\ndata: \n\n")
}

/// A result holding only `errors`.
fn errors(errors: &Json) -> Vec<u8> {
    json!({ "errors": errors }).to_string().into_bytes()
}

fn error(message: &str, code: &str) -> Vec<u8> {
    errors(&json!([{ "message": message, "extensions": { "code": code } }]))
}

/// An event stream's response, its events coming from `rx` (keepalive comments between), and
/// `on_end` run when it ends or the client goes.
fn response(
    rx: mpsc::Receiver<Bytes>,
    mut shutdown: Option<watch::Receiver<bool>>,
    on_end: impl FnOnce() + Send + 'static,
) -> Response {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    let mut keepalive =
        tokio::time::interval_at(tokio::time::Instant::now() + KEEPALIVE, KEEPALIVE);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ending = async move {
        match shutdown.as_mut() {
            Some(s) => drop(s.wait_for(|closing| *closing).await.is_ok()),
            None => std::future::pending().await,
        }
    };
    let state = (rx, keepalive, Box::pin(ending), Guard(Some(on_end)));
    let stream = futures_util::stream::unfold(
        state,
        |(mut rx, mut keepalive, mut ending, guard)| async move {
            let item = tokio::select! {
                event = rx.recv() => event?,
                _ = keepalive.tick() => Bytes::from_static(b":\n\n"),
                // The server is shutting down: the stream ends (a client reconnects).
                () = &mut ending => return None,
            };
            Some((Ok::<_, Infallible>(item), (rx, keepalive, ending, guard)))
        },
    );
    let mut resp = (StatusCode::OK, Body::from_stream(stream)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Proxies such as nginx would otherwise hold events back in their buffers.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

/// A response of whole events, then the end of the stream.
fn finished(events: Vec<Bytes>) -> Response {
    let (tx, rx) = mpsc::channel(events.len().max(1));
    for e in events {
        let _ = tx.try_send(e);
    }
    drop(tx);
    response(rx, None, || {})
}

/// Serves a GraphQL request as an event stream (see the module documentation); `token`: its
/// bearer token, checked again before each live message.
pub(super) async fn serve(state: AppState, incoming: Incoming, token: Option<String>) -> Response {
    let client = incoming.client;
    let debug = (incoming.asks.sql || incoming.asks.plan) && state.config.debug_sql_allowed();
    match handler::handle(&state, incoming).await {
        Outcome::Answered(answer) => finished(vec![next(&answer.body), complete()]),
        Outcome::Document(e) => finished(vec![next(&error(&e.message(), e.code())), complete()]),
        Outcome::QueriesOnly => finished(vec![
            next(&error(
                "only queries and subscriptions may be sent with GET; send mutations with POST",
                "METHOD_NOT_ALLOWED",
            )),
            complete(),
        ]),
        Outcome::Subscription(mut operation) => {
            state.live.share_text(&mut operation);
            let (tx, rx) = mpsc::channel(QUEUE);
            let ended = Arc::new(AtomicBool::new(false));
            let sub = Arc::new(
                Subscriber::new(
                    "sse",
                    operation,
                    token.map(Arc::from),
                    client,
                    deliver(tx, ended),
                )
                .debugged(debug),
            );
            let id = sub.id;
            if !state
                .live
                .join(sub, state.config.limits.live_max_subscriptions)
            {
                return finished(vec![
                    next(&error(
                        "this server follows as many live subscriptions as it may \
                         (EAGERQL_LIVE_MAX_SUBSCRIPTIONS); try again later",
                        "LIMIT_EXCEEDED",
                    )),
                    complete(),
                ]);
            }
            refresh::start(&state);
            let live = state.live.clone();
            response(rx, Some(state.closing.subscribe()), move || live.leave(id))
        }
    }
}

/// How the live engine reaches a stream: each delivery becomes events; a full queue, an
/// error or an expired token ends the stream.
fn deliver(tx: mpsc::Sender<Bytes>, ended: Arc<AtomicBool>) -> Deliver {
    Arc::new(move |d: Delivery| {
        if ended.load(Ordering::Acquire) {
            return false;
        }
        let (events, last) = match d {
            Delivery::Next { body, .. } => (vec![next(&body)], false),
            Delivery::Errors { errors: e, .. } => (vec![next(&errors(&e)), complete()], true),
            Delivery::Expired(reason) => (
                vec![next(&error(&reason, "UNAUTHENTICATED")), complete()],
                true,
            ),
        };
        for e in events {
            if tx.try_send(e).is_err() {
                ended.store(true, Ordering::Release);
                return false;
            }
        }
        if last {
            ended.store(true, Ordering::Release);
        }
        !last
    })
}
