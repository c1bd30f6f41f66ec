-- Indexes for the queries every planning pass and every overlap decision runs, found by
-- the benchmark (docs/benchmarks.md): without them each was a full scan of ticks or runs,
-- so throughput fell as the ledger grew. SQLite uses a partial index only when the query
-- repeats its WHERE term, hence one index per state.
CREATE INDEX ticks_outbox ON ticks (shard, fire_time) WHERE state = 'planned';
CREATE INDEX ticks_in_queue ON ticks (shard, published_at) WHERE state = 'published';
CREATE INDEX ticks_buffered ON ticks (schedule_id, nominal_time) WHERE state = 'buffered';
CREATE INDEX runs_in_progress ON runs (schedule_id) WHERE status IN ('pending', 'running');
