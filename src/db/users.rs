//! `users`: the accounts that place orders. `password_hash` never leaves this module.

/// Inserts a user; gives its id. A taken email or username is a `CONFLICT` naming the field,
/// decided by the unique constraints (never by a racy pre-check).
pub async fn insert(
    s: &super::Session,
    email: &str,
    username: &str,
    password_hash: &str,
    bio: Option<&str>,
) -> crate::error::AppResult<i64> {
    use super::session::Arg;
    let ids = s
        .fetch(
            "users.insert",
            "insert into users (email, username, password_hash, bio) values ($1, $2, $3, $4) returning id"
                .to_owned(),
            vec![
                Arg::Text(email.to_owned()),
                Arg::Text(username.to_owned()),
                Arg::Secret(password_hash.to_owned()),
                Arg::OptText(bio.map(str::to_owned)),
            ],
            |r| r.i64(0),
        )
        .await?;
    ids.first()
        .copied()
        .ok_or_else(|| crate::error::AppError::internal("insert returned no id"))
}

/// Marks a user inactive; `false` when there is no such user.
pub async fn deactivate(s: &super::Session, id: i64) -> crate::error::AppResult<bool> {
    use super::session::Arg;
    let sql = match s.backend() {
        super::Backend::Postgres => {
            "update users set is_active = false, updated_at = now() where id = $1 returning id"
        }
        super::Backend::Sqlite => {
            "update users set is_active = 0, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
             where id = $1 returning id"
        }
    };
    let rows = s
        .fetch(
            "users.deactivate",
            sql.to_owned(),
            vec![Arg::I64(id)],
            |r| r.i64(0),
        )
        .await?;
    Ok(!rows.is_empty())
}

/// Whether a user may place orders: `None` when there is no such user. On PostgreSQL the row
/// is share-locked until the transaction ends, so it cannot be deactivated mid-order.
pub async fn active_for_order(
    s: &super::Session,
    id: i64,
) -> crate::error::AppResult<Option<bool>> {
    use super::session::Arg;
    let sql = match s.backend() {
        super::Backend::Postgres => "select is_active from users where id = $1 for share",
        super::Backend::Sqlite => "select is_active from users where id = $1",
    };
    let rows = s
        .fetch(
            "users.active_for_order",
            sql.to_owned(),
            vec![Arg::I64(id)],
            |r| r.bool(0),
        )
        .await?;
    Ok(rows.first().copied())
}
