-- Accounts and sessions: a role per user, refresh tokens (stored only as hashes), and the
-- key access tokens are signed with, shared by every instance on this database.

alter table users add column role varchar(20) not null default 'customer'
    check (role in ('customer', 'admin'));

create table refresh_tokens (
    id         bigserial   primary key,
    user_id    bigint      not null references users (id) on delete cascade,
    -- Every token rotated from one login shares its family: reuse of a rotated token
    -- revokes the whole family.
    family     varchar(64) not null,
    -- SHA-256 of the token, hex: the token itself is never stored.
    token_hash varchar(64) not null,
    created_at timestamptz not null default now(),
    -- Unix seconds.
    expires_at bigint      not null,
    -- Set when the token was exchanged for its successor.
    rotated_at timestamptz,
    revoked_at timestamptz,
    constraint refresh_tokens_token_hash_key unique (token_hash)
);

create index refresh_tokens_user_id_idx on refresh_tokens (user_id);
create index refresh_tokens_family_idx on refresh_tokens (family);

create table server_keys (
    name       varchar(64) primary key,
    secret     text        not null,
    created_at timestamptz not null default now()
);
