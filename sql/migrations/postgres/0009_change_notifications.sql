-- Every committed write to a followed table of the model is announced on the channel
-- `eagerql_changes`, whoever made it (this server, another instance, or plain SQL): one
-- notification per statement, sent at commit (PostgreSQL delivers notifications only when the
-- transaction commits, and folds identical ones of a transaction into one).
--
-- Payload: `{"t":"<table>","ids":[...]}` with the ids of the rows the statement wrote
-- (`order_id` for order_products; an update names the rows before and after it), or
-- `{"t":"<table>"}` for a bulk write (over 500 rows, ids that would not fit in a
-- notification, or a TRUNCATE): any row of the table may have changed.

-- Which tables some instance follows (its live queries read them), until when: a write to a
-- table nobody follows sends nothing (a notification serializes commits on a global lock, so
-- writes pay for it only while someone listens). Instances renew their rows while they run.
create table change_followers (
    table_name text        not null,
    instance   text        not null,
    until      timestamptz not null,
    primary key (table_name, instance)
);

-- Security definer, with the search path of the migration: a role that writes the tables
-- need not read change_followers, and its own search path changes nothing.
create function eagerql_notify_changes() returns trigger
language plpgsql security definer set search_path from current as $$
declare
    ids bigint[];
    n bigint;
    payload text;
begin
    if not exists (
        select 1 from change_followers where table_name = tg_table_name and until > now()
    ) then
        return null;
    end if;
    if tg_op = 'TRUNCATE' then
        perform pg_notify('eagerql_changes', json_build_object('t', tg_table_name)::text);
        return null;
    end if;
    if tg_op = 'DELETE' then
        select count(*) into n from old_rows;
    else
        select count(*) into n from new_rows;
    end if;
    if n = 0 then
        -- The statement wrote no row.
        return null;
    elsif n > 500 then
        -- A bulk write: its ids would not fit in a notification.
        perform pg_notify('eagerql_changes', json_build_object('t', tg_table_name)::text);
        return null;
    end if;
    -- The rows' keys (an update names the rows before and after it).
    if tg_table_name = 'order_products' then
        if tg_op = 'DELETE' then
            select array_agg(distinct order_id) into ids from old_rows;
        elsif tg_op = 'INSERT' then
            select array_agg(distinct order_id) into ids from new_rows;
        else
            select array_agg(distinct k) into ids
            from (select order_id as k from new_rows union select order_id from old_rows) u;
        end if;
    elsif tg_op = 'DELETE' then
        select array_agg(distinct id) into ids from old_rows;
    elsif tg_op = 'INSERT' then
        select array_agg(distinct id) into ids from new_rows;
    else
        select array_agg(distinct k) into ids
        from (select id as k from new_rows union select id from old_rows) u;
    end if;
    payload := json_build_object('t', tg_table_name, 'ids', ids)::text;
    if octet_length(payload) > 7000 then
        payload := json_build_object('t', tg_table_name)::text;
    end if;
    perform pg_notify('eagerql_changes', payload);
    return null;
end;
$$;

-- A trigger names transition tables for one event only: one per event and table, and one for
-- TRUNCATE (which has none: any row).
do $$
declare
    t text;
begin
    foreach t in array array['users', 'orders', 'order_items', 'products', 'order_products'] loop
        execute format(
            'create trigger %1$s_changes_insert after insert on %1$s referencing new table as new_rows '
            'for each statement execute function eagerql_notify_changes()', t);
        execute format(
            'create trigger %1$s_changes_update after update on %1$s '
            'referencing old table as old_rows new table as new_rows '
            'for each statement execute function eagerql_notify_changes()', t);
        execute format(
            'create trigger %1$s_changes_delete after delete on %1$s referencing old table as old_rows '
            'for each statement execute function eagerql_notify_changes()', t);
        execute format(
            'create trigger %1$s_changes_truncate after truncate on %1$s '
            'for each statement execute function eagerql_notify_changes()', t);
    end loop;
end;
$$;
