-- When an order's status last changed (`Order.statusChangedAt`); null while the order is as
-- it was placed. Nullable without a default: added without rewriting the table.
alter table orders add column status_changed_at timestamptz;
