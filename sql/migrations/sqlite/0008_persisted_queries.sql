-- Automatic persisted queries, shared by every instance on this database: a document
-- registered through one instance is found by the others (each keeps its own bounded cache
-- in front). The least recently used are pruned past EAGERQL_PERSISTED_QUERIES.
create table persisted_queries (
    -- SHA-256 of the document, hex.
    hash     text    primary key,
    document text    not null,
    -- When an instance last fetched or registered it, unix milliseconds.
    used_at  integer not null
);

create index persisted_queries_used_at_idx on persisted_queries (used_at);
