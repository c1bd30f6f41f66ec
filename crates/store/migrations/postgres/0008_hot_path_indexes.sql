-- Indexes for the overlap decision and the outbox (docs/benchmarks.md): without them the
-- per-tick overlap check scanned every run of every schedule.
CREATE INDEX ticks_outbox ON ticks (shard, fire_time) WHERE state = 'planned';
CREATE INDEX ticks_buffered ON ticks (schedule_id, nominal_time) WHERE state = 'buffered';
CREATE INDEX runs_in_progress ON runs (schedule_id) WHERE status IN ('pending', 'running');
