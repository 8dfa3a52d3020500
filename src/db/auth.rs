//! Accounts and sessions: the credentials a login checks, refresh tokens (only their hashes
//! are stored) and the key access tokens are signed with.

use super::session::{Arg, DbRow};
use super::{Backend, Session};
use crate::error::{AppError, AppResult};
use crate::model::Role;

/// What a login checks.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The account.
    pub user_id: i64,
    /// Its argon2id PHC string.
    pub password_hash: String,
    /// Inactive accounts cannot log in.
    pub is_active: bool,
    /// Its role.
    pub role: Role,
}

fn role(r: &dyn DbRow, i: usize) -> Result<Role, sqlx::Error> {
    super::columns::stored(r, i, "role", Role::from_db)
}

/// The credentials of the account with this (lower-case) e-mail address.
pub async fn credentials(s: &Session, email: &str) -> AppResult<Option<Credentials>> {
    let rows = s
        .fetch(
            "users.credentials",
            "select id, password_hash, is_active, role from users where email = $1".to_owned(),
            vec![Arg::Text(email.to_owned())],
            |r| {
                Ok(Credentials {
                    user_id: r.i64(0)?,
                    password_hash: r.text(1)?,
                    is_active: r.bool(2)?,
                    role: role(r, 3)?,
                })
            },
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// The role of an account, and whether it is active; `None`: no such account.
pub async fn account(s: &Session, user_id: i64) -> AppResult<Option<(Role, bool)>> {
    let rows = s
        .fetch(
            "users.account",
            "select role, is_active from users where id = $1".to_owned(),
            vec![Arg::I64(user_id)],
            |r| Ok((role(r, 0)?, r.bool(1)?)),
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// Sets an account's role; `false` when there is no such account.
pub async fn set_role(s: &Session, user_id: i64, role: Role) -> AppResult<bool> {
    let n = s
        .execute(
            "users.set_role",
            "update users set role = $2 where id = $1".to_owned(),
            vec![Arg::I64(user_id), Arg::Text(role.as_db().to_owned())],
        )
        .await?;
    Ok(n > 0)
}

/// Stores a new refresh token (its hash) of `family`, valid until `expires_at` (unix seconds).
pub async fn insert_refresh(
    s: &Session,
    user_id: i64,
    family: &str,
    token_hash: &str,
    expires_at: i64,
) -> AppResult<()> {
    s.execute(
        "refresh_tokens.insert",
        "insert into refresh_tokens (user_id, family, token_hash, expires_at) \
         values ($1, $2, $3, $4)"
            .to_owned(),
        vec![
            Arg::I64(user_id),
            Arg::Text(family.to_owned()),
            Arg::Secret(token_hash.to_owned()),
            Arg::I64(expires_at),
        ],
    )
    .await?;
    Ok(())
}

/// A stored refresh token, with its account.
#[derive(Clone, Debug)]
pub struct RefreshToken {
    /// Its row.
    pub id: i64,
    /// The account.
    pub user_id: i64,
    /// Its family (one login).
    pub family: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Already exchanged for a successor.
    pub rotated: bool,
    /// Revoked (logout, deactivation, reuse).
    pub revoked: bool,
    /// The account's role.
    pub role: Role,
    /// Whether the account is active.
    pub is_active: bool,
}

/// The refresh token with this hash, row-locked on PostgreSQL until the transaction ends (so
/// two concurrent exchanges of one token cannot both win; SQLite's write transaction already
/// serialises them).
pub async fn refresh_for_update(s: &Session, token_hash: &str) -> AppResult<Option<RefreshToken>> {
    let lock = match s.backend() {
        Backend::Postgres => " for update of t",
        Backend::Sqlite => "",
    };
    let rows = s
        .fetch(
            "refresh_tokens.by_hash",
            format!(
                "select t.id, t.user_id, t.family, t.expires_at, t.rotated_at is not null, \
                 t.revoked_at is not null, u.role, u.is_active \
                 from refresh_tokens t join users u on u.id = t.user_id \
                 where t.token_hash = $1{lock}"
            ),
            vec![Arg::Secret(token_hash.to_owned())],
            |r| {
                Ok(RefreshToken {
                    id: r.i64(0)?,
                    user_id: r.i64(1)?,
                    family: r.text(2)?,
                    expires_at: r.i64(3)?,
                    rotated: r.bool(4)?,
                    revoked: r.bool(5)?,
                    role: role(r, 6)?,
                    is_active: r.bool(7)?,
                })
            },
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// Stamps `column` with the current time on the refresh tokens `condition` (on `$1`) picks;
/// gives how many were stamped.
async fn stamp(
    s: &Session,
    name: &'static str,
    column: &str,
    condition: &str,
    arg: Arg,
) -> AppResult<u64> {
    let sql = format!(
        "update refresh_tokens set {column} = {} where {condition}",
        s.backend().now()
    );
    s.execute(name, sql, vec![arg]).await
}

/// Marks a refresh token as exchanged for its successor.
pub async fn mark_rotated(s: &Session, id: i64) -> AppResult<()> {
    let (name, cond) = ("refresh_tokens.rotate", "id = $1");
    stamp(s, name, "rotated_at", cond, Arg::I64(id)).await?;
    Ok(())
}

/// Revokes every token of a family (a rotated token was used again: it may be stolen).
pub async fn revoke_family(s: &Session, family: &str) -> AppResult<u64> {
    let (name, cond) = (
        "refresh_tokens.revoke_family",
        "family = $1 and revoked_at is null",
    );
    stamp(s, name, "revoked_at", cond, Arg::Text(family.to_owned())).await
}

/// Revokes the refresh token with this hash; `false` when there is none still valid.
pub async fn revoke_token(s: &Session, token_hash: &str) -> AppResult<bool> {
    let (name, cond) = (
        "refresh_tokens.revoke",
        "token_hash = $1 and revoked_at is null",
    );
    let arg = Arg::Secret(token_hash.to_owned());
    Ok(stamp(s, name, "revoked_at", cond, arg).await? > 0)
}

/// Revokes every refresh token of an account.
pub async fn revoke_user(s: &Session, user_id: i64) -> AppResult<u64> {
    let (name, cond) = (
        "refresh_tokens.revoke_user",
        "user_id = $1 and revoked_at is null",
    );
    stamp(s, name, "revoked_at", cond, Arg::I64(user_id)).await
}

/// The secret named `name`, stored with `candidate` if there was none yet. Every instance on
/// one database gets the same secret, whichever inserted it first.
pub async fn server_key(s: &Session, name: &str, candidate: &str) -> AppResult<String> {
    s.execute(
        "server_keys.insert",
        "insert into server_keys (name, secret) values ($1, $2) on conflict (name) do nothing"
            .to_owned(),
        vec![
            Arg::Text(name.to_owned()),
            Arg::Secret(candidate.to_owned()),
        ],
    )
    .await?;
    let rows = s
        .fetch(
            "server_keys.get",
            "select secret from server_keys where name = $1".to_owned(),
            vec![Arg::Text(name.to_owned())],
            |r| r.text(0),
        )
        .await?;
    rows.into_iter()
        .next()
        .ok_or_else(|| AppError::internal("the server key was not stored"))
}

/// Gives the first three demo users (seeded without a usable password) the password whose
/// hash is `password_hash`, and makes the first one an administrator: the demo's sign-in
/// accounts. Accounts that already have a password are left alone.
pub async fn demo_accounts(s: &Session, password_hash: &str) -> AppResult<u64> {
    let n = s
        .execute(
            "users.demo_passwords",
            "update users set password_hash = $1 where id in (1, 2, 3) and password_hash = '!'"
                .to_owned(),
            vec![Arg::Secret(password_hash.to_owned())],
        )
        .await?;
    if n > 0 {
        s.execute(
            "users.demo_admin",
            "update users set role = 'admin' where id = 1".to_owned(),
            vec![],
        )
        .await?;
    }
    Ok(n)
}

/// Inserts an account with a role; gives its id.
pub async fn insert_account(
    s: &Session,
    email: &str,
    username: &str,
    password_hash: &str,
    role: Role,
) -> AppResult<i64> {
    let ids = s
        .fetch(
            "users.insert_account",
            "insert into users (email, username, password_hash, role) values ($1, $2, $3, $4) \
             returning id"
                .to_owned(),
            vec![
                Arg::Text(email.to_owned()),
                Arg::Text(username.to_owned()),
                Arg::Secret(password_hash.to_owned()),
                Arg::Text(role.as_db().to_owned()),
            ],
            |r| r.i64(0),
        )
        .await?;
    ids.into_iter()
        .next()
        .ok_or_else(|| AppError::internal("insert returned no id"))
}
