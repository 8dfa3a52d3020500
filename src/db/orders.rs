//! `orders`: one purchase by one user.

use crate::model::OrderStatus;

/// Inserts a pending order; gives its id.
pub async fn insert(
    s: &super::Session,
    user_id: i64,
    total_cents: i64,
) -> crate::error::AppResult<i64> {
    use super::session::Arg;
    let sql = match s.backend() {
        super::Backend::Postgres => {
            "insert into orders (user_id, total_amount) values ($1, $2::int8::numeric / 100) returning id"
        }
        super::Backend::Sqlite => {
            "insert into orders (user_id, total_amount) values ($1, $2) returning id"
        }
    };
    let ids = s
        .fetch(
            "orders.insert",
            sql.to_owned(),
            vec![Arg::I64(user_id), Arg::I64(total_cents)],
            |r| r.i64(0),
        )
        .await?;
    ids.first()
        .copied()
        .ok_or_else(|| crate::error::AppError::internal("insert returned no id"))
}

/// An order's status and owner, row-locked on PostgreSQL until the transaction ends, so that
/// two concurrent transitions of one order cannot both win. `None`: no such order.
pub async fn lock_status(
    s: &super::Session,
    id: i64,
) -> crate::error::AppResult<Option<(OrderStatus, i64)>> {
    use super::session::Arg;
    let sql = match s.backend() {
        super::Backend::Postgres => "select status, user_id from orders where id = $1 for update",
        super::Backend::Sqlite => "select status, user_id from orders where id = $1",
    };
    let rows = s
        .fetch(
            "orders.lock_status",
            sql.to_owned(),
            vec![Arg::I64(id)],
            |r| Ok((r.text(0)?, r.i64(1)?)),
        )
        .await?;
    Ok(rows
        .first()
        .and_then(|(s, user)| OrderStatus::from_db(s).map(|s| (s, *user))))
}

/// Sets an order's status, and when it changed.
pub async fn set_status(
    s: &super::Session,
    id: i64,
    status: OrderStatus,
) -> crate::error::AppResult<u64> {
    use super::session::Arg;
    let sql = match s.backend() {
        super::Backend::Postgres => {
            "update orders set status = $2, status_changed_at = now() where id = $1"
        }
        super::Backend::Sqlite => {
            "update orders set status = $2, \
             status_changed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') where id = $1"
        }
    };
    s.execute(
        "orders.set_status",
        sql.to_owned(),
        vec![Arg::I64(id), Arg::Text(status.as_db().to_owned())],
    )
    .await
}
