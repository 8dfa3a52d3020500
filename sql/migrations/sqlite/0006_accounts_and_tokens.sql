-- Accounts and sessions: a role per user, refresh tokens (stored only as hashes), and the
-- key access tokens are signed with, shared by every process on this database.

alter table users add column role text not null default 'customer'
    check (role in ('customer', 'admin'));

create table refresh_tokens (
    id         integer primary key,
    user_id    integer not null references users (id) on delete cascade,
    -- Every token rotated from one login shares its family: reuse of a rotated token
    -- revokes the whole family.
    family     text    not null,
    -- SHA-256 of the token, hex: the token itself is never stored.
    token_hash text    not null,
    created_at text    not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- Unix seconds.
    expires_at integer not null,
    -- Set when the token was exchanged for its successor.
    rotated_at text,
    revoked_at text,
    constraint refresh_tokens_token_hash_key unique (token_hash)
);

create index refresh_tokens_user_id_idx on refresh_tokens (user_id);
create index refresh_tokens_family_idx on refresh_tokens (family);

create table server_keys (
    name       text primary key,
    secret     text not null,
    created_at text not null default (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
