-- See the Postgres migration of the same name.
ALTER TABLE runs ADD COLUMN shard INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN dispatched_at INTEGER;
ALTER TABLE runs ADD COLUMN dispatched_for INTEGER;
CREATE INDEX runs_parked ON runs (shard, next_attempt_at) WHERE parked;
