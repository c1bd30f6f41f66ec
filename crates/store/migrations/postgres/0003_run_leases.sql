-- A run in progress is leased to the worker delivering it. A run whose lease ran out
-- without progress (its worker died, and the queue lost the tick, e.g. a broker that
-- forgot its messages) is handed out again by reconciliation.
ALTER TABLE runs ADD COLUMN lease_until TIMESTAMPTZ;
CREATE INDEX runs_leased ON runs (shard, lease_until) WHERE status IN ('pending', 'running') AND NOT parked;
