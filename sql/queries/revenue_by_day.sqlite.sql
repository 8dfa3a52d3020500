-- Revenue per UTC day over [{start}, {end}) for orders of status {status}. Every day of the
-- window is listed, days without orders with 0. Timestamps are ISO-8601 UTC text, so the
-- day is its first ten characters. {start_day} is the UTC date of the exact start, since
-- {start} is rounded up to the stored millisecond precision.
-- {status}, {start}, {end}, {limit}, {offset}: values db/analytics.rs writes into the text as
-- typed literals (no bound parameters), so every run is planned for its actual window.
with recursive days(day) as (
    select {start_day}
    union all
    select date(day, '+1 day') from days where day < date({end}, '-0.001 seconds')
),
totals as (
    select substr(o.created_at, 1, 10) as day,
           count(*) as order_count,
           sum(o.total_amount) as revenue_cents
    from orders o
    where o.status = {status}
      and o.created_at >= {start}
      and o.created_at < {end}
    group by 1
)
select days.day,
       coalesce(totals.order_count, 0) as order_count,
       coalesce(totals.revenue_cents, 0) as revenue_cents
from days
left join totals on totals.day = days.day
order by days.day
