//! `users`: the accounts that place orders. `password_hash` never leaves this module.

use chrono::{DateTime, Utc};

use super::load::Column;
use super::session::DbRow;

/// A row of `users`, without `password_hash`.
#[derive(Clone, Debug, PartialEq)]
pub struct UserRow {
    /// Primary key.
    pub id: i64,
    /// Unique e-mail address.
    pub email: String,
    /// Unique user name.
    pub username: String,
    /// Whether the account may place orders.
    pub is_active: bool,
    /// When the account was created.
    pub created_at: DateTime<Utc>,
    /// When the account last changed.
    pub updated_at: DateTime<Utc>,
    /// Optional free text.
    pub bio: Option<String>,
}

/// The columns a load selects, in decoding order.
pub const COLUMNS: &[Column] = &[
    Column::plain("id"),
    Column::plain("email"),
    Column::plain("username"),
    Column::plain("is_active"),
    Column::plain("created_at"),
    Column::plain("updated_at"),
    Column::plain("bio"),
];

/// Decodes [`COLUMNS`] starting at column `at`.
pub fn decode(r: &dyn DbRow, at: usize) -> Result<UserRow, sqlx::Error> {
    Ok(UserRow {
        id: r.i64(at)?,
        email: r.text(at + 1)?,
        username: r.text(at + 2)?,
        is_active: r.bool(at + 3)?,
        created_at: r.ts(at + 4)?,
        updated_at: r.ts(at + 5)?,
        bio: r.opt_text(at + 6)?,
    })
}
