-- When an order's status last changed (`Order.statusChangedAt`); null while the order is as
-- it was placed.
alter table orders add column status_changed_at text;
