-- Revenue per UTC day over [{start}, {end}) for orders of status {status}. Every day of the
-- window is listed, days without orders with 0, so a chart needs no gap filling.
-- {status}, {start}, {end}, {limit}, {offset}: values db/analytics.rs writes into the text as
-- typed literals (no bound parameters), so every run is planned for its actual window.
with days as (
    select d::date as day
    from generate_series(
        {start_day}::date,
        (({end} - interval '1 microsecond') at time zone 'utc')::date,
        interval '1 day'
    ) as d
),
totals as (
    select (o.created_at at time zone 'utc')::date as day,
           count(*)::int8 as order_count,
           sum(o.total_cents)::int8 as revenue_cents
    from orders o
    where o.status = {status}
      and o.created_at >= {start}
      and o.created_at < {end}
    group by 1
)
select to_char(days.day, 'YYYY-MM-DD') as day,
       coalesce(totals.order_count, 0)::int8 as order_count,
       coalesce(totals.revenue_cents, 0)::int8 as revenue_cents
from days
left join totals using (day)
order by days.day
