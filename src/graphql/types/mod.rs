//! The GraphQL object types. Each wraps its row and the relations its plan preloaded, behind
//! an `Arc`, so a value shared by many parents (a product on many items) is cheap to hand out.
//! Field resolvers only read: relation fields return what was preloaded, or, where nothing
//! was, ask [`super::preload`] (or fail in strict mode).

pub mod order;
pub mod order_item;
pub mod product;
pub mod user;

pub use order::Order;
pub use order_item::OrderItem;
pub use product::Product;
pub use user::User;

use crate::planner::EdgeArgs;

/// The preloaded children of one to-many edge, one list per distinct argument set.
#[derive(Debug)]
pub struct Edges<T>(Vec<(EdgeArgs, Vec<T>)>);

impl<T> Default for Edges<T> {
    fn default() -> Self {
        Edges(Vec::new())
    }
}

impl<T: Clone> Edges<T> {
    /// The children loaded for `args`, if the plan loaded them.
    pub fn get(&self, args: &EdgeArgs) -> Option<Vec<T>> {
        self.0
            .iter()
            .find(|(a, _)| a == args)
            .map(|(_, v)| v.clone())
    }

    /// The children loaded for `args`, borrowed.
    pub fn get_ref(&self, args: &EdgeArgs) -> Option<&[T]> {
        self.0
            .iter()
            .find(|(a, _)| a == args)
            .map(|(_, v)| v.as_slice())
    }

    /// Records the children loaded for `args`.
    pub fn insert(&mut self, args: EdgeArgs, children: Vec<T>) {
        self.0.push((args, children));
    }
}
