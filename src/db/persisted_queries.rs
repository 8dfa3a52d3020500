//! Automatic persisted queries kept in the database, so that every instance finds a document
//! registered through any of them (each instance caches what it finds).

use super::Session;
use super::session::Arg;
use crate::error::AppResult;

/// The document with this hash (hex), marking it used at `now` (unix ms).
pub async fn take(s: &Session, hash: &str, now: i64) -> AppResult<Option<String>> {
    let rows = s
        .fetch(
            "persisted_queries.take",
            "update persisted_queries set used_at = $2 where hash = $1 returning document"
                .to_owned(),
            vec![Arg::Text(hash.to_owned()), Arg::I64(now)],
            |r| r.text(0),
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// Registers a document under its hash (hex), used at `now` (unix ms).
pub async fn register(s: &Session, hash: &str, document: &str, now: i64) -> AppResult<()> {
    s.execute(
        "persisted_queries.register",
        "insert into persisted_queries (hash, document, used_at) values ($1, $2, $3) \
         on conflict (hash) do update set used_at = excluded.used_at"
            .to_owned(),
        vec![
            Arg::Text(hash.to_owned()),
            Arg::Text(document.to_owned()),
            Arg::I64(now),
        ],
    )
    .await?;
    Ok(())
}

/// Keeps the `keep` most recently used documents and forgets the others.
pub async fn prune(s: &Session, keep: usize) -> AppResult<u64> {
    s.execute(
        "persisted_queries.prune",
        "delete from persisted_queries where hash not in \
         (select hash from persisted_queries order by used_at desc limit $1)"
            .to_owned(),
        vec![Arg::I64(i64::try_from(keep).unwrap_or(i64::MAX))],
    )
    .await
}
