-- Revenue per UTC day over [$1, $2) for orders of status $3. Every day of the window is
-- listed, days without orders with 0. Timestamps are ISO-8601 UTC text, so the day is its
-- first ten characters.
with recursive days(day) as (
    select date($1)
    union all
    select date(day, '+1 day') from days where day < date($2, '-0.001 seconds')
),
totals as (
    select substr(o.created_at, 1, 10) as day,
           count(*) as order_count,
           sum(o.total_amount) as revenue_cents
    from orders o
    where o.status = $3
      and o.created_at >= $1
      and o.created_at < $2
    group by 1
)
select days.day,
       coalesce(totals.order_count, 0) as order_count,
       coalesce(totals.revenue_cents, 0) as revenue_cents
from days
left join totals on totals.day = days.day
order by days.day
