//! The documents a request names or sends: the cache of parsed and validated documents
//! (`cache`), automatic persisted queries (`persisted`), trusted documents (`trusted`), and
//! the statement count of a document predicted without running it (`predict`, and `check`
//! for `eagerql check` over a project's operations).

pub mod cache;
pub mod check;
pub mod persisted;
pub mod predict;
pub mod trusted;
