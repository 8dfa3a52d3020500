//! eagerql: a GraphQL server over the lesson's e-commerce model (users, orders, order items,
//! products) whose SQL statement count depends only on the shape of the query, never on the
//! number of rows.
//!
//! A request flows `http` (HTTP rules, persisted queries, the request's session) ->
//! `graphql::operation` (parse, validate, coerce variables, canonicalise) -> the executor and
//! the root resolvers of `graphql` -> `planner` (pure: selection -> load plan) ->
//! `graphql::preload` (runs the plan) -> `db` (the only place SQL is written, and the session
//! that counts every statement and row) -> `graphql::fast` (writes every object as JSON) ->
//! `graphql::operation::finish` (key order, null propagation) -> `http`. Unplanned
//! relationships (non-strict mode only) go through `graphql::lazy`'s DataLoader.

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod graphql;
pub mod http;
pub mod json;
pub mod model;
pub mod password;
pub mod persisted;
pub mod planner;
pub mod state;
pub mod telemetry;
pub mod validate;
