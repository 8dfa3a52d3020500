//! eagerql: a GraphQL server over the lesson's e-commerce model (users, orders, order items,
//! products) whose SQL statement count depends only on the shape of the query, never on the
//! number of rows.
//!
//! A request flows `http` -> `graphql` (root resolvers) -> `planner` (pure: selection -> load
//! plan) -> `graphql::preload` (runs the plan) -> `db` (the only place SQL is written, and the
//! statement-counting session every statement passes through).

pub mod app;
pub mod cli;
pub mod config;
pub mod db;
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
