-- The outcome of a `published` tick is read from its run; see the Postgres migration of
-- the same name. `ticks_in_queue` becomes `ticks_published` (a published tick stays so),
-- and reconciliation keeps a cursor per shard.
DROP INDEX IF EXISTS ticks_open;
DROP INDEX IF EXISTS ticks_in_queue;
CREATE INDEX ticks_published ON ticks (shard, published_at) WHERE state = 'published';
CREATE TABLE reconcile_cursors (
    shard             INTEGER PRIMARY KEY,
    published_before  INTEGER NOT NULL
);
