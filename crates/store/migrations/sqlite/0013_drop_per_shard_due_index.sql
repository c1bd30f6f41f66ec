-- The Postgres migration of the same name drops the per-shard due index, which its due
-- query never reads. SQLite keeps it: its due query runs without Postgres' sort switch,
-- and its planner may pick the per-shard index for a list of shards. Nothing to change
-- here; the file keeps the two migration sets numbered alike.
SELECT 1;
