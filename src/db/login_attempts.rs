//! Login attempts per key (an account or a client address), counted in the database so that
//! every instance on it, and every restart, sees the same counts.

use super::session::Arg;
use super::{Backend, Session};
use crate::error::AppResult;

/// A key's count after an attempt was reserved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Count {
    /// The key.
    pub key: String,
    /// Attempts in the current window, this one included.
    pub attempts: i64,
    /// When the window began, unix milliseconds.
    pub window_start: i64,
}

/// Counts one attempt for each of `keys`, in one statement: a key whose window began at or
/// before `expired_before` (unix ms) starts a new window at `now` (unix ms). The upsert is
/// atomic, so of N concurrent attempts each sees a different count.
pub async fn reserve(
    s: &Session,
    keys: &[String],
    now: i64,
    expired_before: i64,
) -> AppResult<Vec<Count>> {
    let mut rows = String::new();
    let mut args = vec![Arg::I64(now), Arg::I64(expired_before)];
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            rows.push_str(", ");
        }
        rows.push_str(&format!("(${}, 1, $1)", i + 3));
        args.push(Arg::Text(key.clone()));
    }
    s.fetch(
        "login_attempts.reserve",
        format!(
            "insert into login_attempts as a (key, attempts, window_start) values {rows} \
             on conflict (key) do update set \
             attempts = case when a.window_start <= $2 then 1 else a.attempts + 1 end, \
             window_start = case when a.window_start <= $2 then $1 else a.window_start end \
             returning key, attempts, window_start"
        ),
        args,
        |r| {
            Ok(Count {
                key: r.text(0)?,
                attempts: r.i64(1)?,
                window_start: r.i64(2)?,
            })
        },
    )
    .await
}

/// After a successful login: the account's count is cleared, and the attempt reserved on
/// the address is given back (only failures count against an address).
pub async fn succeeded(s: &Session, account: &str, address: Option<&str>) -> AppResult<()> {
    s.execute(
        "login_attempts.succeeded",
        "update login_attempts set attempts = case when key = $1 then 0 else attempts - 1 end \
         where key = $1 or (key = $2 and attempts > 0)"
            .to_owned(),
        vec![
            Arg::Text(account.to_owned()),
            Arg::OptText(address.map(str::to_owned)),
        ],
    )
    .await?;
    Ok(())
}

/// Forgets windows that began at or before `expired_before` (unix ms): they no longer count.
pub async fn prune(s: &Session, expired_before: i64) -> AppResult<u64> {
    // On PostgreSQL rows a login is counting are skipped, not waited for: the two would lock
    // the same rows in different orders.
    let sql = match s.backend() {
        Backend::Postgres => {
            "delete from login_attempts where key in (select key from login_attempts \
             where window_start <= $1 for update skip locked)"
        }
        Backend::Sqlite => "delete from login_attempts where window_start <= $1",
    };
    s.execute(
        "login_attempts.prune",
        sql.to_owned(),
        vec![Arg::I64(expired_before)],
    )
    .await
}
