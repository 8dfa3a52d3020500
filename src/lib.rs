//! eagerql: a GraphQL server over the lesson's e-commerce model (users, orders, order items,
//! products) whose SQL statement count depends only on the shape of the query, never on the
//! number of rows.
//!
//! Every entity, column, relationship and edge argument is described once, in [`entities`];
//! the planner, the SQL builder, row decoding, the schema's object types and the renderer are
//! driven by that description.
//!
//! A request flows `server::http` (HTTP rules) -> `graphql::handler` (documents, the
//! request's session) -> `graphql::operation` (parse, validate, coerce variables,
//! canonicalise) -> the executor and the root resolvers of `graphql` -> `planner` (pure:
//! selection -> load plan) -> `graphql::preload` (runs the plan) -> `db` (the only place SQL
//! is written, and the session that counts every statement and row) -> `graphql::render` (the
//! one renderer: writes every entity object as JSON) -> `graphql::operation::finish` (key
//! order, null propagation) -> `server::http`. Relationships no plan loaded (lazy mode only)
//! are loaded by the renderer, a level at a time, through `graphql::lazy`'s DataLoader.
//!
//! The crate's modules by concern: `server` (app, shared state, HTTP, TLS), `graphql` (the API
//! and its request pipeline), `planner` and `entities` (the description and the pure plan),
//! `db` (SQL), `documents` (document cache, persisted and trusted documents, prediction),
//! `auth` (tokens, passwords, login limits), `observe` (metrics, logs, traces), `cli` and
//! `config`, and the small shared pieces (`error`, `json`, `model`, `money`, `validate`).

pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod documents;
pub mod entities;
pub mod error;
pub mod graphql;
pub mod json;
pub mod live;
pub mod model;
pub mod money;
pub mod observe;
pub mod planner;
pub mod server;
pub mod validate;
