-- See the Postgres migration of the same name.
ALTER TABLE runs ADD COLUMN lease_until INTEGER;
CREATE INDEX runs_leased ON runs (shard, lease_until) WHERE status IN ('pending', 'running') AND NOT parked;
