-- Login attempts per account and per client address, shared by every instance on this
-- database and kept across restarts. An attempt is counted (atomically, by an upsert) before
-- its password is checked, so concurrent attempts cannot all pass the check.
create table login_attempts (
    -- SHA-256 (hex) of `account:<e-mail>` or `address:<ip>`: no personal data is stored.
    key          varchar(64) primary key,
    -- Attempts counted in the current window.
    attempts     integer     not null,
    -- When the current window began, unix milliseconds.
    window_start bigint      not null
);

create index login_attempts_window_start_idx on login_attempts (window_start);
