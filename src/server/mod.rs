//! The server: building the application (`app`), what handlers share (`state`), the HTTP
//! rules and routes (`http`), and TLS to PostgreSQL (`tls`).

pub mod app;
pub mod http;
pub mod state;
pub mod tls;
