-- Top customers by revenue (the lesson's Level 3 answer): orders of one status created in
-- [$2, $3), of active users, grouped by user; highest revenue first, user id breaks ties.
-- Money is integer cents here, so the sum is exact.
select o.user_id,
       count(*) as order_count,
       sum(o.total_amount) as revenue_cents
from orders o
where o.status = $1
  and o.created_at >= $2
  and o.created_at < $3
  -- Inactive users are few (users_inactive_idx): an anti-join with them is cheaper than
  -- joining every user.
  and not exists (select 1 from users u where u.id = o.user_id and u.is_active = 0)
group by o.user_id
order by revenue_cents desc, o.user_id
limit $4
