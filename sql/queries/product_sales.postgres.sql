-- Best-selling products: units and revenue (quantity * unit price paid) of the items of orders
-- of status {status} created in [{start}, {end}); highest revenue first, product id breaks
-- ties.
-- {status}, {start}, {end}, {limit}, {offset}: values db/analytics.rs writes into the text as
-- typed literals (no bound parameters), so every run is planned for its actual window.
select i.product_id,
       sum(i.quantity)::int8 as units_sold,
       (sum(i.quantity * i.unit_price) * 100)::int8 as revenue_cents
from order_items i
join orders o on o.id = i.order_id
where o.status = {status}
  and o.created_at >= {start}
  and o.created_at < {end}
group by i.product_id
order by revenue_cents desc, i.product_id
limit {limit}
