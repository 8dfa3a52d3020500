//! The `graphql-transport-ws` protocol (the graphql-ws library's, spoken by Apollo Client's
//! `GraphQLWsLink`, urql's `subscriptionExchange` and GraphiQL): its messages and the rules of
//! one connection, as a state machine the WebSocket handler drives. It does no I/O: the
//! handler feeds it each text frame, acts on the [`Step`] it returns, and closes the socket
//! with the [`Closing`] it returns instead.
//!
//! Rules (the protocol's): `connection_init` first and once (a second one closes with 4429);
//! nothing may be subscribed before the server acknowledges it (4401); a `subscribe` whose id
//! is still active closes with 4409; a frame that is not a protocol message closes with 4400.
//! `ping` is answered with `pong`. Besides the protocol, a connection holds at most
//! `max_active` subscriptions: one more is refused with an `error` message, not a closure.

use std::collections::HashSet;

use serde_json::{Map, Value};

/// The WebSocket subprotocol.
pub const SUBPROTOCOL: &str = "graphql-transport-ws";

/// Why the server closes a connection: the close code and reason it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closing {
    /// The WebSocket close code.
    pub code: u16,
    /// Its reason (at most 123 bytes, as a close frame allows).
    pub reason: String,
}

impl Closing {
    fn new(code: u16, reason: impl Into<String>) -> Closing {
        let mut reason: String = reason.into();
        if reason.len() > 123 {
            let mut end = 123;
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
        }
        Closing { code, reason }
    }

    /// 4400: not a protocol message.
    pub fn bad_request(reason: impl Into<String>) -> Closing {
        Closing::new(4400, reason)
    }

    /// 4401: a subscription before the connection was acknowledged.
    pub fn unauthorized() -> Closing {
        Closing::new(4401, "Unauthorized")
    }

    /// 4403: the connection's credentials are refused (or have expired).
    pub fn forbidden(reason: impl Into<String>) -> Closing {
        Closing::new(4403, reason)
    }

    /// 1013 (try again later): the server cannot check the credentials now.
    pub fn try_again(reason: impl Into<String>) -> Closing {
        Closing::new(1013, reason)
    }

    /// 4408: no `connection_init` in time.
    pub fn init_timeout() -> Closing {
        Closing::new(4408, "Connection initialisation timeout")
    }

    /// 4409: a subscription id still in use.
    pub fn subscriber_exists(id: &str) -> Closing {
        Closing::new(4409, format!("Subscriber for {id} already exists"))
    }

    /// 4429: a second `connection_init`.
    pub fn too_many_inits() -> Closing {
        Closing::new(4429, "Too many initialisation requests")
    }

    /// 1008: the client does not read its messages (its queue is full): it is disconnected
    /// rather than let the server's memory grow.
    pub fn not_reading() -> Closing {
        Closing::new(1008, "the client does not read its messages")
    }

    /// 1001: the server is shutting down.
    pub fn going_away() -> Closing {
        Closing::new(1001, "the server is shutting down")
    }
}

/// An operation a `subscribe` message asks for.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// The document (absent for a persisted query named in `extensions`).
    pub query: Option<String>,
    /// `operationName`.
    pub operation_name: Option<String>,
    /// `variables`.
    pub variables: Option<Value>,
    /// `extensions` (persisted queries).
    pub extensions: Option<Value>,
}

/// What the handler does with a client's frame.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// `connection_init`: authenticate its payload (`{"Authorization": "Bearer ..."}`), then
    /// acknowledge with [`Connection::acknowledge`] and [`ack`], or close with 4403.
    Init(Option<Map<String, Value>>),
    /// `ping`: answer with [`pong`].
    Ping(Option<Value>),
    /// Nothing to do (a `pong`, or a `complete` of an id no longer active).
    Nothing,
    /// Start operation `id`.
    Subscribe {
        /// The client's id for it.
        id: String,
        /// What it asks.
        operation: Operation,
    },
    /// Refuse operation `id` with an [`error`] message: the connection holds its most.
    Refuse {
        /// The client's id for it.
        id: String,
    },
    /// Stop operation `id` (the client completed it).
    Stop {
        /// The client's id for it.
        id: String,
    },
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Connection {
    init_seen: bool,
    acknowledged: bool,
    active: HashSet<String>,
    max_active: usize,
}

impl Connection {
    /// A new connection holding at most `max_active` subscriptions at a time.
    pub fn new(max_active: usize) -> Connection {
        Connection {
            init_seen: false,
            acknowledged: false,
            active: HashSet::new(),
            max_active,
        }
    }

    /// Whether `connection_init` was acknowledged.
    pub fn acknowledged(&self) -> bool {
        self.acknowledged
    }

    /// Marks the connection acknowledged (send [`ack`]).
    pub fn acknowledge(&mut self) {
        self.acknowledged = true;
    }

    /// The operations running now.
    pub fn active(&self) -> usize {
        self.active.len()
    }

    /// The server finished operation `id` (it sent `complete` or `error`): the id is free.
    pub fn finished(&mut self, id: &str) {
        self.active.remove(id);
    }

    /// Reads one text frame.
    pub fn receive(&mut self, text: &str) -> Result<Step, Closing> {
        let Ok(Value::Object(mut message)) = serde_json::from_str::<Value>(text) else {
            return Err(Closing::bad_request("Invalid message: not a JSON object"));
        };
        let Some(Value::String(kind)) = message.remove("type") else {
            return Err(Closing::bad_request("Invalid message: no type"));
        };
        let payload = message.remove("payload").filter(|p| !p.is_null());
        match kind.as_str() {
            "connection_init" => {
                if self.init_seen {
                    return Err(Closing::too_many_inits());
                }
                self.init_seen = true;
                match payload {
                    None => Ok(Step::Init(None)),
                    Some(Value::Object(p)) => Ok(Step::Init(Some(p))),
                    Some(_) => Err(Closing::bad_request(
                        "Invalid message: a connection_init payload is an object",
                    )),
                }
            }
            "ping" => Ok(Step::Ping(payload)),
            "pong" => Ok(Step::Nothing),
            "subscribe" => self.subscribe(id_of(&mut message)?, payload),
            "complete" => {
                let id = id_of(&mut message)?;
                Ok(if self.active.remove(&id) {
                    Step::Stop { id }
                } else {
                    Step::Nothing
                })
            }
            other => Err(Closing::bad_request(format!(
                "Invalid message: unknown type {other:?}"
            ))),
        }
    }

    fn subscribe(&mut self, id: String, payload: Option<Value>) -> Result<Step, Closing> {
        if !self.acknowledged {
            return Err(Closing::unauthorized());
        }
        let Some(Value::Object(mut p)) = payload else {
            return Err(Closing::bad_request(
                "Invalid message: a subscribe payload is an object",
            ));
        };
        let text = |v: Option<Value>, what: &str| match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Closing::bad_request(format!(
                "Invalid message: {what} is a string"
            ))),
        };
        let object = |v: Option<Value>, what: &str| match v {
            None | Some(Value::Null) => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(_) => Err(Closing::bad_request(format!(
                "Invalid message: {what} is an object"
            ))),
        };
        let operation = Operation {
            query: text(p.remove("query"), "query")?,
            operation_name: text(p.remove("operationName"), "operationName")?,
            variables: object(p.remove("variables"), "variables")?,
            extensions: object(p.remove("extensions"), "extensions")?,
        };
        if operation.query.is_none() && operation.extensions.is_none() {
            return Err(Closing::bad_request("Invalid message: no query"));
        }
        if self.active.contains(&id) {
            return Err(Closing::subscriber_exists(&id));
        }
        if self.active.len() >= self.max_active {
            return Ok(Step::Refuse { id });
        }
        self.active.insert(id.clone());
        Ok(Step::Subscribe { id, operation })
    }
}

fn id_of(message: &mut Map<String, Value>) -> Result<String, Closing> {
    match message.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id),
        _ => Err(Closing::bad_request("Invalid message: no id")),
    }
}

/// `connection_ack`.
pub fn ack() -> String {
    r#"{"type":"connection_ack"}"#.to_owned()
}

/// `pong`, echoing a ping's payload.
pub fn pong(payload: Option<&Value>) -> String {
    match payload {
        Some(p) => serde_json::json!({ "type": "pong", "payload": p }).to_string(),
        None => r#"{"type":"pong"}"#.to_owned(),
    }
}

/// `next` of operation `id`, with a result already written as JSON text (the server renders
/// its answers itself; they are spliced in, not parsed again).
pub fn next(id: &str, result: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(result.len() + id.len() + 40);
    out.extend_from_slice(br#"{"type":"next","id":"#);
    out.extend_from_slice(Value::from(id).to_string().as_bytes());
    out.extend_from_slice(br#","payload":"#);
    out.extend_from_slice(result);
    out.push(b'}');
    out
}

/// `error` of operation `id`: the GraphQL errors (a JSON array) that stopped it before it ran.
pub fn error(id: &str, errors: &Value) -> String {
    serde_json::json!({ "type": "error", "id": id, "payload": errors }).to_string()
}

/// `complete` of operation `id`.
pub fn complete(id: &str) -> String {
    serde_json::json!({ "type": "complete", "id": id }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked() -> Connection {
        let mut c = Connection::new(2);
        assert_eq!(
            c.receive(r#"{"type":"connection_init"}"#),
            Ok(Step::Init(None))
        );
        c.acknowledge();
        c
    }

    #[test]
    fn init_comes_once_and_carries_an_object() {
        let mut c = Connection::new(2);
        let init = r#"{"type":"connection_init","payload":{"Authorization":"Bearer t"}}"#;
        let Ok(Step::Init(Some(p))) = c.receive(init) else {
            panic!("an init")
        };
        assert_eq!(p["Authorization"], "Bearer t");
        assert_eq!(c.receive(init).map_err(|e| e.code), Err(4429));
        let mut c = Connection::new(2);
        let bad = c.receive(r#"{"type":"connection_init","payload":"x"}"#);
        assert_eq!(bad.map_err(|e| e.code), Err(4400));
    }

    #[test]
    fn nothing_is_subscribed_before_the_acknowledgement() {
        let mut c = Connection::new(2);
        let sub = r#"{"type":"subscribe","id":"1","payload":{"query":"{ __typename }"}}"#;
        assert_eq!(c.receive(sub), Err(Closing::unauthorized()));
        c.receive(r#"{"type":"connection_init"}"#).expect("init");
        assert_eq!(c.receive(sub).map_err(|e| e.code), Err(4401));
    }

    #[test]
    fn ids_are_unique_while_active_and_free_again_after() {
        let mut c = acked();
        let sub = r#"{"type":"subscribe","id":"a","payload":{"query":"{ me { id } }","variables":{"n":1},"operationName":null}}"#;
        let Ok(Step::Subscribe { id, operation }) = c.receive(sub) else {
            panic!("a subscription")
        };
        assert_eq!(id, "a");
        assert_eq!(operation.query.as_deref(), Some("{ me { id } }"));
        assert_eq!(operation.variables, Some(serde_json::json!({ "n": 1 })));
        assert_eq!(
            c.receive(sub),
            Err(Closing::subscriber_exists("a")),
            "a second subscriber with one id"
        );
        assert_eq!(
            c.receive(r#"{"type":"complete","id":"a"}"#),
            Ok(Step::Stop { id: "a".into() })
        );
        assert_eq!(
            c.receive(r#"{"type":"complete","id":"a"}"#),
            Ok(Step::Nothing)
        );
        assert!(matches!(c.receive(sub), Ok(Step::Subscribe { .. })));
        c.finished("a");
        assert_eq!(c.active(), 0);
    }

    #[test]
    fn a_connection_holds_its_most_and_refuses_one_more() {
        let mut c = acked();
        for id in ["1", "2"] {
            let sub = format!(
                r#"{{"type":"subscribe","id":"{id}","payload":{{"query":"{{ __typename }}"}}}}"#
            );
            assert!(matches!(c.receive(&sub), Ok(Step::Subscribe { .. })));
        }
        let third = r#"{"type":"subscribe","id":"3","payload":{"query":"{ __typename }"}}"#;
        assert_eq!(c.receive(third), Ok(Step::Refuse { id: "3".into() }));
        assert_eq!(c.active(), 2);
    }

    #[test]
    fn anything_else_is_a_bad_request() {
        let mut c = acked();
        for bad in [
            "not json",
            "[1]",
            r#"{"id":"1"}"#,
            r#"{"type":"start","id":"1"}"#,
            r#"{"type":"subscribe","payload":{"query":"{ a }"}}"#,
            r#"{"type":"subscribe","id":"","payload":{"query":"{ a }"}}"#,
            r#"{"type":"subscribe","id":"1"}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":1}}"#,
            r#"{"type":"subscribe","id":"1","payload":{"query":"{ a }","variables":[1]}}"#,
            r#"{"type":"complete"}"#,
        ] {
            assert_eq!(c.receive(bad).map_err(|e| e.code), Err(4400), "{bad}");
        }
    }

    #[test]
    fn pings_are_answered_and_messages_are_written_as_the_protocol_says() {
        let mut c = Connection::new(1);
        let p = serde_json::json!({ "t": 1 });
        assert_eq!(
            c.receive(r#"{"type":"ping","payload":{"t":1}}"#),
            Ok(Step::Ping(Some(p.clone())))
        );
        assert_eq!(c.receive(r#"{"type":"pong"}"#), Ok(Step::Nothing));
        let parse = |s: &[u8]| serde_json::from_slice::<Value>(s).expect("JSON");
        assert_eq!(parse(pong(Some(&p)).as_bytes())["payload"], p);
        assert_eq!(parse(ack().as_bytes())["type"], "connection_ack");
        let n = parse(&next("q\"1", br#"{"data":{"a":1}}"#));
        assert_eq!(
            n,
            serde_json::json!({ "type": "next", "id": "q\"1", "payload": { "data": { "a": 1 } } })
        );
        assert_eq!(parse(complete("x").as_bytes())["id"], "x");
        let e = parse(error("x", &serde_json::json!([{ "message": "m" }])).as_bytes());
        assert_eq!(e["payload"][0]["message"], "m");
        let long = Closing::forbidden("é".repeat(100));
        assert!(long.reason.len() <= 123 && long.code == 4403);
        assert_eq!(Closing::init_timeout().code, 4408);
        assert_eq!(Closing::going_away().code, 1001);
    }
}
