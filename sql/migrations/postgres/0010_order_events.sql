-- The order life cycle as a log (`Query.orderEvents`, `Subscription.orderEvents`): one row
-- when an order is placed (`created`) and one each time its status changes
-- (`status_changed`, or `cancelled` when it becomes cancelled), whoever wrote it (this
-- server, another instance, or plain SQL): triggers on `orders` write the rows.
--
-- Event ids follow commit order, so that a reader that has seen event N has seen every event
-- before it and can resume after N: the rows are written by a deferred trigger (at commit,
-- after every other lock of the transaction is taken) under a transaction-level advisory
-- lock, so writers of events commit one after another from the moment they take an id.
create table order_events (
    id              bigserial   primary key,
    order_id        bigint      not null references orders (id) on delete cascade,
    kind            text        not null,
    status          text        not null,
    previous_status text,
    at              timestamptz not null default now(),
    constraint order_events_kind_check check (kind in ('created', 'status_changed', 'cancelled'))
);

create index order_events_order_id_idx on order_events (order_id);

create function eagerql_order_events() returns trigger
language plpgsql security definer set search_path from current as $$
begin
    if tg_op = 'UPDATE' and new.status is not distinct from old.status then
        return null;
    end if;
    -- Deleted later in the same transaction: nothing to tell.
    if not exists (select 1 from orders where id = new.id) then
        return null;
    end if;
    perform pg_advisory_xact_lock(hashtext('eagerql_order_events'));
    if tg_op = 'INSERT' then
        insert into order_events (order_id, kind, status, previous_status, at)
        values (new.id, 'created', new.status, null, new.created_at);
    else
        insert into order_events (order_id, kind, status, previous_status, at)
        values (
            new.id,
            case when new.status = 'cancelled' then 'cancelled' else 'status_changed' end,
            new.status,
            old.status,
            -- The change's own time when the writer set it, else the transaction's.
            case
                when new.status_changed_at is distinct from old.status_changed_at
                    then coalesce(new.status_changed_at, now())
                else now()
            end
        );
    end if;
    return null;
end;
$$;

create constraint trigger orders_events_insert after insert on orders
    deferrable initially deferred for each row execute function eagerql_order_events();
create constraint trigger orders_events_update after update of status on orders
    deferrable initially deferred for each row execute function eagerql_order_events();

-- Announced like every table of the model (see 0009_change_notifications).
create trigger order_events_changes_insert after insert on order_events
    referencing new table as new_rows
    for each statement execute function eagerql_notify_changes();
create trigger order_events_changes_update after update on order_events
    referencing old table as old_rows new table as new_rows
    for each statement execute function eagerql_notify_changes();
create trigger order_events_changes_delete after delete on order_events
    referencing old table as old_rows
    for each statement execute function eagerql_notify_changes();
create trigger order_events_changes_truncate after truncate on order_events
    for each statement execute function eagerql_notify_changes();
