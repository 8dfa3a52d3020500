-- Best-selling products: units and revenue (quantity * unit price paid) of the items of orders
-- of status $1 created in [$2, $3); highest revenue first, product id breaks ties.
select i.product_id,
       sum(i.quantity)::int8 as units_sold,
       (sum(i.quantity * i.unit_price) * 100)::int8 as revenue_cents
from order_items i
join orders o on o.id = i.order_id
where o.status = $1
  and o.created_at >= $2
  and o.created_at < $3
group by i.product_id
order by revenue_cents desc, i.product_id
limit $4
