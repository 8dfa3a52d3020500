-- The lesson's get_spending_summary: every active user with the count and sum of all their
-- orders. The outer join keeps users without orders; they have 0 and sort last.
-- {status}, {start}, {end}, {limit}, {offset}: values db/analytics.rs writes into the text as
-- typed literals (no bound parameters), so every run is planned for its actual window.
select u.id as user_id,
       count(o.id)::int8 as order_count,
       coalesce(sum(o.total_cents), 0)::int8 as revenue_cents
from users u
left join orders o on o.user_id = u.id
where u.is_active
group by u.id
order by sum(o.total_cents) desc nulls last, u.id
limit {limit} offset {offset}
