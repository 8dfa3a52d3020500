-- Top customers by revenue (the lesson's Level 3 answer): orders of status {status} created in
-- [{start}, {end}), of active users, grouped by user; highest revenue first, user id breaks
-- ties; at most {limit} rows.
-- Money is integer cents here, so the sum is exact. For status 'completed' the partial index
-- orders_completed_user_id_idx (migration 0004) covers the window in user order.
-- {status}, {start}, {end}, {limit}, {offset}: values db/analytics.rs writes into the text as
-- typed literals (no bound parameters), so every run is planned for its actual window.
select g.user_id, g.order_count, g.revenue_cents
from (
    select o.user_id,
           count(*) as order_count,
           sum(o.total_amount) as revenue_cents
    from orders o
    where o.status = {status}
      and o.created_at >= {start}
      and o.created_at < {end}
    group by o.user_id
) g
-- Inactive users are few (users_inactive_idx): an anti-join with them is cheaper than
-- joining every user.
where not exists (select 1 from users u where u.id = g.user_id and u.is_active = 0)
order by g.revenue_cents desc, g.user_id
limit {limit}
