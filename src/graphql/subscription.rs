//! The `Subscription` root: every read root of `Query` as a live query. A subscription's
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

use super::query::read_fields;
use super::types::object_type;

/// Live queries: the read roots, kept current.
pub struct Subscription;

const SUBSCRIPTION_DOC: &str = "Live queries over WebSocket (graphql-transport-ws) or \
Server-Sent Events: each field is its `Query` twin, with the same arguments, limits and \
permissions. The first message is the current answer; after that a message is sent only when \
a committed write (through any server, or plain SQL) changes the subscriber's answer. The \
subscribers of one operation are refreshed together: a change costs the operation's planned \
statements, whatever the number of subscribers.";

impl SubscriptionType for Subscription {
    fn type_name() -> Cow<'static, str> {
        Cow::Borrowed("Subscription")
    }

    fn create_type_info(registry: &mut Registry) -> String {
        registry.create_subscription_type::<Self, _>(|registry| {
            let fields = read_fields(registry);
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
