-- Inactive users are few: a small partial index lets revenue reports exclude them with an
-- anti-join against it, instead of joining every user.
create index users_inactive_idx on users (id) where not is_active;
