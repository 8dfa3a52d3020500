//! The order life cycle as an event stream (`Subscription.orderEvents`): unlike the live
//! queries, each message is one new event, in commit order, and nothing is sent for a change
//! that adds no event the subscriber may see.
//!
//! The stream runs through the same machinery as the live queries: its operation is rewritten
//! once, at subscribe time, into a `Query` on `orderEventsConnection` (same arguments and
//! selection, a keyset page after the subscriber's position), so the events a viewer sees
//! are the rows the query twin shows them (owner-only rules in the statements), and the
//! subscribers of one operation are refreshed together like any group, whatever their number.
//!
//! A subscriber's position is a connection cursor. Without `after`, the first refresh only
//! finds where the stream stands (the last event the subscriber may see now) and sends
//! nothing; with `after: N` it sends every later event first (a client resuming after a
//! reconnection). Event ids follow commit order (see migration `0010_order_events`), so an
//! event committed later can never sort before a position already passed.

use std::sync::Mutex;

use apollo_compiler::ast::{self, Argument, Definition, Selection, Type, VariableDefinition};
use apollo_compiler::response::JsonMap;
use apollo_compiler::{Name, Node};
use serde_json::Value as Json;

use crate::entities::Entity;

/// The `Subscription` field that is an event stream.
pub const FIELD: &str = "orderEvents";

/// The `Query` field it reads.
const CONNECTION: &str = "orderEventsConnection";

/// Events one refresh reads per subscriber and round.
pub const PAGE: i64 = 100;

/// Rounds of [`PAGE`] events one set of changes may send a subscriber (a resume from far
/// back continues at the next set of changes).
pub const ROUNDS: usize = 4;

/// The variables the rewritten operation adds.
const FIRST: &str = "eagerqlStreamFirst";
const LAST: &str = "eagerqlStreamLast";
const AFTER: &str = "eagerqlStreamAfter";

/// What the engine keeps of a stream subscription.
#[derive(Debug)]
pub struct Spec {
    /// The response key of the field (its alias, or `orderEvents`).
    key: String,
    /// Where the subscriber stands.
    position: Mutex<Position>,
}

/// Where a subscriber stands in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Position {
    /// Not known yet: the next refresh finds the last event the subscriber may see.
    Unknown,
    /// After this cursor (`None`: before the first event).
    After(Option<String>),
}

/// What one refresh of a stream subscriber gave.
#[derive(Debug)]
pub enum Page {
    /// The new events, each a message body; `more`: further events wait.
    Events {
        /// One JSON body per event, in order.
        bodies: Vec<Vec<u8>>,
        /// The page was full.
        more: bool,
    },
    /// The answer carried errors (a JSON array): the stream ends with them.
    Errors(Json),
}

/// Rewrites `query`'s operation `operation_name` when it is a subscription to the event
/// stream: `Ok(None)` when it is not; `Err`: why it cannot run (a client error).
pub fn rewrite(
    query: &str,
    operation_name: Option<&str>,
    variables: &JsonMap,
) -> Result<Option<(String, Spec)>, String> {
    let Ok(mut doc) = ast::Document::parse(query, "subscription.graphql") else {
        return Ok(None);
    };
    let fragments_select_it = doc.definitions.iter().any(|d| {
        matches!(d, Definition::FragmentDefinition(f)
            if f.type_condition == "Subscription" && selects(&f.selection_set))
    });
    let Some(op) = doc.definitions.iter_mut().find_map(|d| match d {
        Definition::OperationDefinition(op)
            if operation_name.is_none_or(|n| op.name.as_deref() == Some(n)) =>
        {
            Some(op)
        }
        _ => None,
    }) else {
        return Ok(None);
    };
    if op.operation_type != ast::OperationType::Subscription {
        return Ok(None);
    }
    let direct = op.selection_set.iter().any(is_stream_field);
    let through_fragment = op
        .selection_set
        .iter()
        .any(|s| matches!(s, Selection::InlineFragment(f) if selects(&f.selection_set)))
        || (fragments_select_it
            && op
                .selection_set
                .iter()
                .any(|s| matches!(s, Selection::FragmentSpread(_))));
    if through_fragment {
        return Err(format!(
            "`{FIELD}` must be selected directly in the subscription, not through a fragment"
        ));
    }
    if !direct {
        return Ok(None);
    }
    if op
        .variables
        .iter()
        .any(|v| [FIRST, LAST, AFTER].contains(&v.name.as_str()))
    {
        return Err(format!(
            "the variables ${FIRST}, ${LAST} and ${AFTER} are reserved in a `{FIELD}` subscription"
        ));
    }
    let op = op.make_mut();
    op.operation_type = ast::OperationType::Query;
    for (name, ty) in [(FIRST, "Int"), (LAST, "Int"), (AFTER, "String")] {
        op.variables.push(Node::new(VariableDefinition {
            name: name_of(name),
            ty: Node::new(Type::Named(name_of(ty))),
            default_value: None,
            directives: ast::DirectiveList::default(),
        }));
    }
    let mut start = Position::Unknown;
    let mut after_var = None;
    for sel in &mut op.selection_set {
        let Selection::Field(field) = sel else {
            continue;
        };
        if field.name != FIELD {
            continue;
        }
        let field = field.make_mut();
        let key = field.alias.clone().unwrap_or_else(|| field.name.clone());
        field.alias = Some(key.clone());
        field.name = name_of(CONNECTION);
        let mut args = Vec::new();
        for arg in field.arguments.drain(..) {
            if arg.name == "after" {
                if let ast::Value::Variable(v) = &*arg.value {
                    after_var = Some(v.clone());
                }
                start = Position::After(
                    resolve(&arg.value, variables)?
                        .map(|id| crate::planner::cursor::of_id(Entity::OrderEvent, id)),
                );
            } else {
                args.push(arg);
            }
        }
        for (name, var) in [("first", FIRST), ("last", LAST), ("after", AFTER)] {
            args.push(Node::new(Argument {
                name: name_of(name),
                value: Node::new(ast::Value::Variable(name_of(var))),
            }));
        }
        field.arguments = args;
        let events = std::mem::take(&mut field.selection_set);
        field.selection_set = vec![
            leaf_with("nodes", events),
            leaf_with(
                "pageInfo",
                vec![
                    leaf_with("endCursor", vec![]),
                    leaf_with("hasNextPage", vec![]),
                ],
            ),
        ];
        let spec = Spec {
            key: key.to_string(),
            position: Mutex::new(start),
        };
        if let Some(var) = after_var {
            drop_if_unused(&mut doc, operation_name, &var);
        }
        return Ok(Some((doc.to_string(), spec)));
    }
    Ok(None)
}

/// Removes the definition of `$var` from the operation when nothing refers to it any more
/// (it was the stream's `after`, now a position of the engine's).
fn drop_if_unused(doc: &mut ast::Document, operation_name: Option<&str>, var: &Name) {
    let text = doc.to_string();
    let token = format!("${var}");
    let uses = text
        .match_indices(&token)
        .filter(|(at, _)| {
            !text[at + token.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        })
        .count();
    // One is the definition itself.
    if uses > 1 {
        return;
    }
    for d in &mut doc.definitions {
        if let Definition::OperationDefinition(op) = d
            && operation_name.is_none_or(|n| op.name.as_deref() == Some(n))
        {
            op.make_mut().variables.retain(|v| v.name != *var);
        }
    }
}

fn name_of(s: &str) -> Name {
    Name::new(s).unwrap_or_else(|_| unreachable!("a valid GraphQL name"))
}

fn leaf_with(name: &str, selection_set: Vec<Selection>) -> Selection {
    Selection::Field(Node::new(ast::Field {
        alias: None,
        name: name_of(name),
        arguments: Vec::new(),
        directives: ast::DirectiveList::default(),
        selection_set,
    }))
}

fn is_stream_field(s: &Selection) -> bool {
    matches!(s, Selection::Field(f) if f.name == FIELD)
}

/// Whether a root selection set selects the stream field, directly or in an inline fragment.
fn selects(set: &[Selection]) -> bool {
    set.iter().any(|s| match s {
        Selection::Field(f) => f.name == FIELD,
        Selection::InlineFragment(f) => selects(&f.selection_set),
        Selection::FragmentSpread(_) => false,
    })
}

/// The event id an `after` argument names (`None`: null or absent).
fn resolve(value: &ast::Value, variables: &JsonMap) -> Result<Option<i64>, String> {
    let bad = || "`after` must be an event id".to_owned();
    let id = |s: &str| s.parse::<i64>().map(Some).map_err(|_| bad());
    match value {
        ast::Value::Null => Ok(None),
        ast::Value::String(s) => id(s),
        ast::Value::Int(i) => id(i.as_str()),
        ast::Value::Variable(name) => match variables.get(name.as_str()) {
            None | Some(apollo_compiler::response::JsonValue::Null) => Ok(None),
            Some(apollo_compiler::response::JsonValue::String(s)) => id(s.as_str()),
            Some(apollo_compiler::response::JsonValue::Number(n)) => {
                n.as_i64().map(Some).ok_or_else(bad)
            }
            Some(_) => Err(bad()),
        },
        _ => Err(bad()),
    }
}

impl Spec {
    fn position(&self) -> Position {
        self.position
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The operation's variables for the next refresh: the subscriber's own, and the page
    /// after its position (or, while that is unknown, the last event it may see).
    pub fn variables(&self, own: &JsonMap) -> JsonMap {
        let mut vars = own.clone();
        let (first, last, after) = match self.position() {
            Position::Unknown => (None, Some(1), None),
            Position::After(cursor) => (Some(PAGE), None, cursor),
        };
        let num = |n: Option<i64>| n.map_or(apollo_compiler::response::JsonValue::Null, Into::into);
        vars.insert(FIRST, num(first));
        vars.insert(LAST, num(last));
        vars.insert(
            AFTER,
            after.map_or(apollo_compiler::response::JsonValue::Null, |c| {
                c.as_str().into()
            }),
        );
        vars
    }

    /// Reads a refresh's answer `body`: the events to send, and the subscriber's new
    /// position.
    pub fn page(&self, body: &[u8]) -> Page {
        let mut answer: Json = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Page::Errors(serde_json::json!([{ "message": e.to_string() }])),
        };
        if let Some(errors) = answer.get("errors").filter(|e| !e.is_null()) {
            return Page::Errors(errors.clone());
        }
        let mut conn = answer
            .get_mut("data")
            .and_then(|d| d.get_mut(self.key.as_str()))
            .map(Json::take)
            .unwrap_or(Json::Null);
        let end = conn
            .pointer("/pageInfo/endCursor")
            .and_then(Json::as_str)
            .map(str::to_owned);
        let more = conn.pointer("/pageInfo/hasNextPage") == Some(&Json::Bool(true));
        let nodes = match conn.get_mut("nodes").map(Json::take) {
            Some(Json::Array(nodes)) => nodes,
            _ => Vec::new(),
        };
        let mut position = self.position.lock().unwrap_or_else(|e| e.into_inner());
        if *position == Position::Unknown {
            // Only where the stream stands: nothing is sent.
            *position = Position::After(end);
            return Page::Events {
                bodies: Vec::new(),
                more: false,
            };
        }
        if end.is_some() {
            *position = Position::After(end);
        }
        let bodies = nodes
            .into_iter()
            .map(|node| {
                let mut data = serde_json::Map::new();
                data.insert(self.key.clone(), node);
                serde_json::to_vec(&serde_json::json!({ "data": data })).unwrap_or_default()
            })
            .collect();
        Page::Events { bodies, more }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: serde_json::Value) -> JsonMap {
        crate::graphql::operation::variables(v.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn the_stream_becomes_a_page_of_its_connection() {
        let (text, spec) = rewrite(
            "subscription S($after: ID, $k: OrderEventKind) { e: orderEvents(after: $after, \
             kind: $k) { id kind } }",
            None,
            &vars(serde_json::json!({ "after": "7" })),
        )
        .expect("valid")
        .expect("a stream");
        assert!(text.starts_with("query S($k: OrderEventKind, $eagerqlStreamFirst: Int"));
        assert!(!text.contains("$after"), "{text}");
        assert!(
            text.contains("e: orderEventsConnection(kind: $k, first: $eagerqlStreamFirst"),
            "{text}"
        );
        assert!(text.contains("nodes {"), "{text}");
        let own = vars(serde_json::json!({ "k": "CREATED" }));
        let v = spec.variables(&own);
        assert_eq!(v.get("eagerqlStreamFirst"), Some(&PAGE.into()));
        assert_eq!(
            v.get("eagerqlStreamAfter").and_then(|c| c.as_str()),
            Some(crate::planner::cursor::of_id(Entity::OrderEvent, 7).as_str())
        );
        // A page: one body per event, under the field's response key.
        let page = spec.page(
            br#"{"data":{"e":{"nodes":[{"id":"8","kind":"CREATED"},{"id":"9","kind":"CANCELLED"}],"pageInfo":{"endCursor":"c9","hasNextPage":false}}}}"#,
        );
        let Page::Events { bodies, more } = page else {
            panic!("events")
        };
        assert!(!more);
        assert_eq!(
            bodies[1],
            br#"{"data":{"e":{"id":"9","kind":"CANCELLED"}}}"#.to_vec()
        );
        assert_eq!(
            spec.variables(&own).get("eagerqlStreamAfter"),
            Some(&"c9".into())
        );
    }

    #[test]
    fn without_after_the_first_refresh_finds_the_position_and_sends_nothing() {
        let (_, spec) = rewrite("subscription { orderEvents { id } }", None, &JsonMap::new())
            .expect("valid")
            .expect("a stream");
        let v = spec.variables(&JsonMap::new());
        assert_eq!(v.get("eagerqlStreamLast"), Some(&1.into()));
        let page = spec.page(
            br#"{"data":{"orderEvents":{"nodes":[{"id":"3"}],"pageInfo":{"endCursor":"c3","hasNextPage":false}}}}"#,
        );
        assert!(matches!(page, Page::Events { bodies, .. } if bodies.is_empty()));
        assert_eq!(
            spec.variables(&JsonMap::new()).get("eagerqlStreamAfter"),
            Some(&"c3".into())
        );
    }

    #[test]
    fn live_queries_pass_and_fragments_around_the_stream_are_refused() {
        let none = rewrite("subscription { orders { id } }", None, &JsonMap::new());
        assert!(matches!(none, Ok(None)));
        let refused = rewrite(
            "subscription { ... on Subscription { orderEvents { id } } }",
            None,
            &JsonMap::new(),
        );
        assert!(refused.is_err());
    }
}
