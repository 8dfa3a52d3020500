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

/// Events one refresh reads per subscriber, at most (and at most the configured page size):
/// fewer than a transport's send queue holds (an event stream's 64), so that a page never
/// finds the queue full of its own messages. A full page is followed by another refresh of
/// the subscriber soon after (see [`super::Registry::follow_up`]), once its transport has
/// written the page.
pub const PAGE: i64 = 32;

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
    let fragments: std::collections::HashMap<Name, Vec<Selection>> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::FragmentDefinition(f) => Some((f.name.clone(), f.selection_set.clone())),
            _ => None,
        })
        .collect();
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
        .filter(|s| !matches!(s, Selection::Field(_)))
        .any(|s| selects(std::slice::from_ref(s), &fragments, 0));
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
    let defaults: std::collections::HashMap<Name, Node<ast::Value>> = op
        .variables
        .iter()
        .filter_map(|v| Some((v.name.clone(), v.default_value.clone()?)))
        .collect();
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
    let mut key = None;
    for sel in &mut op.selection_set {
        let Selection::Field(field) = sel else {
            continue;
        };
        if field.name != FIELD {
            continue;
        }
        let field = field.make_mut();
        let k = field.alias.clone().unwrap_or_else(|| field.name.clone());
        field.alias = Some(k.clone());
        field.name = name_of(CONNECTION);
        let mut args = Vec::new();
        for arg in field.arguments.drain(..) {
            if arg.name == "after" {
                if let ast::Value::Variable(v) = &*arg.value {
                    after_var = Some(v.clone());
                }
                // Null or absent: from now on, as without `after`.
                if let Some(id) = resolve(&arg.value, variables, &defaults)? {
                    start = Position::After(Some(crate::planner::cursor::of_id(
                        Entity::OrderEvent,
                        id,
                    )));
                }
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
        key = Some(k);
        break;
    }
    let Some(key) = key else {
        return Ok(None);
    };
    // `after` is now the engine's position: its variable goes when nothing else uses it.
    if let Some(var) = after_var
        && !uses(&op.selection_set, &fragments, &var, 0)
    {
        op.variables.retain(|v| v.name != var);
    }
    let spec = Spec {
        key: key.to_string(),
        position: Mutex::new(start),
    };
    Ok(Some((doc.to_string(), spec)))
}

/// Fragments nest at most this deep here (validation refuses cycles; this bounds the walk).
const MAX_DEPTH: usize = 32;

/// Whether `set` (with the fragments it spreads) refers to the variable `var`.
fn uses(
    set: &[Selection],
    fragments: &std::collections::HashMap<Name, Vec<Selection>>,
    var: &Name,
    depth: usize,
) -> bool {
    fn in_value(v: &ast::Value, var: &Name) -> bool {
        match v {
            ast::Value::Variable(n) => n == var,
            ast::Value::List(items) => items.iter().any(|i| in_value(i, var)),
            ast::Value::Object(fields) => fields.iter().any(|(_, v)| in_value(v, var)),
            _ => false,
        }
    }
    let in_directives = |d: &ast::DirectiveList| {
        d.iter()
            .any(|d| d.arguments.iter().any(|a| in_value(&a.value, var)))
    };
    depth <= MAX_DEPTH
        && set.iter().any(|s| match s {
            Selection::Field(f) => {
                f.arguments.iter().any(|a| in_value(&a.value, var))
                    || in_directives(&f.directives)
                    || uses(&f.selection_set, fragments, var, depth + 1)
            }
            Selection::InlineFragment(f) => {
                in_directives(&f.directives) || uses(&f.selection_set, fragments, var, depth + 1)
            }
            Selection::FragmentSpread(f) => {
                in_directives(&f.directives)
                    || fragments
                        .get(&f.fragment_name)
                        .is_some_and(|set| uses(set, fragments, var, depth + 1))
            }
        })
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

/// Whether a root selection set selects the stream field, directly or in a fragment.
fn selects(
    set: &[Selection],
    fragments: &std::collections::HashMap<Name, Vec<Selection>>,
    depth: usize,
) -> bool {
    depth <= MAX_DEPTH
        && set.iter().any(|s| match s {
            Selection::Field(f) => f.name == FIELD,
            Selection::InlineFragment(f) => selects(&f.selection_set, fragments, depth + 1),
            Selection::FragmentSpread(f) => fragments
                .get(&f.fragment_name)
                .is_some_and(|set| selects(set, fragments, depth + 1)),
        })
}

/// The event id an `after` argument names (`None`: null or absent); a variable the request
/// does not give takes its definition's default.
fn resolve(
    value: &ast::Value,
    variables: &JsonMap,
    defaults: &std::collections::HashMap<Name, Node<ast::Value>>,
) -> Result<Option<i64>, String> {
    let bad = || "`after` must be an event id".to_owned();
    let id = |s: &str| s.parse::<i64>().map(Some).map_err(|_| bad());
    match value {
        ast::Value::Null => Ok(None),
        ast::Value::String(s) => id(s),
        ast::Value::Int(i) => id(i.as_str()),
        ast::Value::Variable(name) => match variables.get(name.as_str()) {
            None => match defaults.get(name) {
                Some(default) => resolve(default, variables, &Default::default()),
                None => Ok(None),
            },
            Some(apollo_compiler::response::JsonValue::Null) => Ok(None),
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
    /// `page`: the events to read at most.
    pub fn variables(&self, own: &JsonMap, page: i64) -> JsonMap {
        let mut vars = own.clone();
        let (first, last, after) = match self.position() {
            Position::Unknown => (None, Some(1), None),
            Position::After(cursor) => (Some(page.max(1)), None, cursor),
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
        let v = spec.variables(&own, PAGE);
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
            spec.variables(&own, PAGE).get("eagerqlStreamAfter"),
            Some(&"c9".into())
        );
    }

    #[test]
    fn without_after_the_first_refresh_finds_the_position_and_sends_nothing() {
        let (_, spec) = rewrite("subscription { orderEvents { id } }", None, &JsonMap::new())
            .expect("valid")
            .expect("a stream");
        let v = spec.variables(&JsonMap::new(), PAGE);
        assert_eq!(v.get("eagerqlStreamLast"), Some(&1.into()));
        let page = spec.page(
            br#"{"data":{"orderEvents":{"nodes":[{"id":"3"}],"pageInfo":{"endCursor":"c3","hasNextPage":false}}}}"#,
        );
        assert!(matches!(page, Page::Events { bodies, .. } if bodies.is_empty()));
        assert_eq!(
            spec.variables(&JsonMap::new(), PAGE)
                .get("eagerqlStreamAfter"),
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
        let spread = rewrite(
            "subscription { ... on Subscription { ...F } } \
             fragment F on Subscription { orderEvents { id } }",
            None,
            &JsonMap::new(),
        );
        assert!(spread.is_err(), "{spread:?}");
    }

    #[test]
    fn null_absent_and_defaulted_after() {
        let doc = "subscription($after: ID) { orderEvents(after: $after) { id } }";
        for vars in [serde_json::json!({}), serde_json::json!({ "after": null })] {
            let (text, spec) = rewrite(doc, None, &self::vars(vars))
                .expect("valid")
                .expect("a stream");
            assert!(!text.contains("$after"), "{text}");
            // From now on: the first refresh only finds the position.
            let v = spec.variables(&JsonMap::new(), PAGE);
            assert_eq!(v.get("eagerqlStreamLast"), Some(&1.into()));
        }
        let (_, spec) = rewrite(
            "subscription($after: ID = \"5\") { orderEvents(after: $after) { id } }",
            None,
            &JsonMap::new(),
        )
        .expect("valid")
        .expect("a stream");
        let v = spec.variables(&JsonMap::new(), PAGE);
        assert_eq!(
            v.get("eagerqlStreamAfter").and_then(|c| c.as_str()),
            Some(crate::planner::cursor::of_id(Entity::OrderEvent, 5).as_str())
        );
        // `$after` also used elsewhere in the operation keeps its definition.
        let (text, _) = rewrite(
            "subscription($after: ID) { orderEvents(after: $after, where: { id: { eq: $after } }) { id } }",
            None,
            &JsonMap::new(),
        )
        .expect("valid")
        .expect("a stream");
        assert!(text.contains("$after: ID"), "{text}");
    }
}
