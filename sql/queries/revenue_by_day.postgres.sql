-- Revenue per UTC day over [$1, $2) for orders of status $3. Every day of the window is
-- listed, days without orders with 0, so a chart needs no gap filling.
with days as (
    select d::date as day
    from generate_series(
        ($1::timestamptz at time zone 'utc')::date,
        (($2::timestamptz - interval '1 microsecond') at time zone 'utc')::date,
        interval '1 day'
    ) as d
),
totals as (
    select (o.created_at at time zone 'utc')::date as day,
           count(*)::int8 as order_count,
           (sum(o.total_amount) * 100)::int8 as revenue_cents
    from orders o
    where o.status = $3
      and o.created_at >= $1
      and o.created_at < $2
    group by 1
)
select to_char(days.day, 'YYYY-MM-DD') as day,
       coalesce(totals.order_count, 0)::int8 as order_count,
       coalesce(totals.revenue_cents, 0)::int8 as revenue_cents
from days
left join totals using (day)
order by days.day
