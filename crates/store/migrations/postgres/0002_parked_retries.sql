-- Retries that wait longer than a worker may hold them are parked on the run; the shard's
-- planner dispatches them when due (the same due-work path as ticks).
ALTER TABLE runs ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN parked BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE runs ADD COLUMN dispatched_at TIMESTAMPTZ;
ALTER TABLE runs ADD COLUMN dispatched_for TIMESTAMPTZ;
CREATE INDEX runs_parked ON runs (shard, next_attempt_at) WHERE parked;
