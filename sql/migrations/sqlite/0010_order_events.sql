-- The order life cycle as a log (`Query.orderEvents`, `Subscription.orderEvents`): one row
-- when an order is placed (`created`) and one each time its status changes
-- (`status_changed`, or `cancelled` when it becomes cancelled), whoever wrote it: triggers on
-- `orders` write the rows. SQLite has one writer at a time, so ids follow commit order.
create table order_events (
    -- AUTOINCREMENT: an id is never used again, even after the newest rows are deleted (a
    -- subscriber positioned after it would miss the next event).
    id              integer primary key autoincrement,
    order_id        integer not null references orders (id) on delete cascade,
    kind            text    not null,
    status          text    not null,
    previous_status text,
    at              text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    constraint order_events_kind_check check (kind in ('created', 'status_changed', 'cancelled'))
);

create index order_events_order_id_idx on order_events (order_id);

create trigger orders_events_insert after insert on orders
begin
    insert into order_events (order_id, kind, status, previous_status, at)
    values (new.id, 'created', new.status, null, new.created_at);
end;

create trigger orders_events_update after update of status on orders
when new.status is not old.status
begin
    insert into order_events (order_id, kind, status, previous_status, at)
    values (
        new.id,
        case when new.status = 'cancelled' then 'cancelled' else 'status_changed' end,
        new.status,
        old.status,
        case
            when new.status_changed_at is not old.status_changed_at
                then coalesce(new.status_changed_at, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
            else strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
        end
    );
end;
