//! The `Subscription` root: every read root of `Query` as a live query, except `orderEvents`,
//! an event stream (see [`crate::live::stream`]). A live query's
//! first message is the answer its query twin gives; after that a message is sent only when a
//! committed write changes that subscriber's answer. Subscriptions are not executed by
//! resolvers of their own: the operation runs as its `Query` twin (see
//! [`super::operation`]), refreshed for all the subscribers of the same operation together
//! (see [`crate::live`]).

use std::borrow::Cow;
use std::pin::Pin;

use async_graphql::registry::{MetaType, Registry};
use async_graphql::{Context, Response, SubscriptionType};
use futures_util::Stream;

use async_graphql::indexmap::IndexMap;
use async_graphql::registry::{MetaField, MetaInputValue};

use super::query::read_fields;
use super::types::{input, meta_field, object_type};
use crate::live::stream::FIELD as STREAM_FIELD;

/// Live queries: the read roots, kept current.
pub struct Subscription;

const SUBSCRIPTION_DOC: &str = "Live queries over WebSocket (graphql-transport-ws) or \
Server-Sent Events: each field is its `Query` twin, with the same arguments, limits and \
permissions. The first message is the current answer; after that a message is sent only when \
a committed write (through any server, or plain SQL) changes the subscriber's answer. The \
subscribers of one operation are refreshed together: a change costs the operation's planned \
statements, whatever the number of subscribers.";

const STREAM_DOC: &str = "The order life cycle as it happens: one message per event (an \
order placed, its status changed, cancelled) committed after the subscription starts, in \
commit order, whoever wrote it. A customer receives the events of their own orders, an \
administrator every event. `kind`, `orderId` and `where` keep only some events, as on \
`Query.orderEvents`; `order` is the order as it is when the event is sent.";

const AFTER_DOC: &str = "Start after this event id: every later event the viewer may see \
is sent first, in order (a client that reconnects passes the id of the last event it \
received). Absent or null: only events committed after the subscription starts.";

/// Replaces the live list `orderEvents` by the event stream of the same name: the
/// arguments of `Query.orderEventsConnection` that choose rows, and `after` an event id.
fn stream_field(fields: &mut IndexMap<String, MetaField>) {
    let Some(conn) = fields.get("orderEventsConnection") else {
        return;
    };
    let mut args: IndexMap<String, MetaInputValue> = IndexMap::new();
    args.insert("after".to_owned(), input("after", "ID", AFTER_DOC));
    for (name, arg) in &conn.args {
        if !matches!(
            name.as_str(),
            "first" | "last" | "after" | "before" | "orderBy"
        ) {
            args.insert(name.clone(), arg.clone());
        }
    }
    let field = meta_field(STREAM_FIELD, STREAM_DOC, "OrderEvent!".to_owned(), args);
    fields.insert(STREAM_FIELD.to_owned(), field);
}

impl SubscriptionType for Subscription {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("Subscription")
    }

    fn create_type_info(registry: &mut Registry) -> String {
        registry.create_subscription_type::<Self, _>(|registry| {
            let mut fields = read_fields(registry);
            stream_field(&mut fields);
            let mut ty = object_type(
                "Subscription".to_owned(),
                Some(SUBSCRIPTION_DOC.to_owned()),
                fields,
            );
            if let MetaType::Object {
                is_subscription,
                rust_typename,
                ..
            } = &mut ty
            {
                *is_subscription = true;
                *rust_typename = Some(std::any::type_name::<Self>());
            }
            ty
        })
    }

    fn create_field_stream<'a>(
        &'a self,
        _ctx: &'a Context<'_>,
    ) -> Option<Pin<Box<dyn Stream<Item = Response> + Send + 'a>>> {
        // Never reached: a subscription runs as its `Query` twin.
        None
    }
}
