//! eagerql: a GraphQL server over the lesson's e-commerce model (users, orders, order items,
//! products) whose SQL statement count depends only on the shape of the query, never on the
//! number of rows.
//!
//! Every entity, column, relationship and edge argument is described once, in [`entities`];
//! the planner, the SQL builder, row decoding, the schema's object types and the renderer are
//! driven by that description.
//!
//! A request flows `http` (HTTP rules, persisted queries, the request's session) ->
//! `graphql::operation` (parse, validate, coerce variables, canonicalise) -> the executor and
//! the root resolvers of `graphql` -> `planner` (pure: selection -> load plan) ->
//! `graphql::preload` (runs the plan) -> `db` (the only place SQL is written, and the session
//! that counts every statement and row) -> `graphql::render` (the one renderer: writes every
//! entity object as JSON) -> `graphql::operation::finish` (key order, null propagation) ->
//! `http`. Relationships no plan loaded (lazy mode only) are loaded by the renderer, a level
//! at a time, through `graphql::lazy`'s DataLoader.

pub mod app;
pub mod auth;
pub mod cache;
pub mod check;
pub mod cli;
pub mod config;
pub mod db;
pub mod entities;
pub mod error;
pub mod graphql;
pub mod http;
pub mod json;
pub mod metrics;
pub mod model;
pub mod money;
pub mod password;
pub mod persisted;
pub mod planner;
pub mod predict;
pub mod state;
pub mod telemetry;
pub mod tls;
pub mod trusted;
pub mod validate;
