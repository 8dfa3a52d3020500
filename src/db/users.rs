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

/// An account as an identity provider's token finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// `users.id`.
    pub id: i64,
    /// `users.role`, as stored.
    pub role: String,
    /// Whether it may be used.
    pub is_active: bool,
    /// The provider's subject, once linked.
    pub external_id: Option<String>,
}

/// The columns an identity provider's subject may name (see [`find_account`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum AccountKey {
    /// `users.id`.
    Id,
    /// `users.email` (lower case).
    Email,
    /// `users.external_id`.
    ExternalId,
}

const ACCOUNT_COLUMNS: &str = "id, role, is_active, external_id";

fn account(r: &dyn super::session::DbRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: r.i64(0)?,
        role: r.text(1)?,
        is_active: r.bool(2)?,
        external_id: r.opt_text(3)?,
    })
}

/// The account whose `key` column holds `value`, if any.
pub async fn find_account(s: &Session, key: AccountKey, value: &str) -> AppResult<Option<Account>> {
    let (name, sql, arg) = match key {
        AccountKey::Id => match value.parse::<i64>() {
            Ok(id) => (
                "users.account_by_id",
                "select id, role, is_active, external_id from users where id = $1",
                Arg::I64(id),
            ),
            Err(_) => return Ok(None),
        },
        AccountKey::Email => (
            "users.account_by_email",
            "select id, role, is_active, external_id from users where email = $1",
            Arg::Text(value.to_lowercase()),
        ),
        AccountKey::ExternalId => (
            "users.account_by_external_id",
            "select id, role, is_active, external_id from users where external_id = $1",
            Arg::Text(value.to_owned()),
        ),
    };
    s.fetch_first(name, sql, vec![arg], account).await
}

/// Creates the account of an identity provider's subject (no password: `!` is no hash any
/// password matches). `None` when the e-mail address, the username or the subject is taken
/// (decided by the unique constraints, so two first requests cannot create two accounts).
pub async fn create_external(
    s: &Session,
    email: &str,
    username: &str,
    external_id: Option<&str>,
) -> AppResult<Option<Account>> {
    let sql = format!(
        "insert into users (email, username, password_hash, external_id) \
         values ($1, $2, '!', $3) on conflict do nothing returning {ACCOUNT_COLUMNS}"
    );
    let args = vec![
        Arg::Text(email.to_lowercase()),
        Arg::Text(username.to_owned()),
        Arg::OptText(external_id.map(str::to_owned)),
    ];
    s.fetch_first("users.create_external", &sql, args, account)
        .await
}

/// Links account `id`, not yet linked, to an identity provider's subject; `None` when it is
/// already linked (to this or another subject) or the subject is taken.
pub async fn link_external(s: &Session, id: i64, external_id: &str) -> AppResult<Option<Account>> {
    let sql = format!(
        "update users set external_id = $2, updated_at = {} \
         where id = $1 and external_id is null \
         and not exists (select 1 from users u where u.external_id = $2) \
         returning {ACCOUNT_COLUMNS}",
        s.backend().now()
    );
    let args = vec![Arg::I64(id), Arg::Text(external_id.to_owned())];
    s.fetch_first("users.link_external", &sql, args, account)
        .await
}
