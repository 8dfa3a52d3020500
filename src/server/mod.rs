//! The server: building the application (`app`), what handlers share (`state`), the HTTP
//! rules and routes (`http`), TLS to PostgreSQL (`tls`), and the `graphql-transport-ws`
//! protocol (`ws`).

pub mod app;
pub mod http;
pub mod state;
pub mod tls;
pub mod ws;
