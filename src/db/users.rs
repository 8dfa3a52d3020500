//! `users`: the accounts that place orders. `password_hash` never leaves this module.

use super::Session;
use super::session::Arg;
use crate::error::{AppError, AppResult};

/// Inserts a user; gives its id. A taken email or username is a `CONFLICT` naming the field,
/// decided by the unique constraints (never by a racy pre-check).
pub async fn insert(
    s: &Session,
    email: &str,
    username: &str,
    password_hash: &str,
    bio: Option<&str>,
) -> AppResult<i64> {
    let sql = "insert into users (email, username, password_hash, bio) \
               values ($1, $2, $3, $4) returning id";
    let args = vec![
        Arg::Text(email.to_owned()),
        Arg::Text(username.to_owned()),
        Arg::Secret(password_hash.to_owned()),
        Arg::OptText(bio.map(str::to_owned)),
    ];
    s.fetch_first("users.insert", sql, args, |r| r.i64(0))
        .await?
        .ok_or_else(|| AppError::internal("insert returned no id"))
}

/// Marks a user inactive; `false` when there is no such user.
pub async fn deactivate(s: &Session, id: i64) -> AppResult<bool> {
    let sql = format!(
        "update users set is_active = {}, updated_at = {} where id = $1 returning id",
        s.backend().pick("false", "0"),
        s.backend().now()
    );
    let row = s
        .fetch_first("users.deactivate", &sql, vec![Arg::I64(id)], |r| r.i64(0))
        .await?;
    Ok(row.is_some())
}

/// Whether a user may place orders: `None` when there is no such user. On PostgreSQL the row
/// is share-locked until the transaction ends, so it cannot be deactivated mid-order.
pub async fn active_for_order(s: &Session, id: i64) -> AppResult<Option<bool>> {
    let sql = s.backend().pick(
        "select is_active from users where id = $1 for share",
        "select is_active from users where id = $1",
    );
    s.fetch_first("users.active_for_order", sql, vec![Arg::I64(id)], |r| {
        r.bool(0)
    })
    .await
}
