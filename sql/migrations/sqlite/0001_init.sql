-- The lesson's e-commerce model (users, products, orders, order_items, order_products),
-- with the same table and column names as the PostgreSQL schema.
--
-- SQLite has no decimal type: money columns (products.price, orders.total_amount,
-- order_items.unit_price) hold integer cents, so that SUM stays exact. The conversion to
-- and from decimals happens in one place in the server (src/db/money.rs).
-- Timestamps are ISO-8601 UTC text, which sorts chronologically.

create table users (
    id            integer primary key,
    email         text    not null,
    username      text    not null,
    password_hash text    not null,
    is_active     integer not null default 1 check (is_active in (0, 1)),
    created_at    text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    bio           text,
    constraint users_email_key unique (email),
    constraint users_username_key unique (username)
);

create table products (
    id             integer primary key,
    name           text    not null,
    sku            text    not null,
    price          integer not null check (price >= 0),
    stock_quantity integer not null default 0,
    constraint products_sku_key unique (sku),
    constraint products_stock_quantity_check check (stock_quantity >= 0)
);

create table orders (
    id           integer primary key,
    user_id      integer not null references users (id),
    status       text    not null default 'pending'
                 check (status in ('pending', 'completed', 'shipped', 'cancelled')),
    total_amount integer not null check (total_amount >= 0),
    created_at   text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

create index orders_user_id_status_created_at_idx on orders (user_id, status, created_at desc);

create table order_items (
    id         integer primary key,
    order_id   integer not null references orders (id) on delete cascade,
    product_id integer not null references products (id),
    quantity   integer not null check (quantity > 0),
    unit_price integer not null check (unit_price >= 0)
);

create index order_items_order_id_idx on order_items (order_id);
create index order_items_product_id_idx on order_items (product_id);

create table order_products (
    order_id   integer not null references orders (id) on delete cascade,
    product_id integer not null references products (id),
    quantity   integer not null default 1 check (quantity > 0),
    primary key (order_id, product_id)
) without rowid;

create index order_products_product_id_idx on order_products (product_id);
