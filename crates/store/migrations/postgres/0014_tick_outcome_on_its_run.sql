-- A delivered, failed or cancelled run no longer writes its outcome onto its tick as well:
-- the ledger reads the outcome of a `published` tick from its run (unique per tick, found
-- through `runs.tick_id`). That tick update was a delivery's most expensive write after
-- the run's own (never HOT: `state` is indexed, so it added an entry to each of the
-- tick's indexes).
--
-- A `published` tick now stays `published`. The open-ticks index that reconciliation read
-- would have kept every delivered tick, so reconciliation keeps a cursor per shard
-- instead: every tick of the shard published before `published_before` has a run. It
-- reads the ticks published since, once each, through `ticks_published`.
DROP INDEX IF EXISTS ticks_open;
CREATE INDEX IF NOT EXISTS ticks_published ON ticks (shard, published_at) WHERE state = 'published';
CREATE TABLE reconcile_cursors (
    shard             INTEGER PRIMARY KEY,
    published_before  TIMESTAMPTZ NOT NULL
);
