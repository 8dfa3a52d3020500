//! `orders`: one purchase by one user.

use super::Session;
use super::session::Arg;
use crate::error::{AppError, AppResult};
use crate::model::OrderStatus;

/// Inserts a pending order; gives its id.
pub async fn insert(s: &Session, user_id: i64, total_cents: i64) -> AppResult<i64> {
    let sql = s.backend().pick(
        "insert into orders (user_id, total_amount) values ($1, $2::int8::numeric / 100) returning id",
        "insert into orders (user_id, total_amount) values ($1, $2) returning id",
    );
    let args = vec![Arg::I64(user_id), Arg::I64(total_cents)];
    s.fetch_first("orders.insert", sql, args, |r| r.i64(0))
        .await?
        .ok_or_else(|| AppError::internal("insert returned no id"))
}

/// An order's status and owner, row-locked on PostgreSQL until the transaction ends, so that
/// two concurrent transitions of one order cannot both win. `None`: no such order.
pub async fn lock_status(s: &Session, id: i64) -> AppResult<Option<(OrderStatus, i64)>> {
    let sql = s.backend().pick(
        "select status, user_id from orders where id = $1 for update",
        "select status, user_id from orders where id = $1",
    );
    let row = s
        .fetch_first("orders.lock_status", sql, vec![Arg::I64(id)], |r| {
            Ok((r.text(0)?, r.i64(1)?))
        })
        .await?;
    Ok(row.and_then(|(s, user)| OrderStatus::from_db(&s).map(|s| (s, user))))
}

/// Sets an order's status, and when it changed.
pub async fn set_status(s: &Session, id: i64, status: OrderStatus) -> AppResult<u64> {
    let sql = format!(
        "update orders set status = $2, status_changed_at = {} where id = $1",
        s.backend().now()
    );
    let args = vec![Arg::I64(id), Arg::Text(status.as_db().to_owned())];
    s.execute("orders.set_status", sql, args).await
}
