-- Product reviews: one rating (1 to 5) and a text per review.
create table reviews (
    id         integer primary key,
    product_id integer not null references products (id) on delete cascade,
    user_id    integer not null references users (id),
    rating     integer not null,
    body       text    not null default '',
    created_at text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    constraint reviews_rating_check check (rating between 1 and 5)
);
create index reviews_product_id_idx on reviews (product_id);
