//! The integration suite: one binary, one fresh database per test. The backend is chosen by
//! `EAGERQL_TEST_BACKEND` (`sqlite`, the default, or `postgres` with `TEST_DATABASE_URL`);
//! `scripts/test` runs the suite on both.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test fails by panicking"
)]

mod helpers;
mod model;
mod oracle;
mod rows;

mod analytics;
mod auth;
mod changes;
mod check;
mod connections;
mod correctness;
mod database_stats;
mod differential;
mod errors;
mod external_tokens;
mod filter_properties;
mod filters;
mod hostile;
mod http;
mod layers;
mod lazy;
mod live;
mod mutations;
mod operations;
mod order_events;
mod output;
mod scale_out;
mod schema;
mod seed;
mod sessions;
mod statement_counts;
mod traces;
mod trusted;
mod websocket;
