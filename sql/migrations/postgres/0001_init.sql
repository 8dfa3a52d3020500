-- The lesson's e-commerce model (users, products, orders, order_items, order_products),
-- with the same table and column names so anyone who knows the model can query it directly.

create table users (
    id            bigserial primary key,
    email         varchar(255) not null,
    username      varchar(100) not null,
    password_hash varchar(255) not null,
    is_active     boolean      not null default true,
    created_at    timestamptz  not null default now(),
    updated_at    timestamptz  not null default now(),
    bio           text,
    -- Named so that a violation can be mapped to the field it concerns.
    constraint users_email_key unique (email),
    constraint users_username_key unique (username)
);

create table products (
    id             bigserial primary key,
    name           varchar(255)  not null,
    sku            varchar(100)  not null,
    price          numeric(10,2) not null check (price >= 0),
    stock_quantity integer       not null default 0,
    constraint products_sku_key unique (sku),
    -- Stock can never go negative: a conditional decrement that would oversell fails here.
    constraint products_stock_quantity_check check (stock_quantity >= 0)
);

create table orders (
    id           bigserial primary key,
    user_id      bigint        not null references users (id),
    status       varchar(50)   not null default 'pending'
                 check (status in ('pending', 'completed', 'shipped', 'cancelled')),
    total_amount numeric(10,2) not null check (total_amount >= 0),
    created_at   timestamptz   not null default now()
);

-- The lesson's composite index: a user's orders by status, newest first.
-- Its leading column also serves as the index on the foreign key orders.user_id.
create index orders_user_id_status_created_at_idx on orders (user_id, status, created_at desc);

create table order_items (
    id         bigserial primary key,
    order_id   bigint        not null references orders (id) on delete cascade,
    product_id bigint        not null references products (id),
    quantity   integer       not null check (quantity > 0),
    unit_price numeric(10,2) not null check (unit_price >= 0)
);

create index order_items_order_id_idx on order_items (order_id);
create index order_items_product_id_idx on order_items (product_id);

create table order_products (
    order_id   bigint  not null references orders (id) on delete cascade,
    product_id bigint  not null references products (id),
    quantity   integer not null default 1 check (quantity > 0),
    primary key (order_id, product_id)
);

-- The primary key covers order_id; the reverse direction (product -> orders) needs its own index.
create index order_products_product_id_idx on order_products (product_id);
