-- Accounts of an external identity provider: the provider's subject for the account, so a
-- token's `sub` names one row (EAGERQL_JWT_USER_MATCH=external-id). Null for accounts that
-- sign in with a password only; unique where set.

alter table users add column external_id text;

create unique index users_external_id_key on users (external_id);
